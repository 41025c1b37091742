package sqlite

import (
	"context"
)

// Group commit, leader/follower. Every write queues itself; whichever waiting
// caller gets the writer connection (the lead token) takes everything queued
// (up to maxBatch) and runs it in one transaction on its own goroutine, then
// hands the token on. While one batch commits, the next one gathers in the
// queue, so under load one commit serves many requests, and at low load a write
// still runs at once, alone: nothing waits to fill a batch. A commit costs far
// more than a statement (WAL frame writes, file locks); running it on the
// caller's goroutine saves the hand-off to and from a writer goroutine.

const maxBatch = 128

type writeOp struct {
	ctx  context.Context
	fn   func() error // runs on the writer's statements; may run twice: only assign results
	done chan error   // buffered 1: the result, sent exactly once
}

// write runs fn in a write transaction, possibly shared with other writes.
func (s *Store) write(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.wmu.Lock()
	if s.closed.Load() {
		s.wmu.Unlock()
		return errClosed
	}
	s.wq = append(s.wq, op)
	s.wmu.Unlock()
	select {
	case err := <-op.done:
		return err
	case s.lead <- struct{}{}:
	case <-ctx.Done():
		// The write may still be applied, as with any backend whose caller
		// stops waiting; a leader skips it if it has not started yet.
		return ctx.Err()
	}
	// This caller holds the writer connection until it hands the token on.
	// Results are delivered before the token is released, so an op that an
	// earlier leader took already has its result. A leader finishes the batch
	// it took even if its own context ends (the others share the transaction):
	// only it may overrun its deadline, by at most BusyTimeout when another
	// process holds the write lock; followers still leave on theirs.
	defer func() { <-s.lead }()
	for {
		select {
		case err := <-op.done:
			return err
		default:
		}
		s.wmu.Lock()
		n := min(len(s.wq), maxBatch)
		batch := append(s.wbatch[:0], s.wq[:n]...)
		rest := copy(s.wq, s.wq[n:])
		clear(s.wq[rest:])
		s.wq = s.wq[:rest]
		s.wmu.Unlock()
		s.runBatch(batch)
		clear(batch)
		s.wbatch = batch[:0]
	}
}

// stopWriter takes the writer connection for good (waiting for the running
// batch) and fails what is still queued; s.closed must already be set.
func (s *Store) stopWriter() {
	s.lead <- struct{}{}
	s.wmu.Lock()
	q := s.wq
	s.wq = nil
	s.wmu.Unlock()
	for _, op := range q {
		op.done <- errClosed
	}
}

func (s *Store) runBatch(batch []*writeOp) {
	live := batch[:0]
	for _, op := range batch {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	// The statements run without the callers' contexts: one caller giving up
	// must not interrupt the others' shared transaction.
	err := s.txn(func() error {
		for _, op := range live {
			if err := op.fn(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(live) == 1 {
		for _, op := range live {
			op.done <- err
		}
		return
	}
	// One write failed and rolled back the batch: run each alone so that only
	// the failing one reports an error.
	for _, op := range live {
		op.done <- s.txn(op.fn)
	}
}

// txn runs fn in a write transaction on the writer connection. BEGIN IMMEDIATE
// takes the write lock up front, so two processes never deadlock upgrading read
// locks; BEGIN/COMMIT/ROLLBACK are prepared once like every other statement
// (database/sql's Tx would re-parse them and start a goroutine per transaction).
func (s *Store) txn(fn func() error) error {
	if _, err := s.st.begin.Exec(); err != nil {
		return err
	}
	err := fn()
	if err == nil {
		if _, err = s.st.commit.Exec(); err == nil {
			return nil
		}
	}
	// SQLite may already have rolled back (I/O error, SQLITE_FULL): ignore
	// "no transaction is active".
	_, _ = s.st.rollback.Exec()
	return err
}
