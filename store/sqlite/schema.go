package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// kinds of rows in kv. A key holds one kind at a time; an operation of another kind
// treats the row as missing and replaces it (Redis would answer WRONGTYPE; callers
// never mix kinds on a key).
const (
	kindValue   = 0 // Get/Set/SetNX: value is the bytes
	kindCounter = 1 // Incr: value is an INTEGER
	kindWindow  = 2 // WindowAdd: value is the encoded buckets
	kindSet     = 3 // SAdd: the parent row holding the expiry; members in sets
)

// migrations are applied in order; user_version records how many ran. Append
// only: a released migration is never edited.
var migrations = []string{
	// 1: everything with a TTL lives in kv (expires: Unix ms, 0 = never); hashes
	// (Bayes tokens) have no TTL and get their own table, as do set members.
	`CREATE TABLE kv (
		key     TEXT PRIMARY KEY,
		kind    INTEGER NOT NULL,
		value   BLOB,
		expires INTEGER NOT NULL DEFAULT 0
	) WITHOUT ROWID;
	CREATE INDEX kv_expires ON kv(expires) WHERE expires != 0;
	CREATE TABLE hash (
		key   TEXT NOT NULL,
		field TEXT NOT NULL,
		n     INTEGER NOT NULL,
		PRIMARY KEY (key, field)
	) WITHOUT ROWID;
	CREATE TABLE sets (
		key    TEXT NOT NULL,
		member TEXT NOT NULL,
		PRIMARY KEY (key, member)
	) WITHOUT ROWID;`,
	// 2: no index on expires. Every Set with a ttl (a greylisting triplet on each
	// request) moved its entry: one or two more dirty pages, i.e. WAL frames, per
	// write. The sweep walks the table in key order instead.
	`DROP INDEX IF EXISTS kv_expires;`,
}

// migrate brings the schema to the latest version inside one write transaction,
// so concurrent processes opening the same file migrate it exactly once.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this dovetail (%d): downgrade not supported", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	if v < len(migrations) {
		// PRAGMA takes no parameters; the value is our own constant.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return tx.Commit()
}

// batchSizes are the batch sizes HIncr and HGet have statements for; a batch
// uses the smallest that fits and fills the rest with its last field (HIncr
// with a delta of 0).
var batchSizes = []int{1, 8, 32, 128}

// putSizes are the batch sizes of a write-behind flush's upserts, largest first.
var putSizes = []int{32, 8, 1}

// batchSize is the statement size for the next batch of n items.
func batchSize(n int) int {
	for _, s := range batchSizes {
		if s >= n {
			return s
		}
	}
	return batchSizes[len(batchSizes)-1]
}

type stmts struct {
	get, set, setNX, incr                 *sql.Stmt
	delKV, delHash, delSet                *sql.Stmt
	winPeek, winRead, winWrite, winUpdate *sql.Stmt
	load, dataVersion, keys               *sql.Stmt         // write-behind (hot.go)
	put                                   map[int]*sql.Stmt // by batch size (putSizes)
	hincr, hget                           map[int]*sql.Stmt // by batch size
	setMeta, setParent, setClear, setAdd  *sql.Stmt
	isMember                              *sql.Stmt
	begin, commit, rollback               *sql.Stmt
	sweepNext, sweepRange, sweepTail      *sql.Stmt
	all                                   []*sql.Stmt
}

// live is the SQL condition for a row that has not expired at ?now.
const live = `(expires = 0 OR expires > :now)`

// preparer is a *sql.DB (the read pool) or a *sql.Conn (the writer's connection:
// its statements stay bound to it).
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

