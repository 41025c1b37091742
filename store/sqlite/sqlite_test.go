package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/sqlite"
	"github.com/dovetail-mail/dovetail/store/storetest"
)

func open(t testing.TB, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "state.db")
	}
	s, err := sqlite.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunWithClock(t, func(t *testing.T, now func() time.Time) store.Store {
		return open(t, sqlite.Options{Now: now, SweepInterval: -1})
	})
}

// clock is a settable test clock.
type clock struct{ t atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestSweepDeletesExpiredRows(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path, Now: c.now, SweepInterval: -1})
	ctx := t.Context()
	for i := range 1200 { // many sweep batches
		if err := s.Set(ctx, fmt.Sprintf("k%d", i), []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SAdd(ctx, "set", time.Minute, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(ctx, "forever", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	// Keys at the edges of the key-order walk: empty, and with NUL bytes.
	for _, k := range []string{"", "k1\x00", "k1\x00\x00"} {
		if err := s.Set(ctx, k, []byte("v"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep before expiry = %d, %v; want 0", n, err)
	}
	c.advance(time.Minute)
	n, err := s.Sweep(ctx)
	if err != nil || n != 1204 {
		t.Fatalf("Sweep = %d, %v; want 1204", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var kv, members int
	if err := db.QueryRow("SELECT (SELECT count(*) FROM kv), (SELECT count(*) FROM sets)").Scan(&kv, &members); err != nil {
		t.Fatal(err)
	}
	if kv != 1 || members != 0 {
		t.Fatalf("after sweep: %d kv rows, %d set members; want 1, 0", kv, members)
	}
}

func TestPeriodicSweepStopsOnClose(t *testing.T) {
	c := newClock()
	s := open(t, sqlite.Options{Now: c.now, SweepInterval: 5 * time.Millisecond})
	if err := s.Set(t.Context(), "k", []byte("v"), time.Second); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := s.Sweep(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 { // the periodic sweep got there first (or we did: both fine)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sweep never ran")
		}
	}
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the sweep")
	}
}

// TestTwoStoresOneFile: two Stores on one file stand for two dovetail processes
// (policyd and lmtpd on one host); increments from both are counted exactly.
func TestTwoStoresOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	a := open(t, sqlite.Options{Path: path})
	b := open(t, sqlite.Options{Path: path})
	var wg sync.WaitGroup
	for _, s := range []*sqlite.Store{a, b, a, b} {
		wg.Go(func() {
			for range 100 {
				if _, err := s.Incr(t.Context(), "ctr", 1, time.Hour); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.WindowAdd(t.Context(), "win", time.Now(), time.Hour, 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n, err := a.Incr(t.Context(), "ctr", 0, 0); err != nil || n != 400 {
		t.Fatalf("counter = %d, %v; want 400", n, err)
	}
	if n, err := b.WindowAdd(t.Context(), "win", time.Now(), time.Hour, 0); err != nil || n != 400 {
		t.Fatalf("window = %d, %v; want 400", n, err)
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path})
	if err := s.Set(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, sqlite.Options{Path: path})
	if v, err := s.Get(t.Context(), "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get after reopen = %q, %v", v, err)
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode = %v, want 0600", fi.Mode().Perm())
	}

	// A file from a newer dovetail is refused, not downgraded.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = sqlite.Open(t.Context(), sqlite.Options{Path: path})
	if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), sqlite.Options{}); err == nil {
		t.Error("Open without a path succeeded")
	}
	_, err := sqlite.Open(t.Context(), sqlite.Options{Path: filepath.Join(t.TempDir(), "no", "such", "dir", "state.db")})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Open in a missing dir: %v, want ErrUnavailable", err)
	}
}

// cancelOnVersionRead is a context that is cancelled when Open reads PRAGMA
// data_version (its only statement QueryRowContext), the last step before the
// write-behind flusher starts.
type cancelOnVersionRead struct {
	context.Context
	cancel context.CancelFunc
}

func (c cancelOnVersionRead) Done() <-chan struct{} {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for prev := ""; ; {
		f, more := frames.Next()
		if prev == "database/sql.(*Stmt).QueryRowContext" && strings.HasSuffix(f.Function, "/store/sqlite.Open") {
			c.cancel()
		}
		if !more {
			break
		}
		prev = f.Function
	}
	return c.Context.Done()
}

// TestOpenFailsReadingDataVersion: Open with write-behind failing at its last
// step returns the error; it must not wait for a flusher it never started.
func TestOpenFailsReadingDataVersion(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		s, err := sqlite.Open(cancelOnVersionRead{ctx, cancel},
			sqlite.Options{Path: filepath.Join(t.TempDir(), "state.db"), WriteBehind: time.Millisecond})
		if err == nil {
			s.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if ctx.Err() == nil {
			t.Fatal("Open did not read data_version with the context")
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("Open cancelled reading data_version: %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open cancelled reading data_version hangs")
	}
}

func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with#odd%chars")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := open(t, sqlite.Options{Path: filepath.Join(dir, "state.db")})
	if err := s.Set(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err != nil {
		t.Fatalf("database not at the configured path: %v", err)
	}
}

func TestCorruptWindowIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path})
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("INSERT INTO kv (key, kind, value, expires) VALUES ('w', 2, x'ffffffff', 0)"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WindowAdd(t.Context(), "w", time.Now(), time.Minute, 0); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("reading a corrupt window: %v, want ErrUnavailable", err)
	}
	if n, err := s.WindowAdd(t.Context(), "w", time.Now(), time.Minute, 2); err != nil || n != 2 {
		t.Fatalf("writing over a corrupt window = %d, %v; want 2", n, err)
	}
}

// BenchmarkStore: go test -run '^$' -bench . -benchtime 2s ./store/sqlite
func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, open(b, sqlite.Options{}))
}

// BenchmarkSweep walks 100,000 live rows: the cost of one full sweep, per row.
func BenchmarkSweep(b *testing.B) {
	s := open(b, sqlite.Options{SweepInterval: -1})
	for i := range 100 {
		// Set goes through the writer one op at a time; seed in parallel batches.
		var wg sync.WaitGroup
		for j := range 1000 {
			wg.Go(func() {
				if err := s.Set(b.Context(), fmt.Sprintf("grey:%d:%d", i, j), []byte("1 1767225600"), time.Hour); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	b.ResetTimer()
	for b.Loop() {
		if n, err := s.Sweep(b.Context()); err != nil || n != 0 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100000, "ns/row")
}
