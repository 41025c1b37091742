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
		percent     int
		limit       int64
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"config applies", 400, 1 << 30, nil, 400, 1 << 30},
		{"no limit keeps the runtime's", 250, 0, nil, 250, 0},
		{"GOGC in the environment wins", 400, 0, map[string]string{"GOGC": "100"}, 100, 0},
		{"GOMEMLIMIT in the environment wins", 400, 1 << 30, map[string]string{"GOMEMLIMIT": "2GiB"}, 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
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
