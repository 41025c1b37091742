package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// sweepBatch bounds one sweep transaction, so the writer is never held for long
// while a backlog of expired rows (after downtime) is cleared.
const sweepBatch = 500

func (s *Store) sweepLoop(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-s.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		n, err := s.Sweep(ctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sqlite store: expiry sweep failed", "err", err, "deleted", n)
		} else if n > 0 {
			s.log.Debug("sqlite store: expiry sweep", "deleted", n)
		}
	}
}

// Sweep deletes every expired row now (the periodic sweep calls it) and returns how
// many keys it removed.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := s.tx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.StmtContext(ctx, s.st.sweepKV).QueryContext(ctx,
				sql.Named("now", s.nowMS()), sql.Named("limit", sweepBatch))
			if err != nil {
				return err
			}
			var sets []string
			for rows.Next() {
				var key string
				var kind int
				if err := rows.Scan(&key, &kind); err != nil {
					rows.Close()
					return err
				}
				n++
				if kind == kindSet {
					sets = append(sets, key)
				}
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			del := tx.StmtContext(ctx, s.st.sweepSet)
			for _, k := range sets {
				if _, err := del.ExecContext(ctx, sql.Named("key", k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fail(ctx, "sweep", err)
		}
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}
