package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dovetail-mail/dovetail/internal/testenv"
	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/redis"
	"github.com/dovetail-mail/dovetail/store/storetest"
)

func TestMain(m *testing.M) {
	redis.SetLogger(slog.New(slog.DiscardHandler)) // the outage tests make it chatty
	testenv.Main(m)
}

var prefixes atomic.Int64

// newStore returns a Store on the shared test Redis with a prefix of its own, so
// parallel tests never see each other's keys.
func newStore(t testing.TB, opts redis.Options) *redis.Store {
	t.Helper()
	srv := testenv.Redis(t)
	if opts.Addrs == nil {
		opts.Addrs = []string{srv.Addr}
	}
	if opts.Prefix == "" {
		opts.Prefix = fmt.Sprintf("test%d:", prefixes.Add(1))
	}
	// The 200 ms defaults are for production; a CI box running every package's
	// tests at once can stall a healthy Redis longer than that. Tests of the
	// timeouts themselves set theirs.
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout, opts.WriteTimeout = 2*time.Second, 2*time.Second
	}
	s, err := redis.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t, redis.Options{}) })
}

func TestPrefixSeparatesStores(t *testing.T) {
	ctx := t.Context()
	a := newStore(t, redis.Options{Prefix: "a:"})
	b := newStore(t, redis.Options{Prefix: "b:"})
	if err := a.Set(ctx, "k", []byte("from a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b sees a's key: %v", err)
	}
}

func TestNewNeedsAddress(t *testing.T) {
	if _, err := redis.New(redis.Options{}); err == nil {
		t.Fatal("New without an address succeeded")
	}
}

// allFail runs every kind of call and checks each fails fast as unavailable.
func allFail(t *testing.T, s store.Store, what string) {
	t.Helper()
	ctx := t.Context()
	calls := map[string]func() error{
		"Get":       func() error { _, err := s.Get(ctx, "k"); return err },
		"GetMulti":  func() error { _, err := store.GetMulti(ctx, s, "k", "l"); return err },
		"Set":       func() error { return s.Set(ctx, "k", []byte("v"), time.Minute) },
		"Incr":      func() error { _, err := s.Incr(ctx, "c", 1, time.Minute); return err },
		"WindowAdd": func() error { _, err := s.WindowAdd(ctx, "w", time.Now(), time.Minute, 1); return err },
		"WindowAddGetMulti": func() error {
			_, _, err := store.WindowAddGetMulti(ctx, s, "w", time.Now(), time.Minute, 1, "k")
			return err
		},
		"HIncr": func() error { return s.HIncr(ctx, "h", map[string]int64{"f": 1}) },
		"HGet":  func() error { _, err := s.HGet(ctx, "h", []string{"f"}); return err },
		"SAdd":  func() error { return s.SAdd(ctx, "s", time.Minute, "m") },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		d := time.Since(start)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with Redis %s: %v, want store.ErrUnavailable", name, what, err)
		}
		if d > time.Second {
			t.Errorf("%s with Redis %s took %v, want < 1s", name, what, d)
		}
	}
}

// waitUp polls until the store answers again (the client reconnects on its own).
func waitUp(t *testing.T, s store.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Incr(t.Context(), "recovered", 1, time.Minute)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after Redis came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisDown: with Redis stopped every call fails within a second with
// store.ErrUnavailable, and the same client works again once Redis is back.
func TestRedisDown(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{ReadTimeout: redis.DefaultReadTimeout, WriteTimeout: redis.DefaultWriteTimeout})
	if _, err := s.Incr(t.Context(), "c", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)
	allFail(t, s, "stopped")
	allFail(t, s, "still stopped") // the pool's dial breaker must not make it slower
	srv.Start(t)
	waitUp(t, s)
}

// TestRedisFrozen: a Redis that accepts connections but never answers (SIGSTOP)
// fails calls after the read timeout, not the kernel's TCP timeout.
func TestRedisFrozen(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	if _, err := s.Incr(t.Context(), "c", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Freeze(t)
	allFail(t, s, "frozen")
	srv.Thaw(t)
	waitUp(t, s)
}

// TestCallerDeadline: the caller's deadline applies even when it is shorter than
// the configured read timeout (policyd's per-request budget).
func TestCallerDeadline(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{ReadTimeout: 2 * time.Second})
	srv.Freeze(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Incr(ctx, "c", 1, time.Minute)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Incr past the caller's deadline: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Incr took %v with a 50ms deadline", d)
	}
	srv.Thaw(t)
	waitUp(t, s)
}

// BenchmarkStore: go test -run '^$' -bench . -benchtime 2s ./store/redis
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, newStore(b, redis.Options{}))
}

// TestWindowSurvivesForeignField: a field the script did not write (an operator's
// HSET, a bug) is dropped instead of failing the key forever.
func TestWindowSurvivesForeignField(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{Prefix: "foreign:"})
	now := time.Now()
	if _, err := s.WindowAdd(t.Context(), "w", now, time.Minute, 2); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	if err := raw.HSet(t.Context(), "foreign:w", "junk", "not-a-bucket", "junk2", "x:y").Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.WindowAdd(t.Context(), "w", now, time.Minute, 1); err != nil || n != 3 {
		t.Fatalf("WindowAdd after a foreign field = %d, %v; want 3", n, err)
	}
}

// TestWindowAddGetMultiScriptFlushed: after SCRIPT FLUSH (or a Redis restart)
// the pipelined EVALSHA answers NOSCRIPT without running; the script is then
// sent whole, and the event is counted exactly once.
func TestWindowAddGetMultiScriptFlushed(t *testing.T) {
	srv := testenv.Redis(t)
	s := newStore(t, redis.Options{Prefix: "flushed:"})
	ctx := t.Context()
	now := time.Now()
	if err := s.Set(ctx, "v", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	raw := goredis.NewClient(&goredis.Options{Addr: srv.Addr})
	defer raw.Close()
	for i := range 2 {
		if err := raw.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		n, vals, err := s.WindowAddGetMulti(ctx, "w", now, time.Minute, 1, "v")
		if err != nil || n != int64(i+1) || len(vals) != 1 || string(vals[0]) != "x" {
			t.Fatalf("WindowAddGetMulti after SCRIPT FLUSH = %d, %q, %v; want %d, [x]", n, vals, err, i+1)
		}
	}
	if n, err := s.WindowAdd(ctx, "w", now, time.Minute, 0); err != nil || n != 2 {
		t.Fatalf("window after two adds = %d, %v", n, err)
	}
}

// TestWindowAddGetMultiReadFails: a read that fails (here WRONGTYPE: the key is
// a hash) leaves the values nil but the add counted and answered.
func TestWindowAddGetMultiReadFails(t *testing.T) {
	s := newStore(t, redis.Options{})
	ctx := t.Context()
	if err := s.HIncr(ctx, "h", map[string]int64{"f": 1}); err != nil {
		t.Fatal(err)
	}
	n, vals, err := s.WindowAddGetMulti(ctx, "w", time.Now(), time.Minute, 1, "h")
	if err != nil || n != 1 || vals != nil {
		t.Fatalf("WindowAddGetMulti with a failing read = %d, %q, %v; want 1, nil, nil", n, vals, err)
	}
}
