package quarantine

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// cancelledOnClaim is a context that is cancelled the moment id's claim has
// committed: the caller gives up (Ctrl-C, a timeout) between Claim's UPDATE
// and its read of the entry. It looks at the index through a connection of
// its own each time a database call asks whether it is done.
type cancelledOnClaim struct {
	context.Context
	db   *sql.DB
	id   string
	once sync.Once
	done chan struct{}
}

func (c *cancelledOnClaim) Done() <-chan struct{} {
	var claimed int64
	if c.db.QueryRow(`SELECT claimed FROM messages WHERE id=?`, c.id).Scan(&claimed) == nil && claimed != 0 {
		c.once.Do(func() { close(c.done) })
	}
	return c.done
}

func (c *cancelledOnClaim) Err() error {
	select {
	case <-c.Done():
		return context.Canceled
	default:
		return nil
	}
}

// TestClaimCancelledPutsBack: a Claim whose caller gives up right after the
// claim committed fails cleanly (no panic) and leaves the message unclaimed,
// so it can be released or deleted at once rather than "being released" for
// an hour until Recover drops the claim. Depending on when the driver looks at
// the context, the claim's own UPDATE or the read after it reports the
// cancellation; both must put the message back.
func TestClaimCancelledPutsBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	id, err := s.Add(ctx, &Entry{Recipient: "a@b"}, []byte("Subject: x\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	watch, err := sql.Open("sqlite", "file:"+dir+"/index.db")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	cctx := &cancelledOnClaim{Context: ctx, db: watch, id: id, done: make(chan struct{})}
	if c, err := s.Claim(cctx, id); err == nil {
		t.Fatalf("claim with a context cancelled midway succeeded: %+v", c)
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("claim with a context cancelled midway: %v, want context.Canceled", err)
	}
	if claim, err := s.claimOf(ctx, id); err != nil || claim != 0 {
		t.Fatalf("after the failed claim: claim %d, %v; want the message put back", claim, err)
	}
	c, err := s.Claim(ctx, id)
	if err != nil {
		t.Fatalf("claim after the failed one: %v", err)
	}
	if string(c.Message) != "Subject: x\n\nbody\n" {
		t.Errorf("message %q", c.Message)
	}
}

// TestRemoveSyncsDir: removing a message (release, delete, purge) makes the
// unlink durable before the row's deletion commits. Committed first, a power
// loss could leave the file without its row, and Recover would bring a
// released message back (to be released twice) or a deleted one.
func TestRemoveSyncsDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, Config{Dir: dir})
	var ids []string
	for range 3 {
		id, err := s.Add(ctx, &Entry{Recipient: "a@b", Time: time.Now().Add(-48 * time.Hour)}, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	orig := s.syncDir
	var synced []bool // per call: was the row still there, the file gone?
	s.syncDir = func(d string) error {
		if d != filepath.Join(dir, "msg") {
			t.Errorf("synced %s", d)
		}
		var n int
		s.db.QueryRow(`SELECT count(*) FROM messages`).Scan(&n)
		// The caller's transaction holds the write lock, not the read: the
		// row is still visible to another connection until the commit.
		synced = append(synced, n == len(ids)-len(synced))
		return orig(d)
	}
	c, err := s.Claim(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx, time.Now()); n != 1 || err != nil {
		t.Fatalf("purge %d %v", n, err)
	}
	if len(synced) != 3 {
		t.Fatalf("msg/ synced %d times for release, delete and purge, want 3", len(synced))
	}
	for i, before := range synced {
		if !before {
			t.Errorf("removal %d: msg/ synced after the row's deletion committed", i)
		}
	}
}
