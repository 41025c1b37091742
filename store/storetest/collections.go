package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

var collectionCases = []testCase{
	{"Hash/Batch", testHashBatch},
	{"Hash/Empty", testHashEmpty},
	{"Set", testSet},
}

// testHashBatch works like the Bayes token table: 1,000 fields learned at once,
// read back in one call together with fields never seen.
func testHashBatch(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	const key = "hash:tokens"
	deltas := make(map[string]int64, 1000)
	for i := range 1000 {
		deltas[fmt.Sprintf("tok-%04d-ü", i)] = int64(i + 1)
	}
	must(t, s.HIncr(ctx, key, deltas), "HIncr")
	// Again, plus a negative delta on some fields (unlearning).
	deltas["tok-0000-ü"] = -1
	must(t, s.HIncr(ctx, key, deltas), "HIncr")

	fields := make([]string, 0, 1010)
	for f := range deltas {
		fields = append(fields, f)
	}
	for i := range 10 {
		fields = append(fields, fmt.Sprintf("never-%d", i))
	}
	got, err := s.HGet(ctx, key, fields)
	must(t, err, "HGet")
	if len(got) != 1000 {
		t.Fatalf("HGet returned %d fields, want 1000 (missing fields are absent)", len(got))
	}
	for i := range 1000 {
		f := fmt.Sprintf("tok-%04d-ü", i)
		want := int64(2 * (i + 1))
		if i == 0 {
			want = 0 // 1 + -1: present with value 0
		}
		if v, ok := got[f]; !ok || v != want {
			t.Fatalf("HGet[%q] = %d, %v; want %d", f, v, ok, want)
		}
	}

	// A subset, and duplicates in the request, are fine.
	got, err = s.HGet(ctx, key, []string{"tok-0005-ü", "tok-0005-ü", "never-0"})
	must(t, err, "HGet")
	if len(got) != 1 || got["tok-0005-ü"] != 12 {
		t.Fatalf("HGet subset = %v, want map[tok-0005-ü:12]", got)
	}
}

func testHashEmpty(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	got, err := s.HGet(ctx, "hash:missing", []string{"a", "b"})
	must(t, err, "HGet missing key")
	if got == nil || len(got) != 0 {
		t.Fatalf("HGet on a missing key = %#v, want an empty non-nil map", got)
	}
	must(t, s.HIncr(ctx, "hash:e", map[string]int64{}), "HIncr with no fields")
	must(t, s.HIncr(ctx, "hash:e", map[string]int64{"x": 3}), "HIncr")
	got, err = s.HGet(ctx, "hash:e", nil)
	must(t, err, "HGet with no fields")
	if got == nil || len(got) != 0 {
		t.Fatalf("HGet with no fields = %#v, want an empty non-nil map", got)
	}
	// Hashes are independent of each other.
	got, err = s.HGet(ctx, "hash:other", []string{"x"})
	must(t, err, "HGet")
	if len(got) != 0 {
		t.Fatalf("HGet on another key = %v, want empty", got)
	}
}

func testSet(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	mustMember(t, s, "set:missing", "a", false)
	must(t, s.SAdd(ctx, "set:s", time.Hour, "a", "b", "a"), "SAdd")
	must(t, s.SAdd(ctx, "set:s", time.Hour), "SAdd with no members")
	must(t, s.SAdd(ctx, "set:s", 0, "ümlaut", ""), "SAdd")
	for _, m := range []string{"a", "b", "ümlaut", ""} {
		mustMember(t, s, "set:s", m, true)
	}
	mustMember(t, s, "set:s", "c", false)
	mustMember(t, s, "set:other", "a", false)

	members := make([]string, 1000)
	for i := range members {
		members[i] = fmt.Sprintf("m%d", i)
	}
	must(t, s.SAdd(ctx, "set:big", 0, members...), "SAdd 1000")
	mustMember(t, s, "set:big", "m999", true)
	mustMember(t, s, "set:big", "m1000", false)
}
