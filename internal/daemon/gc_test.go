package daemon

import (
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name        string
		before      int64 // limit in force before the call; 0 = none
		percent     int
		limit       int64
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"config applies", 0, 400, 1 << 30, nil, 400, 1 << 30},
		{"no limit keeps the runtime's", 0, 250, 0, nil, 250, 0},
		{"GOGC in the environment wins", 0, 400, 0, map[string]string{"GOGC": "100"}, 100, 0},
		{"GOMEMLIMIT in the environment wins", 0, 400, 1 << 30, map[string]string{"GOMEMLIMIT": "2GiB"}, 400, 0},
		// A reload from memory_limit: 1GB to 0 lifts the limit.
		{"limit lifted", 1 << 30, 400, 0, nil, 400, 0},
		{"limit changed", 1 << 30, 400, 2 << 30, nil, 400, 2 << 30},
		{"environment limit kept", 3 << 30, 400, 0, map[string]string{"GOMEMLIMIT": "3GiB"}, 400, 3 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if tc.before > 0 {
				debug.SetMemoryLimit(tc.before)
			}
			p, l := TuneGC(tc.percent, tc.limit, env(tc.env))
			if p != tc.wantPercent || l != tc.wantLimit {
				t.Errorf("TuneGC = %d, %d; want %d, %d", p, l, tc.wantPercent, tc.wantLimit)
			}
			if got := debug.SetGCPercent(-1); got != tc.wantPercent {
				t.Errorf("GC percent in force %d, want %d", got, tc.wantPercent)
			}
			debug.SetGCPercent(100)
		})
	}
}