func (st *stmts) prepare(ctx context.Context, w, r preparer) error {
	var errs []error
	p := func(db preparer, q string) *sql.Stmt {
		s, err := db.PrepareContext(ctx, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w in %s", err, q))
			return nil
		}
		st.all = append(st.all, s)
		return s
	}
	st.get = p(r, `SELECT value FROM kv WHERE key = :key AND kind = 0 AND `+live)
	st.set = p(w, `INSERT INTO kv (key, kind, value, expires) VALUES (:key, 0, :value, :expires)
		ON CONFLICT (key) DO UPDATE SET kind = 0, value = excluded.value, expires = excluded.expires`)
	// SetNX replaces only an expired row; no change means the key was live.
	st.setNX = p(w, `INSERT INTO kv (key, kind, value, expires) VALUES (:key, 0, :value, :expires)
		ON CONFLICT (key) DO UPDATE SET kind = 0, value = excluded.value, expires = excluded.expires
		WHERE NOT (kv.expires = 0 OR kv.expires > :now)`)
	// Incr keeps a live counter's expiry (fixed window) and restarts a dead one.
	st.incr = p(w, `INSERT INTO kv (key, kind, value, expires) VALUES (:key, 1, :delta, :expires)
		ON CONFLICT (key) DO UPDATE SET
			value   = CASE WHEN kind = 1 AND `+live+` THEN value + excluded.value ELSE excluded.value END,
			expires = CASE WHEN kind = 1 AND `+live+` THEN expires ELSE excluded.expires END,
			kind    = 1
		RETURNING value`)
	st.delKV = p(w, `DELETE FROM kv WHERE key = :key`)
	st.delHash = p(w, `DELETE FROM hash WHERE key = :key`)
	st.delSet = p(w, `DELETE FROM sets WHERE key = :key`)
	st.winPeek = p(r, `SELECT value FROM kv WHERE key = :key AND kind = 2 AND `+live)
	st.winRead = p(w, `SELECT value, expires FROM kv WHERE key = :key AND kind = 2 AND `+live)
	st.winUpdate = p(w, `UPDATE kv SET value = :value WHERE key = :key`)
	st.winWrite = p(w, `INSERT INTO kv (key, kind, value, expires) VALUES (:key, 2, :value, :expires)
		ON CONFLICT (key) DO UPDATE SET kind = 2, value = excluded.value, expires = excluded.expires`)
	// HIncr and HGet work in batches: one statement per up to 128 fields.
	st.hincr = map[int]*sql.Stmt{}
	for _, n := range batchSizes {
		q := `INSERT INTO hash (key, field, n) VALUES (?, ?, ?)`
		for range n - 1 {
			q += `, (?, ?, ?)`
		}
		st.hincr[n] = p(w, q+` ON CONFLICT (key, field) DO UPDATE SET n = n + excluded.n`)
	}
	st.hget = map[int]*sql.Stmt{}
	for _, n := range batchSizes {
		q := `SELECT field, n FROM hash WHERE key = ? AND field IN (?`
		for range n - 1 {
			q += `, ?`
		}
		st.hget[n] = p(r, q+`)`)
	}
	st.setMeta = p(w, `SELECT kind, expires FROM kv WHERE key = :key`)
	st.setParent = p(w, `INSERT INTO kv (key, kind, value, expires) VALUES (:key, 3, NULL, :expires)
		ON CONFLICT (key) DO UPDATE SET kind = 3, value = NULL, expires = excluded.expires`)
	st.setClear = st.delSet
	st.setAdd = p(w, `INSERT OR IGNORE INTO sets (key, member) VALUES (:key, :member)`)
	st.isMember = p(r, `SELECT EXISTS (SELECT 1 FROM kv WHERE key = :key AND kind = 3 AND `+live+`)
		AND EXISTS (SELECT 1 FROM sets WHERE key = :key AND member = :member)`)
	// A sweep step covers sweepBatch keys from :from: sweepNext finds where the
	// next step starts, the delete runs inside SQLite and returns only the dead.
	st.sweepNext = p(w, `SELECT key FROM kv WHERE key >= :from ORDER BY key LIMIT 1 OFFSET :n`)
	st.sweepRange = p(w, `DELETE FROM kv WHERE key >= :from AND key < :to
		AND expires != 0 AND expires <= :now RETURNING key, kind`)
	st.sweepTail = p(w, `DELETE FROM kv WHERE key >= :from
		AND expires != 0 AND expires <= :now RETURNING key, kind`)
	st.load = p(r, `SELECT kind, value, expires FROM kv WHERE key = :key AND `+live)
	st.keys = p(r, `SELECT key FROM kv`)
	// A flush writes its rows putSizes at a time: one statement per batch
	// instead of per row saves database/sql's and the driver's per-call work
	// (locks, statement reset). Positional parameters: binding by name costs a
	// lookup per argument.
	st.put = map[int]*sql.Stmt{}
	for _, n := range putSizes {
		q := `INSERT INTO kv (key, kind, value, expires) VALUES (?, ?, ?, ?)`
		for range n - 1 {
			q += `, (?, ?, ?, ?)`
		}
		st.put[n] = p(w, q+` ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, value = excluded.value, expires = excluded.expires`)
	}
	// data_version changes when another connection commits, never for our own.
	st.dataVersion = p(w, `PRAGMA data_version`)
	st.begin = p(w, `BEGIN IMMEDIATE`)
	st.commit = p(w, `COMMIT`)
	st.rollback = p(w, `ROLLBACK`)
	return errors.Join(errs...)
}

func (st *stmts) close() {
	for _, s := range st.all {
		s.Close()
	}
	st.all = nil
}
