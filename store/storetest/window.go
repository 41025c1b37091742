package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// Sliding windows are the policy daemon's rate limits. The contract: WindowAdd
// returns the events recorded at times in (now-window, now]. Backends may coalesce
// events into buckets of window/60 (so a window holds a bounded number of entries),
// which lets an event count up to window/60 longer than exact, never shorter;
// events that share a bucket only with events recorded at the same instant count
// exactly. The tests place events so that exact checks are meaningful and check
// the bounds where they are not.

var windowCases = []testCase{
	{"Window/Basic", testWindowBasic},
	{"Window/SeveralLimits", testWindowSeveral},
	{"Window/ManyEvents", testWindowMany},
	{"Window/AddGetMulti", testWindowAddGetMulti},
}

// base is aligned to a day so that bucket boundaries of usual windows fall on it.
var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func windowAdd(t *testing.T, s store.Store, key string, now time.Time, w time.Duration, n, want int64) {
	t.Helper()
	got, err := s.WindowAdd(ctxT(t), key, now, w, n)
	if err != nil {
		t.Fatalf("WindowAdd(%q, +%v, %v, %d): %v", key, now.Sub(base), w, n, err)
	}
	if got != want {
		t.Fatalf("WindowAdd(%q, +%v, %v, %d) = %d, want %d", key, now.Sub(base), w, n, got, want)
	}
}

func testWindowBasic(t *testing.T, s store.Store, _ clock) {
	const k = "win:basic"
	w := time.Minute
	at := func(d time.Duration) time.Time { return base.Add(d) }
	windowAdd(t, s, k, at(0), w, 0, 0) // reading a missing window
	windowAdd(t, s, k, at(0), w, 1, 1)
	windowAdd(t, s, k, at(10*time.Second), w, 2, 3)
	windowAdd(t, s, k, at(20*time.Second), w, 0, 3) // n=0 only reads
	windowAdd(t, s, k, at(59*time.Second), w, 1, 4)
	windowAdd(t, s, k, at(60*time.Second-time.Millisecond), w, 0, 4)
	windowAdd(t, s, k, at(60*time.Second), w, 0, 3) // the window is (now-w, now]
	windowAdd(t, s, k, at(70*time.Second), w, 0, 1)
	windowAdd(t, s, k, at(118*time.Second), w, 0, 1)
	windowAdd(t, s, k, at(119*time.Second), w, 0, 0)
	windowAdd(t, s, k, at(time.Hour), w, 5, 5) // restarts after everything fell out
	windowAdd(t, s, k, at(time.Hour), w, 5, 10)
	// Another key is another window.
	windowAdd(t, s, "win:basic:other", at(time.Hour), w, 0, 0)
}

type event struct {
	at time.Time
	n  int64
}

// bounds returns the exact count of events in (now-w, now] and the most a
// bucketing backend may return (events up to w/60 older still counted).
func bounds(evs []event, now time.Time, w time.Duration) (lo, hi int64) {
	slack := max(w/60, time.Millisecond)
	for _, e := range evs {
		if e.at.After(now) {
			continue
		}
		if e.at.After(now.Add(-w)) {
			lo += e.n
		}
		if e.at.After(now.Add(-w - slack)) {
			hi += e.n
		}
	}
	return lo, hi
}

