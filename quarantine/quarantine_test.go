package quarantine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dovetail-mail/dovetail/internal/config"
)

func TestAddListGetDeletePurge(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	s, err := Open(Config{Dir: t.TempDir(), MaxSize: config.Size(250)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	s, err := Open(Config{Dir: t.TempDir(), MaxSize: config.Size(150), Retention: config.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
