package sqlite

import (
	"context"
	"database/sql"
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
// many keys it removed. It walks the table in key order, sweepBatch rows per
// step: there is no index on the expiry (see migration 2), and a full walk per
// sweep interval costs far less than maintaining one on every write.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	from := ""
	for {
		var scanned, deleted int
		var last string
		err := s.write(ctx, func() error {
			scanned, deleted = 0, 0
			now := s.nowMS()
			rows, err := s.st.sweepScan.Query(sql.Named("from", from), sql.Named("limit", sweepBatch))
			if err != nil {
				return err
			}
			type deadKey struct {
				key  string
				kind int
			}
			var dead []deadKey
			for rows.Next() {
				var d deadKey
				var expires int64
				if err := rows.Scan(&d.key, &d.kind, &expires); err != nil {
					rows.Close()
					return err
				}
				scanned++
				last = d.key
				if expires != 0 && expires <= now {
					dead = append(dead, d)
				}
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, d := range dead {
				if _, err := s.st.delKV.Exec(sql.Named("key", d.key)); err != nil {
					return err
				}
				if d.kind == kindSet {
					if _, err := s.st.delSet.Exec(sql.Named("key", d.key)); err != nil {
						return err
					}
				}
			}
			deleted = len(dead)
			return nil
		})
		if err != nil {
			return total, fail(ctx, "sweep", err)
		}
		total += deleted
		if scanned < sweepBatch {
			return total, nil
		}
		from = last + "\x00" // the smallest key after last
	}
}
