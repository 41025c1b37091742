package storetest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

var basicCases = []testCase{
	{"GetSet", testGetSet},
	{"GetMulti", testGetMulti},
	{"SetNX", testSetNX},
	{"Delete", testDelete},
	{"Incr", testIncr},
}

func testGetSet(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	mustMissing(t, s, "kv:missing")

	// Keys are opaque: separators, spaces, UTF-8 and a long key all round-trip.
	keys := []string{"kv:a", "kv:with space", "kv:ünïcödé:✓", "kv:" + strings.Repeat("k", 500)}
	for i, k := range keys {
		must(t, s.Set(ctx, k, []byte{byte('0' + i)}, 0), "Set")
	}
	for i, k := range keys {
		mustGet(t, s, k, string([]byte{byte('0' + i)}))
	}

	must(t, s.Set(ctx, "kv:a", []byte("second"), 0), "Set overwrite")
	mustGet(t, s, "kv:a", "second")

	// Binary values (NUL, invalid UTF-8) and a 64 KiB value survive unchanged.
	bin := []byte{0, 1, 0xff, 0xfe, 0, '\n'}
	must(t, s.Set(ctx, "kv:bin", bin, 0), "Set binary")
	mustGet(t, s, "kv:bin", string(bin))
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	must(t, s.Set(ctx, "kv:big", big, 0), "Set 64KiB")
	mustGet(t, s, "kv:big", string(big))

	// An empty value is a value, not a missing key.
	must(t, s.Set(ctx, "kv:empty", []byte{}, 0), "Set empty")
	mustGet(t, s, "kv:empty", "")

	// The store keeps its own copy, and hands out copies.
	buf := []byte("original")
	must(t, s.Set(ctx, "kv:copy", buf, 0), "Set")
	copy(buf, "XXXXXXXX")
	mustGet(t, s, "kv:copy", "original")
	got, err := s.Get(ctx, "kv:copy")
	must(t, err, "Get")
	copy(got, "YYYYYYYY")
	mustGet(t, s, "kv:copy", "original")
}

// testGetMulti: store.GetMulti (one round trip where the backend has one)
// answers like a Get per key: values in order, nil for missing and expired
// keys, empty for an empty value, and a key asked for twice twice.
func testGetMulti(t *testing.T, s store.Store, c clock) {
	ctx := ctxT(t)
	must(t, s.Set(ctx, "mg:a", []byte("1 2"), 0), "Set")
	must(t, s.Set(ctx, "mg:empty", []byte{}, 0), "Set empty")
	must(t, s.Set(ctx, "mg:short", []byte("x"), 50*time.Millisecond), "Set with ttl")
	sleepUntil(c, c.Now().Add(50*time.Millisecond+margin))
	got, err := store.GetMulti(ctx, s, "mg:a", "mg:missing", "mg:empty", "mg:short", "mg:a")
	must(t, err, "GetMulti")
	want := []string{"1 2", "<nil>", "", "<nil>", "1 2"}
	if len(got) != len(want) {
		t.Fatalf("GetMulti returned %d values, want %d", len(got), len(want))
	}
	for i, v := range got {
		s := string(v)
		if v == nil {
			s = "<nil>"
		}
		if s != want[i] {
			t.Errorf("value %d = %q, want %q", i, s, want[i])
		}
	}
	if got, err := store.GetMulti(ctx, s); err != nil || len(got) != 0 {
		t.Errorf("GetMulti of no keys = %v, %v", got, err)
	}
}

func testSetNX(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	ok, err := s.SetNX(ctx, "nx:k", []byte("first"), 0)
	must(t, err, "SetNX")
	if !ok {
		t.Fatal("SetNX on a missing key = false, want true")
	}
	ok, err = s.SetNX(ctx, "nx:k", []byte("second"), 0)
	must(t, err, "SetNX")
	if ok {
		t.Fatal("SetNX on an existing key = true, want false")
	}
	mustGet(t, s, "nx:k", "first")

	must(t, s.Delete(ctx, "nx:k"), "Delete")
	ok, err = s.SetNX(ctx, "nx:k", []byte("third"), time.Hour)
	must(t, err, "SetNX")
	if !ok {
		t.Fatal("SetNX after Delete = false, want true")
	}
	mustGet(t, s, "nx:k", "third")
}

func testDelete(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	must(t, s.Delete(ctx), "Delete with no keys")
	must(t, s.Delete(ctx, "del:never-existed"), "Delete missing key")

	// Every kind of value goes away with Delete.
	must(t, s.Set(ctx, "del:kv", []byte("v"), time.Hour), "Set")
	mustIncr(t, s, "del:ctr", 5, time.Hour, 5)
	if _, err := s.WindowAdd(ctx, "del:win", time.Unix(1e9, 0), time.Minute, 3); err != nil {
		t.Fatalf("WindowAdd: %v", err)
	}
	must(t, s.HIncr(ctx, "del:hash", map[string]int64{"f": 2}), "HIncr")
	must(t, s.SAdd(ctx, "del:set", time.Hour, "m"), "SAdd")
	must(t, s.Set(ctx, "del:keep", []byte("kept"), 0), "Set")

	must(t, s.Delete(ctx, "del:kv", "del:ctr", "del:win", "del:hash", "del:set", "del:missing"), "Delete")
	mustMissing(t, s, "del:kv")
	mustIncr(t, s, "del:ctr", 1, 0, 1)
	if n, err := s.WindowAdd(ctx, "del:win", time.Unix(1e9, 0), time.Minute, 0); err != nil || n != 0 {
		t.Fatalf("WindowAdd after Delete = %d, %v; want 0", n, err)
	}
	h, err := s.HGet(ctx, "del:hash", []string{"f"})
	must(t, err, "HGet")
	if len(h) != 0 {
		t.Fatalf("HGet after Delete = %v, want empty", h)
	}
	mustMember(t, s, "del:set", "m", false)
	mustGet(t, s, "del:keep", "kept")
}

func testIncr(t *testing.T, s store.Store, _ clock) {
	mustIncr(t, s, "ctr:a", 1, 0, 1)
	mustIncr(t, s, "ctr:a", 1, 0, 2)
	mustIncr(t, s, "ctr:a", 40, 0, 42)
	mustIncr(t, s, "ctr:a", -50, 0, -8)
	mustIncr(t, s, "ctr:a", 0, 0, -8) // delta 0 reads
	mustIncr(t, s, "ctr:b", 0, 0, 0)  // and creates nothing observable but 0
	mustIncr(t, s, "ctr:b", 7, time.Hour, 7)
	mustIncr(t, s, "ctr:big", 1<<40, 0, 1<<40)
	mustIncr(t, s, "ctr:big", 1<<40, 0, 1<<41)
}
