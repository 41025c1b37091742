// Package quarantine keeps messages an admin should review instead of delivering
// them: each message is a file under Dir/msg/ and a row in an SQLite index
// (Dir/index.db, modernc.org/sqlite) with id, time, recipient, sender, subject,
// spam score, symbols and reason. Retention and a total size cap are enforced on
// every Add and by Purge.
package quarantine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
	_ "modernc.org/sqlite" // driver "sqlite"
)

// ErrNotFound: no quarantined message with that id.
var ErrNotFound = errors.New("quarantine: no such message")

// ErrReleasing: the message is claimed by a release under way (another process).
var ErrReleasing = errors.New("quarantine: already released or deleted (a release is under way)")

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
	// syncDir makes a directory's entries durable (tests record the calls).
	syncDir func(dir string) error
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
  queue_id TEXT NOT NULL,
  claimed INTEGER NOT NULL DEFAULT 0
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
	// synchronous=FULL: lmtpd answers 250 as soon as Add's INSERT commits, and in
	// WAL mode NORMAL lets a power loss roll back the last commits — the message
	// would be acknowledged and its row gone. The index sees a few writes an hour.
	// A file: URI built by net/url: a '?', '#' or '%' in the directory's name
	// would otherwise cut the path (the index opened elsewhere, without these
	// pragmas) or fail to open.
	path, err := filepath.Abs(filepath.Join(cfg.Dir, "index.db"))
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	// The index names every message's recipient, sender and subject: created
	// 0600 like the messages (SQLite gives -wal and -shm its mode), not by
	// SQLite under the umask, which in a directory made beforehand with 0755
	// let every local user read it.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	f.Close()
	dsn := url.URL{Scheme: "file", Path: filepath.ToSlash(path),
		RawQuery: "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"}
	db, err := sql.Open("sqlite", dsn.String())
	if err != nil {
		return nil, fmt.Errorf("quarantine: open index: %w", err)
	}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("quarantine: create index: %w", err)
	}
	if err := addClaimedColumn(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("quarantine: upgrade index: %w", err)
	}
	return &Store{cfg: cfg, db: db, now: time.Now, syncDir: syncDir}, nil
}

