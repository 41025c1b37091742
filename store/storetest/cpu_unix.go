//go:build unix

package storetest

import (
	"syscall"
	"time"
)

// cpuTime is the process' user+system CPU time. Benchmarks report CPU per
// operation: unlike ns/op it does not depend on what else the machine runs, so
// it gives the capacity (requests per core-second) on a shared CI box.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
