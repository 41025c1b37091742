package daemon

import (
	"math"
	"runtime/debug"
)

// DefaultGCPercent is the garbage collector's target (Go's GOGC) the daemons
// run with unless the config or the environment says otherwise. The daemons
// keep small heaps (a few MB, plus policy state when SQLite write-behind is on)
// and allocate per request, so at Go's default of 100 a busy daemon collects
// several times a second, each cycle taking one of a small host's CPUs for
// milliseconds: at 5,000 policy requests/s on 2 vCPUs, 400 took policyd's p99
// from 0.92 to 0.77 ms (docs/benchmarks.md §policyd). The price is a peak heap
// of about five times the live one instead of twice.
const DefaultGCPercent = 400

// TuneGC applies the collector settings: percent as GOGC (-1 turns collection
// off) and limit as GOMEMLIMIT in bytes, 0 for none. A GOGC or GOMEMLIMIT set
// in the environment (getenv) wins: Go has applied it already. It returns the
// settings in force, the limit 0 when there is none.
func TuneGC(percent int, limit int64, getenv func(string) string) (gcPercent int, memoryLimit int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if getenv("GOMEMLIMIT") == "" {
		// 0 must lift a limit set before (a reload from 1GB to 0), not keep it.
		if limit <= 0 {
			limit = math.MaxInt64
		}
		debug.SetMemoryLimit(limit)
	}
	gcPercent = debug.SetGCPercent(-1)
	debug.SetGCPercent(gcPercent)
	if memoryLimit = debug.SetMemoryLimit(-1); memoryLimit == math.MaxInt64 {
		memoryLimit = 0
	}
	return gcPercent, memoryLimit
}
