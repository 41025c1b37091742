package sqlite

import (
	"path/filepath"
	"testing"
	"time"
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
		if err := s.flush(ctx); err != nil {
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
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.hot.mu.Lock()
	gen := s.hot.gen
	s.hot.mu.Unlock()
	if gen != 0 {
		t.Fatalf("cache invalidated %d times by this process's own writes", gen)
	}
}
