package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

var robustnessCases = []testCase{
	{"Concurrent", testConcurrent},
	{"ContextCanceled", testContextCanceled},
	{"Close", testClose},
	{"CloseUnderLoad", testCloseUnderLoad},
}

// testConcurrent hammers one counter, one window (WindowAdd and
// WindowAddGetMulti in turn) and one hash field from many goroutines: every
// increment must be counted exactly once.
func testConcurrent(t *testing.T, s store.Store, _ clock) {
	const workers, each = 16, 25
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Incr(ctx, "conc:ctr", 1, time.Hour); err != nil {
					errs <- err
					return
				}
				now := base.Add(time.Duration(w*each+i) * time.Millisecond)
				var err error
				if i%2 == 0 {
					_, err = s.WindowAdd(ctx, "conc:win", now, time.Hour, 2)
				} else {
					_, _, err = store.WindowAddGetMulti(ctx, s, "conc:win", now, time.Hour, 2, "conc:missing")
				}
				if err != nil {
					errs <- err
					return
				}
				if err := s.HIncr(ctx, "conc:hash", map[string]int64{"f": 3, "g": 1}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent update: %v", err)
	}
	const n = workers * each
	mustIncr(t, s, "conc:ctr", 0, 0, n)
	got, err := s.WindowAdd(ctx, "conc:win", base.Add(time.Minute), time.Hour, 0)
	must(t, err, "WindowAdd")
	if got != 2*n {
		t.Fatalf("window after %d concurrent adds of 2 = %d, want %d", n, got, 2*n)
	}
	h, err := s.HGet(ctx, "conc:hash", []string{"f", "g"})
	must(t, err, "HGet")
	if h["f"] != 3*n || h["g"] != n {
		t.Fatalf("hash after %d concurrent HIncr = %v, want f:%d g:%d", n, h, 3*n, n)
	}
}

// calls exercises every method once; used with a dead context or a closed store.
func calls(s store.Store) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"Get": func(ctx context.Context) error { _, err := s.Get(ctx, "x:k"); return err },
		"GetMulti": func(ctx context.Context) error {
			_, err := store.GetMulti(ctx, s, "x:k", "x:l")
			return err
		},
		"Set": func(ctx context.Context) error { return s.Set(ctx, "x:k", []byte("v"), 0) },
		"SetNX": func(ctx context.Context) error {
			_, err := s.SetNX(ctx, "x:nx", []byte("v"), 0)
			return err
		},
		"Delete": func(ctx context.Context) error { return s.Delete(ctx, "x:k") },
		"Incr":   func(ctx context.Context) error { _, err := s.Incr(ctx, "x:c", 1, 0); return err },
		"WindowAdd": func(ctx context.Context) error {
			_, err := s.WindowAdd(ctx, "x:w", base, time.Minute, 1)
			return err
		},
		"WindowAddGetMulti": func(ctx context.Context) error {
			_, _, err := store.WindowAddGetMulti(ctx, s, "x:w", base, time.Minute, 1, "x:k")
			return err
		},
		"HIncr": func(ctx context.Context) error { return s.HIncr(ctx, "x:h", map[string]int64{"f": 1}) },
		"HGet": func(ctx context.Context) error {
			_, err := s.HGet(ctx, "x:h", []string{"f"})
			return err
		},
		"SAdd":      func(ctx context.Context) error { return s.SAdd(ctx, "x:s", 0, "m") },
		"SIsMember": func(ctx context.Context) error { _, err := s.SIsMember(ctx, "x:s", "m"); return err },
	}
}

// testContextCanceled: a canceled context fails every call at once with an error
// that is both the context's and store.ErrUnavailable (callers answer "try later").
func testContextCanceled(t *testing.T, s store.Store, _ clock) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, call := range calls(s) {
		start := time.Now()
		err := call(ctx)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with a canceled context: %v; want context.Canceled and store.ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with a canceled context took %v", name, d)
		}
	}
	// The store still works with a live context.
	mustIncr(t, s, "x:alive", 1, 0, 1)
}

// testClose: after Close every call fails with store.ErrUnavailable, and Close is
// idempotent.
func testClose(t *testing.T, s store.Store, _ clock) {
	mustIncr(t, s, "x:before", 1, 0, 1)
	must(t, s.Close(), "Close")
	must(t, s.Close(), "second Close")
	for name, call := range calls(s) {
		if err := call(ctxT(t)); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s after Close: %v; want store.ErrUnavailable", name, err)
		}
	}
}

// testCloseUnderLoad closes the store while goroutines are writing and reading:
// nothing hangs or panics, and every failure is store.ErrUnavailable.
func testCloseUnderLoad(t *testing.T, s store.Store, _ clock) {
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	var ops atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				switch i % 3 {
				case 0:
					_, err = s.Incr(ctx, "cl:ctr", 1, time.Hour)
				case 1:
					_, err = s.WindowAdd(ctx, fmt.Sprintf("cl:win:%d", w), base, time.Minute, 1)
				case 2:
					_, err = s.Get(ctx, "cl:missing")
					if errors.Is(err, store.ErrNotFound) {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
				ops.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for ops.Load() < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	must(t, s.Close(), "Close")
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("calls still running 5s after Close")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("call during Close: %v, want store.ErrUnavailable", err)
		}
	}
}
