// Package sqlite is the embedded store.Store: one SQLite file in the data dir
// (modernc.org/sqlite, pure Go), shared safely by every dovetail process on the host.
//
// Layout: WAL journal with synchronous=NORMAL (a commit is a write to the WAL, no
// fsync; a power loss can lose the last commits but never corrupts the file — fine
// for rate-limit counters and greylisting triplets), one writer connection (SQLite
// serialises writers anyway; one connection avoids SQLITE_BUSY ping-pong inside the
// process and lets every write statement stay prepared) and a small pool of
// read-only connections that read a snapshot concurrently with the writer.
// Read-modify-write operations run in BEGIN IMMEDIATE transactions, so they are
// atomic across processes too; busy_timeout covers contention between processes.
//
// Expiry is lazy (every read ignores expired rows, writes replace them) plus a
// periodic sweep that deletes expired rows in small batches.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/dovetail-mail/dovetail/store"
)

// Options configure Open. Only Path is required.
type Options struct {
	// Path of the database file; it is created (mode 0600) when missing.
	Path string
	// ReadConns is the size of the read-only pool (default: GOMAXPROCS, at least 2).
	ReadConns int
	// BusyTimeout is how long a statement waits for another process' write lock
	// before failing with store.ErrUnavailable (default 5 s).
	BusyTimeout time.Duration
	// SweepInterval is the period of the expired-row sweep (default 1 min;
	// negative disables it).
	SweepInterval time.Duration
	// Now is the clock for TTLs (default time.Now); tests drive it.
	Now func() time.Time
	// Logger receives sweep failures (default: discard).
	Logger *slog.Logger
	// WriteBehind > 0 keeps values, counters and windows in memory and writes
	// changed rows to the file at most this long after the change (see hot.go);
	// 0 writes every call through.
	WriteBehind time.Duration
	// HotKeys bounds the rows held in memory with WriteBehind (default 200,000);
	// beyond it unchanged rows are dropped and re-read when next used.
	HotKeys int
}

// Store is a store.Store on one SQLite file. It is safe for concurrent use.
type Store struct {
	w, r   *sql.DB   // w: one connection, all writes; r: read-only pool
	wc     *sql.Conn // w's connection, held by the writer goroutine
	ck     *sql.DB   // one connection for WAL checkpoints, off the writer's path
	st     stmts
	now    func() time.Time
	log    *slog.Logger
	ops    chan *writeOp
	stop   chan struct{}
	done   chan struct{} // maintenance stopped
	wdone  chan struct{} // writer stopped
	closer sync.Once
	cerr   error
	closed atomic.Bool
	hot    *hot // nil: write-through
}

var _ store.Store = (*Store)(nil)

// Open opens (creating and migrating if needed) the database at opts.Path and
// starts the expiry sweep.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, errors.New("sqlite: no database path")
	}
	path, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	// The state names senders and recipients: keep it private. SQLite gives the
	// -wal and -shm files the main file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w: %w", store.ErrUnavailable, err)
	}
	f.Close()

	if opts.ReadConns <= 0 {
		opts.ReadConns = max(2, runtime.GOMAXPROCS(0))
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	s := &Store{now: opts.Now, log: opts.Logger, ops: make(chan *writeOp, 4*maxBatch),
		stop: make(chan struct{}), done: make(chan struct{}), wdone: make(chan struct{})}
	busy := fmt.Sprint(opts.BusyTimeout.Milliseconds())
	s.w, err = sql.Open("sqlite", dsn(path, url.Values{
		"_busy_timeout": {busy},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_txlock":       {"immediate"},
		// Checkpoints (the only fsyncs with synchronous=NORMAL) run on their
		// own connection, not inside some request's commit.
		// A write-behind flush is one transaction touching many pages: with
		// SQLite's default 2 MB cache it spills dirty pages to the WAL midway
		// and reads them back (measured: ~30 % of a flush).
		"_pragma": {"wal_autocheckpoint(0)", "cache_size(-32768)"},
	}))
	if err == nil {
		s.ck, err = sql.Open("sqlite", dsn(path, url.Values{"_busy_timeout": {busy}}))
	}
	if err == nil {
		s.r, err = sql.Open("sqlite", dsn(path, url.Values{
			"_busy_timeout": {busy},
			"_query_only":   {"true"},
		}))
	}
	if err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: open %s: %w: %w", path, store.ErrUnavailable, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.r.SetMaxOpenConns(opts.ReadConns)
	s.r.SetMaxIdleConns(opts.ReadConns)
	s.r.SetConnMaxLifetime(0)
	s.ck.SetMaxOpenConns(1)
	s.ck.SetConnMaxLifetime(0)

	if err := migrate(ctx, s.w); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: %s: %w: %w", path, store.ErrUnavailable, err)
	}
	if s.wc, err = s.w.Conn(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: %s: %w: %w", path, store.ErrUnavailable, err)
	}
	if err := s.st.prepare(ctx, s.wc, s.r); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite: %s: prepare: %w: %w", path, store.ErrUnavailable, err)
	}
	if opts.WriteBehind > 0 {
		// Before any goroutine starts: on failure there is nothing to stop
		// (Close would wait for a flusher that never ran), and the
		// goroutines see s.hot set.
		var version int64
		if err := s.st.dataVersion.QueryRowContext(ctx).Scan(&version); err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("sqlite: %s: %w: %w", path, store.ErrUnavailable, err)
		}
		s.hot = newHot(opts.HotKeys, opts.WriteBehind)
		s.hot.version = version
	}
	go s.writer()
	go s.maintain(opts.SweepInterval)
	if s.hot != nil {
		go s.flusher(opts.WriteBehind)
	}
	return s, nil
}

// dsn builds a file: URI so that any path (spaces, '?', '#') survives.
func dsn(path string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

func (s *Store) closeDBs() error {
	var errs []error
	s.st.close()
	if s.wc != nil {
		errs = append(errs, s.wc.Close())
	}
	for _, db := range []*sql.DB{s.ck, s.r, s.w} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// Close stops the background work and closes the database; later calls fail with
// store.ErrUnavailable. Close is idempotent.
func (s *Store) Close() error {
	s.closer.Do(func() {
		var herr error
		if s.hot != nil {
			// Before the writer stops: the cached rows still have to be written.
			herr = s.closeHot()
		}
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		<-s.wdone
		// A final checkpoint folds the WAL back into the main file, so a copied
		// state.db is complete; failure only leaves a WAL SQLite replays on open.
		_, _ = s.wc.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
		s.cerr = errors.Join(herr, s.closeDBs())
	})
	return s.cerr
}

// nowMS is the store clock in Unix milliseconds.
func (s *Store) nowMS() int64 { return s.now().UnixMilli() }

// expiry converts a ttl into the expires column: Unix ms, 0 for never.
func (s *Store) expiry(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return s.nowMS() + max(ttl.Milliseconds(), 1)
}

// fail wraps err as a backend failure. When ctx is done the context's error is
// wrapped too: SQLite reports an interrupted statement in its own words.
func fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("sqlite %s: %w: %w (%w)", op, store.ErrUnavailable, cerr, err)
	}
	return fmt.Errorf("sqlite %s: %w: %w", op, store.ErrUnavailable, err)
}
