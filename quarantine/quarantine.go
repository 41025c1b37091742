// Package quarantine keeps messages an admin should review instead of delivering
// them: each message is a file under Dir/msg/ and a row in an SQLite index
// (Dir/index.db, modernc.org/sqlite) with id, time, recipient, sender, subject,
// spam score, symbols and reason. Retention and a total size cap are enforced on
// every Add and by Purge.
package quarantine

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	_ "modernc.org/sqlite" // driver "sqlite"
)

// ErrNotFound: no quarantined message with that id.
var ErrNotFound = errors.New("quarantine: no such message")

// Config is the quarantine section.
type Config struct {
	// Dir holds index.db and msg/ (default: <data_dir>/quarantine).
	Dir string `yaml:"dir"`
	// Retention: messages older than this are purged (0 = keep forever).
	Retention config.Duration `yaml:"retention"`
	// MaxSize caps the total size of quarantined messages; the oldest go first.
	MaxSize config.Size `yaml:"max_size"`
}

// DefaultConfig returns 30 days and 1 GiB; Dir is filled from the data dir.
func DefaultConfig() Config {
	return Config{Retention: config.Duration(30 * 24 * time.Hour), MaxSize: 1 << 30}
}

// Validate checks the direct fields.
func (c Config) Validate() error {
	var errs []error
	if c.Retention < 0 {
		errs = append(errs, config.Errorf("retention", "must not be negative", "e.g. 30d"))
	}
	if c.MaxSize < 0 {
		errs = append(errs, config.Errorf("max_size", "must not be negative", "e.g. 1GB"))
	}
	return config.Join(errs...)
}

// Entry is one quarantined message.
type Entry struct {
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Recipient string    `json:"recipient"`
	User      string    `json:"user"`
	Sender    string    `json:"sender"`
	Subject   string    `json:"subject"`
	Score     float64   `json:"score"`
	Symbols   []string  `json:"symbols,omitempty"`
	Reason    string    `json:"reason"`
	Size      int64     `json:"size"`
	MessageID string    `json:"message_id,omitempty"`
	QueueID   string    `json:"queue_id,omitempty"`
}

// Store is an open quarantine.
type Store struct {
	cfg Config
	db  *sql.DB
	now func() time.Time
}

const schema = `
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY,
  time INTEGER NOT NULL,
  recipient TEXT NOT NULL,
  usr TEXT NOT NULL,
  sender TEXT NOT NULL,
  subject TEXT NOT NULL,
  score REAL NOT NULL,
  symbols TEXT NOT NULL,
  reason TEXT NOT NULL,
  size INTEGER NOT NULL,
  message_id TEXT NOT NULL,
  queue_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_time ON messages(time);
CREATE INDEX IF NOT EXISTS messages_usr ON messages(usr);
`

// Open opens (creating if needed) the quarantine in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	for _, sub := range []string{"msg", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
	}
	sweepTmp(filepath.Join(cfg.Dir, "tmp"), time.Now().Add(-time.Hour))
	dsn := "file:" + filepath.Join(cfg.Dir, "index.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("quarantine: open index: %w", err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("quarantine: create index: %w", err)
	}
	return &Store{cfg: cfg, db: db, now: time.Now}, nil
}

// Close closes the index.
func (s *Store) Close() error { return s.db.Close() }

var idEnc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func newID(now time.Time) string {
	var b [10]byte
	rand.Read(b[:])
	// Time-prefixed so ids sort roughly by age and are short enough to type.
	return now.UTC().Format("060102") + "-" + idEnc.EncodeToString(b[:])[:10]
}

func validID(id string) bool {
	if len(id) < 8 || len(id) > 40 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Store) path(id string) string { return filepath.Join(s.cfg.Dir, "msg", id+".eml") }

