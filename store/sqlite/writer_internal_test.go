package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"

	"github.com/dovetail-mail/dovetail/store"
)

// TestBatchRetrySkipsDoneContexts: when a shared transaction fails, its writes
// are retried one by one; a write whose caller has given up meanwhile (and was
// told it failed) must not be applied then.
func TestBatchRetrySkipsDoneContexts(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "state.db"), SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	victim := &writeOp{ctx: vctx, done: make(chan error, 1), fn: func() error {
		_, err := s.st.set.Exec(sql.Named("key", "victim"), sql.Named("value", []byte("v")), sql.Named("expires", int64(0)))
		return err
	}}
	failing := &writeOp{ctx: ctx, done: make(chan error, 1), fn: func() error {
		cancel() // the victim's caller gives up while the batch runs
		return errors.New("boom")
	}}
	s.runBatch([]*writeOp{victim, failing})
	if err := <-victim.done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v, want context.Canceled", err)
	}
	if err := <-failing.done; err == nil {
		t.Error("failing write reported success")
	}
	if _, err := s.Get(ctx, "victim"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the cancelled write's key: %v; it was applied after its caller gave up", err)
	}
}
