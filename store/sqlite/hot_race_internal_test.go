package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// gate is a hot.hook that stops the first caller reaching at (for key, unless
// key is "") until released.
type gate struct {
	at, key string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newGate(at, key string) *gate {
	return &gate{at: at, key: key, reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *gate) hook(at, key string) {
	if at != g.at || (g.key != "" && key != g.key) {
		return
	}
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.reached)
		<-g.release
	}
}

func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing reached %q", g.at)
	}
}

func recv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not within 5s", what)
		panic("unreachable")
	}
}

// cached reports whether key has an entry in memory.
func cached(s *Store, key string) bool {
	s.hot.mu.Lock()
	defer s.hot.mu.Unlock()
	return s.hot.m[key] != nil
}

// TestKeyIndexKeepsKeysFlushedDuringFirstScan: a key first flushed while the
// first key scan runs is not in the scan's snapshot of the file. The index must
// still have it when the scan completes, or once the entry is evicted the key
// reads as missing without a look at the file (Incr restarts, Get not found).
func TestKeyIndexKeepsKeysFlushedDuringFirstScan(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "state.db"), WriteBehind: time.Hour, HotKeys: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g := newGate("scanned", "")
	s.hot.hook = g.hook
	if err := s.Set(ctx, "old", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx, false); err != nil { // starts the first scan
		t.Fatal(err)
	}
	g.wait(t) // the scan has its snapshot of the keys
	if _, err := s.Incr(ctx, "rate:new", 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "grey:new", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s.hot.mu.Lock()
		done := !s.hot.idx.scanning && s.hot.idx.complete
		s.hot.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key scan did not complete")
		}
	}
	for i := range 8 { // HotKeys 4: evicts the clean entries
		if _, err := s.Get(ctx, fmt.Sprintf("filler:%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if cached(s, "rate:new") || cached(s, "grey:new") {
		t.Fatal("entries not evicted")
	}
	if v, err := s.Get(ctx, "grey:new"); err != nil || string(v) != "v" {
		t.Errorf("Get of a key flushed during the first scan, after eviction = %q, %v", v, err)
	}
	if n, err := s.Incr(ctx, "rate:new", 1, time.Hour); err != nil || n != 2 {
		t.Errorf("second Incr of a key flushed during the first scan, after eviction = %d, %v; want 2", n, err)
	}
}

// TestCloseRacesWrites: a write that passed the closed check before Close
// began but reaches the cache after Close's last flush must fail, not report
// success for a change that is never written. Both ways a write gets to its
// entry: straight (Set) and after reading the row on a miss (Incr).
func TestCloseRacesWrites(t *testing.T) {
	for _, tc := range []struct {
		name, at string
		write    func(ctx context.Context, s *Store) error
	}{
		{"cached", "begin", func(ctx context.Context, s *Store) error { return s.Set(ctx, "k", []byte("v"), 0) }},
		{"loaded", "loaded", func(ctx context.Context, s *Store) error { _, err := s.Incr(ctx, "k", 1, 0); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "state.db")
			s, err := Open(ctx, Options{Path: path, WriteBehind: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			g := newGate(tc.at, "")
			s.hot.hook = g.hook
			errc := make(chan error, 1)
			go func() { errc <- tc.write(ctx, s) }()
			g.wait(t)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			close(g.release)
			werr := recv(t, "write", errc)

			r, err := Open(ctx, Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			e, err := r.load(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			switch written := e.kind != kindNone; {
			case werr == nil && !written:
				t.Error("the write succeeded but is not in the file after Close")
			case werr != nil && !errors.Is(werr, store.ErrUnavailable):
				t.Errorf("the write failed with %v, want ErrUnavailable", werr)
			}
		})
	}
}

// TestMissDoesNotUndoNewerWrite: a miss reads the row without h.mu. If
// meanwhile the key is written (or deleted), flushed and evicted, the older row
// read must not be put back: it would be answered, and the next write would
// flush it over the newer state.
func TestMissDoesNotUndoNewerWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		second func(ctx context.Context, s *Store) (int64, error)
		want   int64 // the counter at the end; 0: no row
	}{
		{"incr", func(ctx context.Context, s *Store) (int64, error) { return s.Incr(ctx, "k", 1, 0) }, 7},
		{"delete", func(ctx context.Context, s *Store) (int64, error) { return 0, s.Delete(ctx, "k") }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "state.db")
			w, err := Open(ctx, Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Incr(ctx, "k", 5, 0); err != nil {
				t.Fatal(err)
			}
			w.Close()

			s, err := Open(ctx, Options{Path: path, WriteBehind: time.Hour, HotKeys: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			g := newGate("loaded", "k")
			waiting := make(chan struct{})
			var once sync.Once
			s.hot.hook = func(at, key string) {
				if at == "wait" && key == "k" {
					once.Do(func() { close(waiting) })
				}
				g.hook(at, key)
			}
			type result struct {
				n   int64
				err error
			}
			a, b := make(chan result, 1), make(chan result, 1)
			go func() { n, err := s.Incr(ctx, "k", 1, 0); a <- result{n, err} }()
			g.wait(t) // a has read 5 from the file
			go func() { n, err := tc.second(ctx, s); b <- result{n, err} }()
			var rb *result
			select {
			case r := <-b: // b did not wait for a's read
				rb = &r
			case <-waiting: // nothing written yet (and a waiting Delete holds the flush lock)
			case <-time.After(5 * time.Second):
				t.Fatal("second call neither done nor waiting")
			}
			if rb != nil {
				if err := s.flush(ctx, false); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 4 { // HotKeys 2: evicts the clean entries
				if _, err := s.Get(ctx, fmt.Sprintf("filler:%d", i)); !errors.Is(err, store.ErrNotFound) {
					t.Fatal(err)
				}
			}
			close(g.release)
			ra := recv(t, "first Incr", a)
			if rb == nil {
				r := recv(t, "second call", b)
				rb = &r
			}
			if ra.err != nil || rb.err != nil {
				t.Fatalf("errors: %v, %v", ra.err, rb.err)
			}
			if err := s.flush(ctx, false); err != nil {
				t.Fatal(err)
			}
			e, err := s.load(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if got := map[bool]int64{true: e.n, false: 0}[e.kind == kindCounter]; got != tc.want {
				t.Errorf("counter in the file = %d (kind %d), want %d; Incr returned %d", got, e.kind, tc.want, ra.n)
			}
			if n, err := s.Incr(ctx, "k", 0, 0); err != nil || n != tc.want {
				t.Errorf("counter = %d, %v; want %d", n, err, tc.want)
			}
		})
	}
}

// TestDeleteHonoursDeadlineBehindFlush: Delete waits for a flush in progress
// (so that no older snapshot lands after it), but not past its caller's
// deadline, e.g. behind a flush stuck on another process's write lock.
func TestDeleteHonoursDeadlineBehindFlush(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, Options{Path: path, WriteBehind: time.Hour, BusyTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Set(ctx, "a", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	release := HoldWriteLock(t, path)
	flushed := make(chan error, 1)
	go func() { flushed <- s.flush(context.Background(), false) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		s.hot.mu.Lock()
		taken := len(s.hot.dirty) == 0 // the flush holds the flush lock and waits for the file
		s.hot.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flush did not start")
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	derr := s.Delete(dctx, "a")
	took := time.Since(start)
	release()
	recv(t, "flush", flushed)
	if took > time.Second {
		t.Errorf("Delete with a 50ms deadline took %v", took)
	}
	if !errors.Is(derr, store.ErrUnavailable) || !errors.Is(derr, context.DeadlineExceeded) {
		t.Errorf("Delete past its deadline: %v, want ErrUnavailable and DeadlineExceeded", derr)
	}
}
