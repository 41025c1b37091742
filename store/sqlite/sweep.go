package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// sweepBatch is the number of rows one sweep step looks at. A step holds the
// writer, so the requests queued behind it wait for it: at ~0.5 µs a row it
// stays near 0.1 ms, well inside the policy daemon's 1 ms budget.
const sweepBatch = 200

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
// many keys it removed. It walks the table in key order, sweepBatch keys per
// step: there is no index on the expiry (see migration 2), and a full walk per
// sweep interval costs far less than maintaining one on every write.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if s.hot != nil {
		// Cached rows first, so the sweep sees the file as the callers do.
		if err := s.flush(ctx, false); err != nil {
			return 0, err
		}
	}
	total := 0
	from := ""
	for {
		var deleted int
		var next sql.NullString
		err := s.write(ctx, func() error {
			deleted = 0
			err := s.st.sweepNext.QueryRow(sql.Named("from", from), sql.Named("n", sweepBatch)).Scan(&next)
			if errors.Is(err, sql.ErrNoRows) {
				next = sql.NullString{}
			} else if err != nil {
				return err
			}
			args := []any{sql.Named("from", from), sql.Named("now", s.nowMS())}
			st := s.st.sweepTail
			if next.Valid {
				st = s.st.sweepRange
				args = append(args, sql.Named("to", next.String))
			}
			rows, err := st.Query(args...)
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
				deleted++
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
			for _, k := range sets {
				if _, err := s.st.delSet.Exec(sql.Named("key", k)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fail(ctx, "sweep", err)
		}
		total += deleted
		if !next.Valid {
			return total, nil
		}
		from = next.String
	}
}
