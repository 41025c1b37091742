package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// TestWriteBehindOwnWritesKeepTheCache: our own flushes, write-through calls
// (HIncr, SAdd, Delete), the sweep and checkpoints must not look like another
// process's commit, or every flush would empty the cache.
func TestWriteBehindOwnWritesKeepTheCache(t *testing.T) {
	s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "state.db"), WriteBehind: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	for i := range 50 {
		if err := s.Set(ctx, "k", []byte{byte(i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.HIncr(ctx, "h", map[string]int64{"f": 1}); err != nil {
			t.Fatal(err)
		}
		if err := s.SAdd(ctx, "s", time.Hour, "m"); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if err := s.flush(ctx, false); err != nil {
			t.Fatal(err)
		}
		// What maintain runs every second (TRUNCATE, at Close only, does bump
		// data_version: the WAL is reset by another connection).
		if _, err := s.ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	s.hot.mu.Lock()
	gen := s.hot.gen
	s.hot.mu.Unlock()
	if gen != 0 {
		t.Fatalf("cache invalidated %d times by this process's own writes", gen)
	}
}

// TestKeyIndex: once the key scan is done, a key that is not in the file is
// answered without reading it, while keys already in the file (from before Open)
// and keys flushed and then evicted from memory are still read and found.
func TestKeyIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	ctx := t.Context()
	w, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := w.Set(ctx, fmt.Sprintf("old:%d", i), []byte("v"), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()

	s, err := Open(ctx, Options{Path: path, WriteBehind: 5 * time.Millisecond, HotKeys: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	complete := func() bool {
		s.hot.mu.Lock()
		defer s.hot.mu.Unlock()
		return s.hot.idx.complete
	}
	for deadline := time.Now().Add(5 * time.Second); !complete(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("key scan did not complete")
		}
	}
	loads := func() int64 {
		s.hot.mu.Lock()
		defer s.hot.mu.Unlock()
		return s.hot.loads
	}
	before := loads()
	for i := range 100 {
		if _, err := s.Get(ctx, fmt.Sprintf("new:%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get of a new key: %v", err)
		}
	}
	if n := loads() - before; n > 2 { // a hash collision may read
		t.Errorf("%d file reads for 100 keys not in the file", n)
	}
	for i := range 100 {
		if v, err := s.Get(ctx, fmt.Sprintf("old:%d", i)); err != nil || string(v) != "v" {
			t.Fatalf("Get of a key from before Open = %q, %v", v, err)
		}
	}
	for i := range 50 { // HotKeys 10: flushed rows are evicted and re-read
		if _, err := s.Incr(ctx, fmt.Sprintf("ctr:%d", i), 5, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := s.Get(ctx, fmt.Sprintf("filler:%d", i)); !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if n, err := s.Incr(ctx, fmt.Sprintf("ctr:%d", i), 1, time.Hour); err != nil || n != 6 {
			t.Fatalf("counter %d after eviction = %d, %v; want 6", i, n, err)
		}
	}
}

// BenchmarkFlush: the write-behind cost per changed row, by rows per flush,
// keys spread over a 100,000-row table like greylisting triplets.
func BenchmarkFlush(b *testing.B) {
	for _, rows := range []int{1000, 4000, 16000} {
		b.Run(fmt.Sprint(rows), func(b *testing.B) {
			s, err := Open(b.Context(), Options{Path: filepath.Join(b.TempDir(), "state.db"), WriteBehind: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := b.Context()
			i := 0
			for b.Loop() {
				for range rows {
					i++
					if err := s.Set(ctx, fmt.Sprintf("grey:%d", (i*7919)%100000), []byte("1767225600 1767225900"), time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.flush(ctx, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
		})
	}
}

// TestFlushWritesEveryRow: a flush, paced (slices with pauses, batches of at
// most 8 rows) or not (batches of 32), gets every row into the file, whatever
// the remainder after the last full batch.
func TestFlushWritesEveryRow(t *testing.T) {
	for _, paced := range []bool{true, false} {
		t.Run(fmt.Sprint("paced=", paced), func(t *testing.T) {
			s, err := Open(t.Context(), Options{Path: filepath.Join(t.TempDir(), "state.db"), WriteBehind: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := t.Context()
			const n = 2000 + 32 + 8 + 7
			if s.hot.pacedRows < n {
				t.Fatalf("pacedRows = %d for a 1h interval, want >= %d", s.hot.pacedRows, n)
			}
			for i := range n {
				if _, err := s.WindowAdd(ctx, fmt.Sprintf("rate:%d", i), time.Now(), time.Hour, int64(i+1)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.flush(ctx, paced); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				e, err := s.load(ctx, fmt.Sprintf("rate:%d", i))
				if err != nil || e.kind != kindWindow || len(e.buckets) != 1 || e.buckets[0].n != int64(i+1) {
					t.Fatalf("row %d in the file: %+v, %v", i, e, err)
				}
			}
		})
	}
}
