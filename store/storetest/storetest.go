// Package storetest is the conformance suite every store.Store backend runs.
//
// A backend's test calls Run (real time: Redis, whose TTLs live in the server) or
// RunWithClock (the backend takes a clock: store/mem, store/sqlite), so that TTL
// tests advance a fake clock instead of sleeping:
//
//	func TestConformance(t *testing.T) {
//		storetest.RunWithClock(t, func(t *testing.T, now func() time.Time) store.Store {
//			s := mem.New()
//			s.Now = now
//			return s
//		})
//	}
//
// Every subtest runs in parallel on its own store, so real-time waits overlap (the
// whole suite waits well under a second against Redis).
package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// Run runs the suite against stores made by newStore, waiting in real time for TTLs.
// newStore must return an empty store (or one whose keys do not collide between
// calls, e.g. a fresh prefix) and should register its cleanup with t.Cleanup; the
// suite closes every store itself as well, so Close must be idempotent.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	run(t, func(t *testing.T) (store.Store, clock) { return newStore(t), realClock{} })
}

// RunWithClock runs the suite against stores that read the time from now (TTLs and
// expiry); TTL tests advance that clock instead of sleeping.
func RunWithClock(t *testing.T, newStore func(t *testing.T, now func() time.Time) store.Store) {
	run(t, func(t *testing.T) (store.Store, clock) {
		c := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		return newStore(t, c.Now), c
	})
}

// clock is the suite's view of the backend's time: the fake one advances on Sleep.
type clock interface {
	Now() time.Time
	Sleep(d time.Duration)
}

type realClock struct{}

func (realClock) Now() time.Time        { return time.Now() }
func (realClock) Sleep(d time.Duration) { time.Sleep(d) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// sleepUntil waits (or advances) until the clock reads at least t.
func sleepUntil(c clock, t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		c.Sleep(d)
	}
}

type opener func(t *testing.T) (store.Store, clock)

type testCase struct {
	name string
	fn   func(t *testing.T, s store.Store, c clock)
}

func run(t *testing.T, open opener) {
	var cases []testCase
	cases = append(cases, basicCases...)
	cases = append(cases, ttlCases...)
	cases = append(cases, windowCases...)
	cases = append(cases, collectionCases...)
	cases = append(cases, robustnessCases...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s, c)
		})
	}
}

// ctxT returns a context bounded well below the test timeout, so a hung backend
// fails one subtest with a clear message instead of the whole binary.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mustGet(t *testing.T, s store.Store, key, want string) {
	t.Helper()
	got, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, want)
	}
	if string(got) != want {
		t.Fatalf("Get(%q) = %q, want %q", key, got, want)
	}
}

func mustMissing(t *testing.T, s store.Store, key string) {
	t.Helper()
	got, err := s.Get(ctxT(t), key)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
	}
}

func mustIncr(t *testing.T, s store.Store, key string, delta int64, ttl time.Duration, want int64) {
	t.Helper()
	got, err := s.Incr(ctxT(t), key, delta, ttl)
	if err != nil {
		t.Fatalf("Incr(%q, %d): %v", key, delta, err)
	}
	if got != want {
		t.Fatalf("Incr(%q, %d) = %d, want %d", key, delta, got, want)
	}
}

func mustMember(t *testing.T, s store.Store, key, member string, want bool) {
	t.Helper()
	got, err := s.SIsMember(ctxT(t), key, member)
	if err != nil {
		t.Fatalf("SIsMember(%q, %q): %v", key, member, err)
	}
	if got != want {
		t.Fatalf("SIsMember(%q, %q) = %v, want %v", key, member, got, want)
	}
}
