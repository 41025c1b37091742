package storetest

import (
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// TTL tests are written against a clock that is either fake (exact) or real (Redis
// expires keys on its own clock, so every check allows for the time a call takes):
// "must still exist" is only asserted when the read finished before the earliest
// possible expiry, "must be gone" only after the latest possible one. A slow machine
// makes a check inconclusive, never wrong.

var ttlCases = []testCase{
	{"TTL/Set", testTTLSet},
	{"TTL/IncrFixedWindow", testTTLIncr},
	{"TTL/SAddRefresh", testTTLSAdd},
}

// margin covers Redis' millisecond expiry resolution.
const margin = 5 * time.Millisecond

func testTTLSet(t *testing.T, s store.Store, c clock) {
	ctx := ctxT(t)
	const ttl = 200 * time.Millisecond
	start := c.Now()
	must(t, s.Set(ctx, "ttl:set", []byte("v"), ttl), "Set")
	ok, err := s.SetNX(ctx, "ttl:nx", []byte("v"), ttl)
	must(t, err, "SetNX")
	if !ok {
		t.Fatal("SetNX on a missing key = false")
	}
	must(t, s.Set(ctx, "ttl:forever", []byte("v"), 0), "Set ttl 0")
	must(t, s.Set(ctx, "ttl:cleared", []byte("old"), ttl), "Set")
	must(t, s.Set(ctx, "ttl:cleared", []byte("new"), 0), "Set overwrite with ttl 0")
	end := c.Now()

	c.Sleep(ttl / 4)
	got, err := s.Get(ctx, "ttl:set")
	if c.Now().Before(start.Add(ttl)) {
		if err != nil || string(got) != "v" {
			t.Fatalf("Get before expiry = %q, %v; want v", got, err)
		}
	}

	sleepUntil(c, end.Add(ttl+margin))
	mustMissing(t, s, "ttl:set")
	mustMissing(t, s, "ttl:nx")
	mustGet(t, s, "ttl:forever", "v")
	mustGet(t, s, "ttl:cleared", "new")

	// An expired key is missing for SetNX too.
	ok, err = s.SetNX(ctx, "ttl:nx", []byte("again"), 0)
	must(t, err, "SetNX")
	if !ok {
		t.Fatal("SetNX on an expired key = false, want true")
	}
	mustGet(t, s, "ttl:nx", "again")
}

// testTTLIncr checks the fixed-window contract: the ttl is set when the counter is
// created and later increments leave it alone.
func testTTLIncr(t *testing.T, s store.Store, c clock) {
	ctx := ctxT(t)
	const ttl = 250 * time.Millisecond
	start := c.Now()
	mustIncr(t, s, "ttl:ctr", 1, ttl, 1)
	mustIncr(t, s, "ttl:ctr:forever", 1, 0, 1)
	end := c.Now()

	sleepUntil(c, start.Add(ttl/2))
	n, err := s.Incr(ctx, "ttl:ctr", 1, ttl)
	must(t, err, "Incr")
	if n != 2 {
		if !c.Now().Before(start.Add(ttl)) {
			t.Skip("machine too slow for a real-time TTL check")
		}
		t.Fatalf("second Incr inside the ttl = %d, want 2", n)
	}

	// Past the first ttl the counter must have expired: had the second Incr
	// extended it, it would still hold 2.
	sleepUntil(c, end.Add(ttl+margin))
	mustIncr(t, s, "ttl:ctr", 1, ttl, 1)
	restarted := c.Now()
	mustIncr(t, s, "ttl:ctr:forever", 1, 0, 2)

	// The recreated counter has a fresh ttl.
	sleepUntil(c, restarted.Add(ttl+margin))
	mustIncr(t, s, "ttl:ctr", 5, 0, 5)
}

// testTTLSAdd checks that SAdd with a ttl refreshes the set's expiry, that ttl 0
// leaves it alone, and that members of an expired set do not come back.
func testTTLSAdd(t *testing.T, s store.Store, c clock) {
	ctx := ctxT(t)
	const ttl = 300 * time.Millisecond
	start1 := c.Now()
	must(t, s.SAdd(ctx, "ttl:set", ttl, "a"), "SAdd")
	end1 := c.Now()

	c.Sleep(ttl / 2)
	start2 := c.Now()
	must(t, s.SAdd(ctx, "ttl:set", ttl, "b"), "SAdd refresh")
	end2 := c.Now()
	if !end2.Before(start1.Add(ttl)) {
		// The set may have expired before the refresh reached it.
		t.Skip("machine too slow for a real-time TTL check")
	}

	sleepUntil(c, end1.Add(ttl+margin))
	ok, err := s.SIsMember(ctx, "ttl:set", "a")
	must(t, err, "SIsMember")
	if !ok {
		if c.Now().Before(start2.Add(ttl)) {
			t.Fatal("set expired at its first ttl although SAdd refreshed it")
		}
		t.Skip("machine too slow for a real-time TTL check")
	}
	must(t, s.SAdd(ctx, "ttl:set", 0, "c"), "SAdd ttl 0") // keeps the expiry

	sleepUntil(c, end2.Add(ttl+margin))
	for _, m := range []string{"a", "b", "c"} {
		mustMember(t, s, "ttl:set", m, false)
	}
	must(t, s.SAdd(ctx, "ttl:set", ttl, "d"), "SAdd after expiry")
	mustMember(t, s, "ttl:set", "a", false)
	mustMember(t, s, "ttl:set", "d", true)
}