// addClaimedColumn upgrades an index made before releases claimed their message.
func addClaimedColumn(db *sql.DB) error {
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pragma_table_info('messages') WHERE name='claimed'`).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	_, err := db.Exec(`ALTER TABLE messages ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0`)
	if err != nil && strings.Contains(err.Error(), "duplicate column") {
		return nil // another process upgraded it just now
	}
	return err
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

// syncDir makes dir's entries durable.
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
		if err = s.syncDir(filepath.Dir(p)); err != nil {
			os.Remove(p)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("quarantine: write message: %w", err)
	}
	err = s.insert(ctx, e)
	if err != nil {
		os.Remove(p)
		return "", fmt.Errorf("quarantine: index: %w", err)
	}
	// The message is safe; a failed cleanup is retried on the next Add or purge.
	s.enforce(ctx, e.ID)
	return e.ID, nil
}

func (s *Store) insert(ctx context.Context, e *Entry) error {
	_, err := s.insertAs(ctx, "INSERT", e)
	return err
}

// insertAs inserts e's row with verb (INSERT, or INSERT OR IGNORE) and reports
// whether it did.
func (s *Store) insertAs(ctx context.Context, verb string, e *Entry) (bool, error) {
	res, err := s.db.ExecContext(ctx, verb+` INTO messages (`+cols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.ID, e.Time.UnixMicro(), e.Recipient, e.User, e.Sender, e.Subject, e.Score,
		strings.Join(e.Symbols, ","), e.Reason, e.Size, e.MessageID, e.QueueID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
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

// Delete removes entries and their files. Unknown ids give ErrNotFound, ids a
// release has claimed ErrReleasing (after the others were deleted).
func (s *Store) Delete(ctx context.Context, ids ...string) error {
	var missing, busy []string
	for _, id := range ids {
		if !validID(id) {
			missing = append(missing, id)
			continue
		}
		ok, err := s.remove(ctx, id, 0)
		if err != nil {
			return fmt.Errorf("quarantine: delete %s: %w", id, err)
		}
		if ok {
			continue
		}
		switch _, err := s.claimOf(ctx, id); {
		case errors.Is(err, ErrNotFound):
			missing = append(missing, id)
		case err != nil:
			return fmt.Errorf("quarantine: delete %s: %w", id, err)
		default:
			busy = append(busy, id)
		}
	}
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrNotFound, strings.Join(missing, ", ")))
	}
	if len(busy) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrReleasing, strings.Join(busy, ", ")))
	}
	return errors.Join(errs...)
}

// remove deletes id's row, if it is claimed by claim (0: unclaimed), and its
// file, in one transaction: a crash in between leaves a row without a file
// (which fails visibly and is purged) rather than a file without a row, which
// Recover would bring back as if the index had lost it. For the same reason the
// unlink is made durable (directory fsync) before the row's deletion commits:
// otherwise a power loss could bring back a released message, to be released
// again, or a deleted one.
func (s *Store) remove(ctx context.Context, id string, claim int64) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id=? AND claimed=?`, id, claim)
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := s.syncDir(filepath.Dir(s.path(id))); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// claimOf returns id's claim (0: none), ErrNotFound without a row.
func (s *Store) claimOf(ctx context.Context, id string) (int64, error) {
	var c int64
	err := s.db.QueryRowContext(ctx, `SELECT claimed FROM messages WHERE id=?`, id).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return c, err
}

// Claimed is a message reserved for one release: nobody else can release,
// delete or purge it until Done or Abort.
type Claimed struct {
	Entry   *Entry
	Message []byte

	s     *Store
	id    string // also when Entry could not be read
	token int64
}

// Claim reserves id for a release and returns it with its message. Two releases
// of one message (or a release and a delete or purge) may race from different
// processes: exactly one wins, the others get ErrReleasing (claimed right now) or
// ErrNotFound (already gone).
func (s *Store) Claim(ctx context.Context, id string) (*Claimed, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	token := s.now().UnixMicro()
	c := &Claimed{s: s, id: id, token: token}
	res, err := s.db.ExecContext(ctx, `UPDATE messages SET claimed=? WHERE id=? AND claimed=0`, token, id)
	if err != nil {
		// The claim may have committed all the same: the driver reports a
		// cancellation that races the statement's end as the context's error.
		return nil, c.putBack(ctx, fmt.Errorf("quarantine: claim %s: %w", id, err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.claimOf(ctx, id); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", ErrReleasing, id)
	}
	if c.Entry, err = s.Get(ctx, id); err == nil {
		c.Message, err = os.ReadFile(s.path(id))
	}
	if err != nil {
		return nil, c.putBack(ctx, fmt.Errorf("quarantine: read %s: %w", id, err))
	}
	return c, nil
}

// putBack drops the claim of a Claim that failed, and returns err (with the
// put-back's own error, if any). It runs also when ctx is what ran out: left
// claimed, the message could be neither released nor deleted until Recover
// drops the claim an hour later.
func (c *Claimed) putBack(ctx context.Context, err error) error {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if aerr := c.Abort(bctx); aerr != nil {
		return errors.Join(err, aerr)
	}
	return err
}

// Done removes a released message from the quarantine.
func (c *Claimed) Done(ctx context.Context) error {
	ok, err := c.s.remove(ctx, c.id, c.token)
	if err == nil && !ok {
		err = errors.New("the claim expired")
	}
	if err != nil {
		return fmt.Errorf("quarantine: remove released %s: %w", c.id, err)
	}
	return nil
}

// Abort puts a message whose release failed back into the quarantine.
func (c *Claimed) Abort(ctx context.Context) error {
	_, err := c.s.db.ExecContext(ctx, `UPDATE messages SET claimed=0 WHERE id=? AND claimed=?`, c.id, c.token)
	if err != nil {
		return fmt.Errorf("quarantine: put back %s: %w", c.id, err)
	}
	return nil
}

// staleAfter: a claim this old belongs to a release that died (one takes
// seconds), and a file this old in msg/ without a row is no Add under way.
const staleAfter = time.Hour

// Recover repairs what a crash can leave behind: a claim of a release that died
// is dropped, so the message can be released (again — it may have been
// delivered) or deleted; a message file without an index row (an index from
// before synchronous=FULL that lost commits in a power loss, or a writer that died
// between the file and the row) is indexed again from what the file tells, so it
// shows in list and is released, deleted or purged like any other. It returns how
// many messages it brought back.
func (s *Store) Recover(ctx context.Context) (int, error) {
	old := s.now().Add(-staleAfter)
	if _, err := s.db.ExecContext(ctx, `UPDATE messages SET claimed=0 WHERE claimed<>0 AND claimed<?`, old.UnixMicro()); err != nil {
		return 0, fmt.Errorf("quarantine: recover: %w", err)
	}
	// Rows first, then files: remove() unlinks a file before its row's deletion
	// commits, so a file listed after this read without a row here is no delete
	// under way.
	known := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM messages`)
	if err != nil {
		return 0, fmt.Errorf("quarantine: recover: %w", err)
	}
	for rows.Next() {
		var id string
		if rows.Scan(&id) == nil {
			known[id] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("quarantine: recover: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(s.cfg.Dir, "msg"))
	if err != nil {
		return 0, fmt.Errorf("quarantine: recover: %w", err)
	}
	n := 0
	for _, de := range ents {
		id, ok := strings.CutSuffix(de.Name(), ".eml")
		if !ok || !validID(id) || known[id] {
			continue
		}
		info, err := de.Info()
		if err != nil || !info.Mode().IsRegular() || !info.ModTime().Before(old) {
			continue
		}
		e := &Entry{ID: id, Time: info.ModTime(), Size: info.Size(),
			Reason: "recovered: the index had lost it (recipient and sender unknown)"}
		if b, err := readHead(s.path(id)); err == nil {
			e.Subject, e.MessageID, e.Score = recoveredFields(b)
		}
		// OR IGNORE: another process's Recover (lmtpd's housekeeping, an
		// admin's list or purge) may have indexed it since the rows were read.
		added, err := s.insertAs(ctx, "INSERT OR IGNORE", e)
		if err != nil {
			return n, fmt.Errorf("quarantine: recover %s: %w", id, err)
		}
		if added {
			n++
		}
	}
	return n, nil
}

// readHead reads the start of a message, enough for its header.
func readHead(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 64<<10))
}

// recoveredFields takes what list shows from a message's header.
func recoveredFields(msg []byte) (subject, messageID string, score float64) {
	hdr := msg
	if i := bytes.Index(msg, []byte("\n\n")); i >= 0 {
		hdr = msg[:i+1]
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(hdr, '\n'))))
	h, _ := tp.ReadMIMEHeader() // what parsed before a malformed line
	subject = h.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = d
	}
	if f := strings.Fields(h.Get("X-Spam-Score")); len(f) > 0 {
		score, _ = strconv.ParseFloat(f[0], 64)
	}
	return subject, h.Get("Message-ID"), score
}

// Purge deletes entries older than before and returns how many.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	return s.purge(ctx, before, "")
}

func (s *Store) purge(ctx context.Context, before time.Time, keep string) (int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM messages WHERE time<? AND id<>? AND claimed=0`, before.UnixMicro(), keep)
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
	return s.removeAll(ctx, ids)
}

// removeAll removes the unclaimed ones of ids and returns how many: one a
// release claimed or someone deleted since they were selected is passed over.
func (s *Store) removeAll(ctx context.Context, ids []string) (int, error) {
	n := 0
	for _, id := range ids {
		ok, err := s.remove(ctx, id, 0)
		if err != nil {
			return n, fmt.Errorf("quarantine: delete %s: %w", id, err)
		}
		if ok {
			n++
		}
	}
	return n, nil
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
	rows, err := s.db.QueryContext(ctx, `SELECT id,size FROM messages WHERE id<>? AND claimed=0 ORDER BY time ASC`, keep)
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
	k, err := s.removeAll(ctx, ids)
	return n + k, err
}
