package sqlite

import (
	"context"
)

// Group commit. Every write goes through one goroutine that owns the writer
// connection; it takes whatever writes are queued (up to maxBatch) and runs them
// in one transaction. A commit costs far more than a statement (WAL frame writes,
// file locks), so under load one commit serves many requests, and at low load a
// write still runs at once, alone: nothing waits to fill a batch.

const maxBatch = 128

type writeOp struct {
	ctx  context.Context
	fn   func() error // runs on the writer's statements; may run twice: only assign results
	done chan error
}

// write runs fn in a write transaction, possibly shared with other writes.
func (s *Store) write(ctx context.Context, fn func() error) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.wdone:
		return errClosed
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		// The write may still be applied, as with any backend whose caller
		// stops waiting; the writer skips it if it has not started yet.
		return ctx.Err()
	case <-s.wdone:
		select {
		case err := <-op.done:
			return err
		default:
			return errClosed
		}
	}
}

func (s *Store) writer() {
	defer close(s.wdone)
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case <-s.stop:
			return
		case op := <-s.ops:
			batch = append(batch[:0], op)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break drain
			}
		}
		s.runBatch(batch)
		clear(batch)
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
	// the failing one reports an error. A caller that gave up meanwhile has
	// been told its write failed, so it must not be applied now (and on a
	// busy file each retry would wait another busy_timeout).
	for _, op := range live {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
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
