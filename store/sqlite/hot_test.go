package sqlite_test

import (
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/sqlite"
	"github.com/dovetail-mail/dovetail/store/storetest"
)

func TestWriteBehindConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys int
	}{{"default", 0}, {"evicting", 4}} { // 4 rows: nearly every call re-reads the file
		t.Run(tc.name, func(t *testing.T) {
			storetest.RunWithClock(t, func(t *testing.T, now func() time.Time) store.Store {
				return open(t, sqlite.Options{Now: now, SweepInterval: -1, WriteBehind: 5 * time.Millisecond, HotKeys: tc.keys})
			})
		})
	}
}

// rawGet reads key's row straight from the file, as another process would.
func rawGet(t *testing.T, path, key string) (string, bool) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	err = db.QueryRow("SELECT CAST(value AS TEXT) FROM kv WHERE key = ?", key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}

// TestWriteBehindReachesTheFile: a change is in the file within the interval
// (not only at Close), and everything is there after Close.
func TestWriteBehindReachesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path, WriteBehind: 20 * time.Millisecond})
	ctx := t.Context()
	if err := s.Set(ctx, "grey:a", []byte("1 2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Set in the file", func() bool { v, ok := rawGet(t, path, "grey:a"); return ok && v == "1 2" })

	for i := range 3000 { // more than one flush chunk
		if _, err := s.Incr(ctx, fmt.Sprintf("ctr:%d", i), int64(i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.WindowAdd(ctx, "rate:x", time.Now(), time.Hour, 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	r := open(t, sqlite.Options{Path: path})
	for _, i := range []int{0, 1, 1234, 2999} {
		if n, err := r.Incr(ctx, fmt.Sprintf("ctr:%d", i), 0, 0); err != nil || n != int64(i) {
			t.Errorf("counter %d after Close = %d, %v", i, n, err)
		}
	}
	if n, err := r.WindowAdd(ctx, "rate:x", time.Now(), time.Hour, 0); err != nil || n != 7 {
		t.Errorf("window after Close = %d, %v; want 7", n, err)
	}
	if _, err := s.Get(ctx, "grey:a"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get after Close: %v, want ErrUnavailable", err)
	}
}

// TestWriteBehindIdleWakes: a store that has had nothing to write for a while
// flushes every idleEvery (a second) instead of every interval, and the first
// write after that wakes it: the row still reaches the file within about one
// interval, not a second.
func TestWriteBehindIdleWakes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path, WriteBehind: 20 * time.Millisecond})
	time.Sleep(150 * time.Millisecond) // several empty flushes: idle
	start := time.Now()
	if err := s.Set(t.Context(), "grey:late", []byte("3 4"), time.Hour); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Set in the file", func() bool { v, ok := rawGet(t, path, "grey:late"); return ok && v == "3 4" })
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("the write after an idle spell reached the file after %v; want about one interval (20ms), not a second", d)
	}
}

// TestWriteBehindSeesOtherProcesses: a row another process (here: a second,
// write-through Store) changes is seen within the interval, though cached.
func TestWriteBehindSeesOtherProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	a := open(t, sqlite.Options{Path: path, WriteBehind: 10 * time.Millisecond})
	b := open(t, sqlite.Options{Path: path})
	ctx := t.Context()
	if _, err := a.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) { // now cached as missing
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	if err := a.Set(ctx, "mine", []byte("a"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Set(ctx, "k", []byte("from b"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's Set seen by a", func() bool { v, err := a.Get(ctx, "k"); return err == nil && string(v) == "from b" })
	eventually(t, "a's Set seen by b", func() bool { v, err := b.Get(ctx, "mine"); return err == nil && string(v) == "a" })
	if err := b.Delete(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's Delete seen by a", func() bool { _, err := a.Get(ctx, "mine"); return errors.Is(err, store.ErrNotFound) })
}

// TestWriteBehindFlushFailure: while the file refuses writes (another process
// holds the write lock past busy_timeout) changes stay in memory, new writes fail
// temporarily, reads go on; when the file is free again everything lands.
func TestWriteBehindFlushFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, sqlite.Options{Path: path, WriteBehind: 10 * time.Millisecond, BusyTimeout: 20 * time.Millisecond})
	ctx := t.Context()
	if err := s.Set(ctx, "before", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "first flush", func() bool { _, ok := rawGet(t, path, "before"); return ok })

	release := sqlite.HoldWriteLock(t, path)
	if err := s.Set(ctx, "during", []byte("2"), 0); err != nil {
		t.Fatal(err) // accepted: the lock is not noticed before a flush
	}
	eventually(t, "writes refused while the file is locked", func() bool {
		return errors.Is(s.Set(ctx, "x", []byte("3"), 0), store.ErrUnavailable)
	})
	if v, err := s.Get(ctx, "during"); err != nil || string(v) != "2" {
		t.Fatalf("Get while locked = %q, %v", v, err)
	}
	release()
	eventually(t, "writes accepted again", func() bool { return s.Set(ctx, "after", []byte("4"), 0) == nil })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"before", "during", "after"} {
		if _, ok := rawGet(t, path, k); !ok {
			t.Errorf("%s lost", k)
		}
	}
}

func BenchmarkStoreWriteBehind(b *testing.B) {
	storetest.Benchmark(b, open(b, sqlite.Options{WriteBehind: 50 * time.Millisecond}))
}

// TestWriteBehindMatchesWriteThrough runs one random sequence of calls, with a
// clock that jumps across TTLs and windows, on a write-behind store that can hold
// only a few rows (so rows are flushed, evicted and re-read all the time) and on a
// write-through one: every answer must be the same, and so must the file.
// (No fuzz target: coverage instrumentation of the transpiled SQLite makes each
// run take seconds; several seeds instead.)
func TestWriteBehindMatchesWriteThrough(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, seed))
			differential(t, 2000, func(n int) int { return rnd.IntN(n) })
		})
	}
}

