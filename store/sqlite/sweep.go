package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// sweepBatch bounds one sweep step. A step shares its group commit with
// requests, so it must stay short (~1 ms) even while a backlog of expired rows
// (after downtime) is cleared; requests get the writer between steps.
const sweepBatch = 100

// checkpointEvery is the period of the passive WAL checkpoint. It copies
// committed pages into the main file (with the fsyncs) while writers carry on,
// so the WAL is reused from its start and stays small.
const checkpointEvery = time.Second

// maintain runs the WAL checkpoint every second and the expiry sweep every
// sweepEvery (<= 0: never) until Close.
func (s *Store) maintain(sweepEvery time.Duration) {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	ckpt := time.NewTicker(checkpointEvery)
	defer ckpt.Stop()
	var sweep <-chan time.Time
	if sweepEvery > 0 {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-s.stop:
			return
		case <-ckpt.C:
			if _, err := s.ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)"); err != nil && ctx.Err() == nil {
				s.log.Warn("sqlite store: WAL checkpoint failed", "err", err)
			}
		case <-sweep:
			n, err := s.Sweep(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sqlite store: expiry sweep failed", "err", err, "deleted", n)
			} else if n > 0 {
				s.log.Debug("sqlite store: expiry sweep", "deleted", n)
			}
		}
	}
}

// Sweep deletes every expired row now (the periodic sweep calls it) and returns how
// many keys it removed.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := s.write(ctx, func() error {
			n = 0
			rows, err := s.st.sweepKV.Query(
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
			del := s.st.sweepSet
			for _, k := range sets {
				if _, err := del.Exec(sql.Named("key", k)); err != nil {
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