// testWindowSeveral runs a per-minute, a per-10-minutes and a per-hour limit side
// by side, as the policy daemon does for one sender, with events every 7 s.
func testWindowSeveral(t *testing.T, s store.Store, _ clock) {
	windows := []time.Duration{time.Minute, 10 * time.Minute, time.Hour}
	var evs []event
	check := func(now time.Time, n int64) {
		t.Helper()
		if n != 0 {
			evs = append(evs, event{now, n})
		}
		for _, w := range windows {
			got, err := s.WindowAdd(ctxT(t), fmt.Sprintf("win:several:%v", w), now, w, n)
			must(t, err, "WindowAdd")
			lo, hi := bounds(evs, now, w)
			if got < lo || got > hi {
				t.Fatalf("window %v at +%v: %d events, want %d..%d", w, now.Sub(base), got, lo, hi)
			}
		}
	}
	for i := range 200 { // 200 × 7 s ≈ 23 min
		check(base.Add(time.Duration(i)*7*time.Second), int64(1+i%3))
	}
	last := evs[len(evs)-1].at
	for _, d := range []time.Duration{time.Second, time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, time.Hour + time.Minute, 2 * time.Hour} {
		check(last.Add(d), 0)
	}
	// After the longest window everything has fallen out, exactly.
	for _, w := range windows {
		got, err := s.WindowAdd(ctxT(t), fmt.Sprintf("win:several:%v", w), last.Add(2*time.Hour), w, 0)
		must(t, err, "WindowAdd")
		if got != 0 {
			t.Fatalf("window %v long after the last event: %d, want 0", w, got)
		}
	}
}

// testWindowMany records 1,000 events at distinct milliseconds: none may be lost
// while all are inside the window, and all must be gone one window later.
func testWindowMany(t *testing.T, s store.Store, _ clock) {
	const k = "win:many"
	w := 10 * time.Second
	var total int64
	for i := range 1000 {
		total++
		windowAdd(t, s, k, base.Add(time.Duration(i)*time.Millisecond), w, 1, total)
	}
	windowAdd(t, s, k, base.Add(w/2), w, 0, 1000)
	windowAdd(t, s, k, base.Add(w+time.Second+w/60), w, 0, 0)
}

// testWindowAddGetMulti: store.WindowAddGetMulti (one round trip where the
// backend is a store.ReadAheader) counts exactly as WindowAdd and reads as
// GetMulti, after the add: nil for a missing or expired key, empty for an empty
// value, in order.
func testWindowAddGetMulti(t *testing.T, s store.Store, c clock) {
	ctx := ctxT(t)
	const k = "win:ahead"
	w := time.Minute
	must(t, s.Set(ctx, "wg:a", []byte("1 2"), 0), "Set")
	must(t, s.Set(ctx, "wg:empty", []byte{}, 0), "Set empty")
	must(t, s.Set(ctx, "wg:short", []byte("x"), 50*time.Millisecond), "Set with ttl")
	sleepUntil(c, c.Now().Add(50*time.Millisecond+margin))
	add := func(now time.Time, n, want int64, keys ...string) [][]byte {
		t.Helper()
		got, vals, err := store.WindowAddGetMulti(ctx, s, k, now, w, n, keys...)
		if err != nil {
			t.Fatalf("WindowAddGetMulti(+%v, %d, %q): %v", now.Sub(base), n, keys, err)
		}
		if got != want {
			t.Fatalf("WindowAddGetMulti(+%v, %d, %q) = %d, want %d", now.Sub(base), n, keys, got, want)
		}
		if vals == nil || len(vals) != len(keys) {
			t.Fatalf("WindowAddGetMulti(%q) read %q, want %d values", keys, vals, len(keys))
		}
		return vals
	}
	vals := add(base, 1, 1, "wg:a", "wg:missing", "wg:empty", "wg:short", "wg:a")
	want := []string{"1 2", "<nil>", "", "<nil>", "1 2"}
	for i, v := range vals {
		str := string(v)
		if v == nil {
			str = "<nil>"
		}
		if str != want[i] {
			t.Errorf("value %d = %q, want %q", i, str, want[i])
		}
	}
	add(base.Add(10*time.Second), 2, 3)                   // no keys: the add alone
	add(base.Add(20*time.Second), 0, 3, "wg:a")           // n=0 only reads the window
	windowAdd(t, s, k, base.Add(59*time.Second), w, 1, 4) // the same window as WindowAdd's
	add(base.Add(60*time.Second), 0, 3, "wg:empty")       // and the same sliding
	// The reads see writes made before the call.
	must(t, s.Set(ctx, "wg:a", []byte("3 4"), 0), "Set")
	if v := add(base.Add(61*time.Second), 1, 4, "wg:a"); string(v[0]) != "3 4" {
		t.Errorf("read after Set = %q, want %q", v[0], "3 4")
	}
}