// differential applies steps calls, each drawn with pick(n) in [0, n), to both
// stores and compares the answers, then the files.
func differential(t *testing.T, steps int, pick func(n int) int) {
	c := newClock()
	dir := t.TempDir()
	hotPath := filepath.Join(dir, "hot.db")
	hot := open(t, sqlite.Options{Path: hotPath, Now: c.now, SweepInterval: -1, WriteBehind: time.Millisecond, HotKeys: 5})
	ref := open(t, sqlite.Options{Path: filepath.Join(dir, "ref.db"), Now: c.now, SweepInterval: -1})
	ctx := t.Context()
	type result struct {
		v   string
		n   int64
		ok  bool
		err error
	}
	do := func(s *sqlite.Store, op int, k string, d time.Duration, n int64) result {
		switch op {
		case 0:
			v, err := s.Get(ctx, k)
			return result{v: string(v), err: err}
		case 1:
			return result{err: s.Set(ctx, k, []byte(fmt.Sprint(n)), d)}
		case 2:
			ok, err := s.SetNX(ctx, k, []byte(fmt.Sprint(n)), d)
			return result{ok: ok, err: err}
		case 3:
			v, err := s.Incr(ctx, k, n, d)
			return result{n: v, err: err}
		case 4:
			v, err := s.WindowAdd(ctx, k, c.now(), 2*time.Minute, n%3)
			return result{n: v, err: err}
		default:
			return result{err: s.Delete(ctx, k)}
		}
	}
	// One kind per key (mixing kinds on a key is undefined); Delete takes any.
	kinds := []string{"v", "v", "v", "c", "w", ""}
	for i := range steps {
		op := pick(6)
		kind := kinds[op]
		if kind == "" {
			kind = []string{"v", "c", "w"}[pick(3)]
		}
		k := fmt.Sprintf("%s%d", kind, pick(6))
		d, n := time.Duration(pick(4))*30*time.Second, int64(pick(5)+1) // d 0 = no TTL
		got, want := do(hot, op, k, d, n), do(ref, op, k, d, n)
		if got != want {
			t.Fatalf("step %d: op %d on %s: write-behind %+v, write-through %+v", i, op, k, got, want)
		}
		if pick(10) == 0 {
			c.advance(time.Duration(pick(90)) * time.Second)
		}
	}
	if err := hot.Close(); err != nil {
		t.Fatal(err)
	}
	back := open(t, sqlite.Options{Path: hotPath, Now: c.now, SweepInterval: -1})
	for _, kind := range []string{"v", "c", "w"} {
		for j := range 6 {
			k := fmt.Sprintf("%s%d", kind, j)
			op := map[string]int{"v": 0, "c": 3, "w": 4}[kind]
			if got, want := do(back, op, k, 0, 0), do(ref, op, k, 0, 0); got != want {
				t.Errorf("%s in the file after Close: %+v, write-through %+v", k, got, want)
			}
		}
	}
}
