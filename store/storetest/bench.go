package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// Benchmark runs the store benchmarks every backend reports in
// docs/benchmarks.md: the policy daemon's hot path (counters, sliding windows, a
// whole greylist + two rate limits request, closed loop and paced at 5,000/s with
// latency percentiles) and the Bayes token table (300 fields per message).
// parallelism × GOMAXPROCS goroutines issue requests, like a daemon's connections.
const parallelism = 8

func Benchmark(b *testing.B, s store.Store) {
	ctx := context.Background()
	runCPU(b, "Incr", func(b *testing.B) {
		var i atomic.Int64
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Sprintf("bench:ctr:%d", i.Add(1)%1000)
				if _, err := s.Incr(ctx, k, 1, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	runCPU(b, "WindowAdd", func(b *testing.B) {
		var i atomic.Int64
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n := i.Add(1)
				k := fmt.Sprintf("bench:win:%d", n%1000)
				if _, err := s.WindowAdd(ctx, k, time.Now(), time.Minute, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	fields := make([]string, 300)
	deltas := make(map[string]int64, 300)
	for i := range fields {
		fields[i] = fmt.Sprintf("token%05d", i*7)
		deltas[fields[i]] = 1
	}
	runCPU(b, "IncrSerial", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Incr(ctx, "bench:serial", 1, time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	runCPU(b, "HIncr300", func(b *testing.B) {
		for b.Loop() {
			if err := s.HIncr(ctx, "bench:bayes", deltas); err != nil {
				b.Fatal(err)
			}
		}
	})
	runCPU(b, "HGet300", func(b *testing.B) {
		if err := s.HIncr(ctx, "bench:bayes", deltas); err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				got, err := s.HGet(ctx, "bench:bayes", fields)
				if err != nil || len(got) != len(fields) {
					b.Fatal(len(got), err)
				}
			}
		})
	})
	runCPU(b, "PolicyRequest", func(b *testing.B) {
		var i atomic.Int64
		lat := newLatencies(b.N)
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				start := time.Now()
				if err := policyRequest(ctx, s, i.Add(1)); err != nil {
					b.Fatal(err)
				}
				lat.add(time.Since(start))
			}
		})
		lat.report(b)
	})
	runCPU(b, "PolicyPaced5000", func(b *testing.B) { paced(b, s, 5000) })
}

// policyRequest is what the policy daemon does per SMTP RCPT (policyd/greylist.go,
// policyd/ratelimit.go): read the greylisting triplet and write it back (its
// count and last-seen time, or the first sighting), then a per-client-IP and a
// per-sender sliding window — 4 store operations. 20,000 senders, 5,000 client
// IPs, a fifth of the triplets new.
func policyRequest(ctx context.Context, s store.Store, i int64) error {
	now := time.Now()
	triplet := fmt.Sprintf("grey:%d", i%20000)
	if i%5 == 0 {
		triplet = fmt.Sprintf("grey:new:%d", i)
	}
	if _, err := s.Get(ctx, triplet); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := s.Set(ctx, triplet, []byte("1 1767225600"), 35*24*time.Hour); err != nil {
		return err
	}
	if _, err := s.WindowAdd(ctx, fmt.Sprintf("rate:ip:%d:m", i%5000), now, time.Minute, 1); err != nil {
		return err
	}
	_, err := s.WindowAdd(ctx, fmt.Sprintf("rate:from:%d:m", i%20000), now, time.Hour, 1)
	return err
}

// paced sends b.N policy requests at rate per second from a pool of workers and
// measures each from its scheduled start, so a stall shows up in every request
// queued behind it (no coordinated omission).
func paced(b *testing.B, s store.Store, rate int) {
	ctx := context.Background()
	lat := newLatencies(b.N)
	interval := time.Second / time.Duration(rate)
	jobs := make(chan time.Time, 1024)
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range 64 {
		wg.Go(func() {
			for due := range jobs {
				if err := policyRequest(ctx, s, seq.Add(1)); err != nil {
					b.Error(err)
				}
				lat.add(time.Since(due))
			}
		})
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		jobs <- due
	}
	close(jobs)
	wg.Wait()
	b.StopTimer()
	lat.report(b)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, 0, n)} }

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B) {
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	q := func(p float64) float64 {
		return float64(l.d[min(len(l.d)-1, int(p*float64(len(l.d))))].Microseconds())
	}
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(0.999), "p99.9-µs")
}

// runCPU is b.Run plus the CPU time per operation (see cpuTime); a server's own
// CPU (Redis) is not included.
func runCPU(b *testing.B, name string, fn func(b *testing.B)) {
	b.Run(name, func(b *testing.B) {
		start := cpuTime()
		fn(b)
		if used := cpuTime() - start; used > 0 {
			b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/op")
		}
	})
}
