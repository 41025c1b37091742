package quarantine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

// openStore opens a Store for the test and closes it when the test ends.
func openStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestAddListGetDeletePurge(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{Dir: t.TempDir()})
	now := time.Now()
	s.now = func() time.Time { return now }
	id1, err := s.Add(ctx, &Entry{Recipient: "alice@example.com", User: "alice", Sender: "x@y", Subject: "a", Score: 9, Symbols: []string{"GTUBE"}, Time: now.Add(-40 * 24 * time.Hour)}, []byte("Subject: a\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := s.Add(ctx, &Entry{Recipient: "carol@example.com", User: "carol", Subject: "b", Score: 3}, []byte("Subject: b\n\n"))
	all, _ := s.List(ctx, Filter{})
	if len(all) != 2 || all[0].ID != id2 {
		t.Fatalf("list %v", all)
	}
	if l, _ := s.List(ctx, Filter{User: "ALICE"}); len(l) != 1 || l[0].Symbols[0] != "GTUBE" {
		t.Errorf("by user: %v", l)
	}
	if l, _ := s.List(ctx, Filter{MinScore: 5, HasMin: true}); len(l) != 1 {
		t.Errorf("min score: %v", l)
	}
	if l, _ := s.List(ctx, Filter{Since: now.Add(-time.Hour)}); len(l) != 1 {
		t.Errorf("since: %v", l)
	}
	if m, err := s.Message(ctx, id1); err != nil || string(m) != "Subject: a\n\nbody\n" {
		t.Errorf("message %q %v", m, err)
	}
	if _, err := s.Get(ctx, "../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("path traversal id: %v", err)
	}
	if err := s.Delete(ctx, id2, "nope-nope-nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete with unknown id: %v", err)
	}
	if n, err := s.Purge(ctx, now.Add(-30*24*time.Hour)); n != 1 || err != nil {
		t.Errorf("purge %d %v", n, err)
	}
	if l, _ := s.List(ctx, Filter{}); len(l) != 0 {
		t.Errorf("left %v", l)
	}
	if m, _ := filepath.Glob(filepath.Join(s.cfg.Dir, "msg", "*")); len(m) != 0 {
		t.Errorf("files left %v", m)
	}
}

func TestSizeCap(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{Dir: t.TempDir(), MaxSize: config.Size(250)})
	base := time.Now()
	var ids []string
	for i := 0; i < 4; i++ {
		id, err := s.Add(ctx, &Entry{Recipient: "a@b", Time: base.Add(time.Duration(i) * time.Second)}, make([]byte, 100))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	l, _ := s.List(ctx, Filter{})
	if len(l) != 2 || l[0].ID != ids[3] || l[1].ID != ids[2] {
		t.Errorf("after cap: %v", l)
	}
}

// TestAddNeverEvictsItself: lmtpd answers 250 once Add returns, so the message
// just added must survive the cap and retention it triggers (it is the newest;
// a message larger than the whole cap pushes out the others, not itself).
func TestAddNeverEvictsItself(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{Dir: t.TempDir(), MaxSize: config.Size(150), Retention: config.Duration(time.Hour)})
	small, _ := s.Add(ctx, &Entry{Recipient: "a@b"}, make([]byte, 100))
	big, err := s.Add(ctx, &Entry{Recipient: "a@b"}, make([]byte, 400))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(ctx, big); err != nil {
		t.Fatalf("a message larger than max_size evicted itself: %v", err)
	}
	if _, err := s.Get(ctx, small); !errors.Is(err, ErrNotFound) {
		t.Errorf("older message kept over the cap: %v", err)
	}
	old, _ := s.Add(ctx, &Entry{Recipient: "a@b", Time: time.Now().Add(-2 * time.Hour)}, []byte("x"))
	if _, err := s.Get(ctx, old); err != nil {
		t.Errorf("a message timed before the retention evicted itself: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.cfg.Dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp/ not empty after Add: %v", ents)
	}
}

// TestOpenSweepsStaleTmp: a writer killed mid-Add leaves a file in tmp/; the next
// Open removes it once it is clearly stale (an hour), never a fresh one.
func TestOpenSweepsStaleTmp(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	stale, fresh := filepath.Join(dir, "tmp", "stale.eml"), filepath.Join(dir, "tmp", "fresh.eml")
	os.WriteFile(stale, []byte("half"), 0o600)
	os.WriteFile(fresh, []byte("writing"), 0o600)
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, past, past)
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale tmp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh tmp file removed: %v", err)
	}
}

// TestIndexDurable: lmtpd answers 250 right after Add, so the index must not lose
// a commit in a power loss: synchronous=FULL (2), not WAL's NORMAL (1).
func TestIndexDurable(t *testing.T) {
	s := openStore(t, Config{Dir: t.TempDir()})
	ctx := context.Background()
	for i := 0; i < 3; i++ { // each connection of the pool, held open
		conn, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var sync int
		if err := conn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
			t.Fatalf("connection %d: synchronous = %d %v, want 2 (FULL)", i, sync, err)
		}
	}
}