// sweepTmp removes what a writer killed mid-Add left in tmp/ (older than before,
// so a concurrent Add in another process is never disturbed).
func sweepTmp(dir string, before time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.ModTime().Before(before) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Add stores msg with e's metadata and returns the new id. The message file is
// durable (file and directory fsynced) before the index row is written, so an
// indexed message always exists and lmtpd may acknowledge the delivery. Retention
// and the size cap are applied to the other messages: the new one is never
// evicted by its own Add, even when it alone is larger than max_size.
func (s *Store) Add(ctx context.Context, e *Entry, msg []byte) (string, error) {
	now := s.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	e.ID = newID(now)
	e.Size = int64(len(msg))
	p := s.path(e.ID)
	tmp := filepath.Join(s.cfg.Dir, "tmp", e.ID+".eml")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	_, err = f.Write(msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		if err = syncDir(filepath.Dir(p)); err != nil {
			os.Remove(p)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("quarantine: write message: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.ID, e.Time.UnixMicro(), e.Recipient, e.User, e.Sender, e.Subject, e.Score,
		strings.Join(e.Symbols, ","), e.Reason, e.Size, e.MessageID, e.QueueID)
	if err != nil {
		os.Remove(p)
		return "", fmt.Errorf("quarantine: index: %w", err)
	}
	// The message is safe; a failed cleanup is retried on the next Add or purge.
	s.enforce(ctx, e.ID)
	return e.ID, nil
}

// Filter selects entries for List.
type Filter struct {
	User     string // recipient address or login (exact, case-insensitive)
	Since    time.Time
	MinScore float64
	HasMin   bool
	Limit    int
}

const cols = `id,time,recipient,usr,sender,subject,score,symbols,reason,size,message_id,queue_id`

func scan(rows interface{ Scan(...any) error }) (*Entry, error) {
	var e Entry
	var t int64
	var sym string
	if err := rows.Scan(&e.ID, &t, &e.Recipient, &e.User, &e.Sender, &e.Subject, &e.Score, &sym, &e.Reason, &e.Size, &e.MessageID, &e.QueueID); err != nil {
		return nil, err
	}
	e.Time = time.UnixMicro(t)
	if sym != "" {
		e.Symbols = strings.Split(sym, ",")
	}
	return &e, nil
}

// List returns matching entries, newest first.
func (s *Store) List(ctx context.Context, f Filter) ([]*Entry, error) {
	q := `SELECT ` + cols + ` FROM messages WHERE 1=1`
	var args []any
	if f.User != "" {
		q += ` AND (lower(recipient)=lower(?) OR lower(usr)=lower(?))`
		args = append(args, f.User, f.User)
	}
	if !f.Since.IsZero() {
		q += ` AND time>=?`
		args = append(args, f.Since.UnixMicro())
	}
	if f.HasMin {
		q += ` AND score>=?`
		args = append(args, f.MinScore)
	}
	q += ` ORDER BY time DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	defer rows.Close()
	var out []*Entry
	for rows.Next() {
		e, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("quarantine: list: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Get returns one entry.
func (s *Store) Get(ctx context.Context, id string) (*Entry, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	e, err := scan(s.db.QueryRowContext(ctx, `SELECT `+cols+` FROM messages WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	return e, nil
}

// Message returns the stored message.
func (s *Store) Message(ctx context.Context, id string) ([]byte, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.path(id))
	if err != nil {
		return nil, fmt.Errorf("quarantine: read %s: %w", id, err)
	}
	return b, nil
}

// Delete removes entries and their files. Unknown ids give ErrNotFound (after the
// known ones were deleted).
func (s *Store) Delete(ctx context.Context, ids ...string) error {
	var missing []string
	for _, id := range ids {
		if !validID(id) {
			missing = append(missing, id)
			continue
		}
		res, err := s.db.ExecContext(ctx, `DELETE FROM messages WHERE id=?`, id)
		if err != nil {
			return fmt.Errorf("quarantine: delete %s: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			missing = append(missing, id)
			continue
		}
		os.Remove(s.path(id))
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", "))
	}
	return nil
}

// Purge deletes entries older than before and returns how many.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	return s.purge(ctx, before, "")
}

func (s *Store) purge(ctx context.Context, before time.Time, keep string) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM messages WHERE time<? AND id<>?`, before.UnixMicro(), keep)
	if err != nil {
		return 0, fmt.Errorf("quarantine: purge: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			ids = append(ids, id)
		}
	}
	rows.Close()
	if len(ids) == 0 {
		return 0, nil
	}
	return len(ids), s.Delete(ctx, ids...)
}

// Enforce applies retention and the size cap (oldest first); it returns how many
// messages it removed.
func (s *Store) Enforce(ctx context.Context) (int, error) {
	return s.enforce(ctx, "")
}

// enforce is Enforce sparing the message keep.
func (s *Store) enforce(ctx context.Context, keep string) (int, error) {
	n := 0
	if s.cfg.Retention > 0 {
		k, err := s.purge(ctx, s.now().Add(-s.cfg.Retention.D()), keep)
		if err != nil {
			return n, err
		}
		n += k
	}
	if s.cfg.MaxSize <= 0 {
		return n, nil
	}
	var total sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT sum(size) FROM messages`).Scan(&total); err != nil {
		return n, fmt.Errorf("quarantine: size: %w", err)
	}
	over := total.Int64 - int64(s.cfg.MaxSize)
	if over <= 0 {
		return n, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id,size FROM messages WHERE id<>? ORDER BY time ASC`, keep)
	if err != nil {
		return n, fmt.Errorf("quarantine: size: %w", err)
	}
	var ids []string
	for rows.Next() && over > 0 {
		var id string
		var sz int64
		if rows.Scan(&id, &sz) == nil {
			ids = append(ids, id)
			over -= sz
		}
	}
	rows.Close()
	if len(ids) > 0 {
		if err := s.Delete(ctx, ids...); err != nil {
			return n, err
		}
	}
	return n + len(ids), nil
}