// TestOrphanRecovered: a message file without an index row (a row lost in a
// power loss, a writer killed between file and row) is indexed again by Recover,
// shows in List, and is purged like any other; a fresh one (an Add under way) is
// left alone.
func TestOrphanRecovered(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	id, err := s.Add(ctx, &Entry{Recipient: "alice@example.com"}, []byte("Subject: =?utf-8?q?caf=C3=A9?=\nMessage-ID: <o@x>\nX-Spam-Score: 12.5\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	fresh, _ := s.Add(ctx, &Entry{Recipient: "alice@example.com"}, []byte("Subject: new\n\n"))
	s.db.Exec(`DELETE FROM messages`) // the rows the power loss took
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(s.path(id), past, past)
	if l, _ := s.List(ctx, Filter{}); len(l) != 0 {
		t.Fatalf("list %v", l)
	}
	n, err := s.Recover(ctx)
	if err != nil || n != 1 {
		t.Fatalf("recovered %d, %v", n, err)
	}
	l, _ := s.List(ctx, Filter{})
	if len(l) != 1 || l[0].ID != id || l[0].Subject != "café" || l[0].MessageID != "<o@x>" || l[0].Score != 12.5 ||
		!strings.HasPrefix(l[0].Reason, "recovered") || l[0].Time.Unix() != past.Unix() {
		t.Fatalf("after recovery: %+v", l)
	}
	if n, _ := s.Recover(ctx); n != 0 {
		t.Errorf("recovered %d again", n)
	}
	if n, err := s.Purge(ctx, time.Now().Add(-time.Hour)); n != 1 || err != nil {
		t.Errorf("purge %d %v", n, err)
	}
	if _, err := os.Stat(s.path(id)); !os.IsNotExist(err) {
		t.Errorf("recovered message not purged: %v", err)
	}
	if _, err := os.Stat(s.path(fresh)); err != nil {
		t.Errorf("a fresh file was touched: %v", err)
	}
}

// TestClaim: a release claims its message first. A second release, a delete and
// a purge then leave it alone; a failed release puts it back; a finished one
// removes it; a claim of a release that died expires.
func TestClaim(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	other := openStore(t, Config{Dir: dir}) // another process
	id, _ := s.Add(ctx, &Entry{Recipient: "a@b", Time: time.Now().Add(-48 * time.Hour)}, []byte("Subject: x\n\nbody\n"))
	c, err := s.Claim(ctx, id)
	if err != nil || string(c.Message) != "Subject: x\n\nbody\n" || c.Entry.Recipient != "a@b" {
		t.Fatalf("claim: %+v %v", c, err)
	}
	if _, err := other.Claim(ctx, id); !errors.Is(err, ErrReleasing) {
		t.Errorf("second claim: %v", err)
	}
	if err := other.Delete(ctx, id); !errors.Is(err, ErrReleasing) {
		t.Errorf("delete of a claimed message: %v", err)
	}
	if n, err := other.Purge(ctx, time.Now()); n != 0 || err != nil {
		t.Errorf("purge of a claimed message: %d %v", n, err)
	}
	if err := c.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	c, err = other.Claim(ctx, id)
	if err != nil {
		t.Fatalf("claim after abort: %v", err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim after release: %v", err)
	}
	if _, err := os.Stat(s.path(id)); !os.IsNotExist(err) {
		t.Errorf("released file left: %v", err)
	}
	// A release that died: its claim expires after an hour.
	id2, _ := s.Add(ctx, &Entry{Recipient: "a@b"}, []byte("x"))
	if _, err := s.Claim(ctx, id2); err != nil {
		t.Fatal(err)
	}
	other.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	other.Recover(ctx)
	if err := other.Delete(ctx, id2); err != nil {
		t.Errorf("delete after the dead release's claim expired: %v", err)
	}
}

// TestOldIndexUpgraded: an index written before claims existed gets the column.
func TestOldIndexUpgraded(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	old := strings.Replace(schema, ",\n  claimed INTEGER NOT NULL DEFAULT 0", "", 1)
	for _, q := range []string{`DROP TABLE messages`, old,
		`INSERT INTO messages VALUES ('260101-aaaaaaaaaa',1,'a@b','a','s','subj',1,'','r',1,'','')`} {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Close()
	s = openStore(t, Config{Dir: dir})
	if _, err := s.Add(context.Background(), &Entry{Recipient: "a@b"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if l, err := s.List(context.Background(), Filter{}); err != nil || len(l) != 2 {
		t.Fatalf("list %v %v", l, err)
	}
}

// TestOddDirName: a quarantine directory whose name has characters that mean
// something in a URI keeps its index inside it, with its pragmas.
func TestOddDirName(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"a dir", "a?dir", "a#dir", "a%41dir"} {
		dir := filepath.Join(t.TempDir(), name)
		s := openStore(t, Config{Dir: dir})
		if _, err := s.Add(ctx, &Entry{Recipient: "a@b"}, []byte("x")); err != nil {
			t.Fatalf("%q: add: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "index.db")); err != nil {
			t.Errorf("%q: index not in the quarantine directory: %v", name, err)
		}
		var sync int
		if err := s.db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
			t.Errorf("%q: synchronous = %d %v, want 2 (FULL)", name, sync, err)
		}
	}
}
