package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// HIncr adds deltas to the fields of the hash at key, in one transaction of
// multi-row upserts.
func (s *Store) HIncr(ctx context.Context, key string, deltas map[string]int64) error {
	if len(deltas) == 0 {
		return s.alive(ctx, "hincr")
	}
	fields := make([]string, 0, len(deltas))
	for f := range deltas {
		fields = append(fields, f)
	}
	err := s.write(ctx, func() error {
		args := make([]any, 0, 3*batchSizes[len(batchSizes)-1])
		for rest := fields; len(rest) > 0; {
			size := batchSize(len(rest))
			batch := rest[:min(size, len(rest))]
			rest = rest[len(batch):]
			args = args[:0]
			for i := range size {
				if i < len(batch) {
					args = append(args, key, batch[i], deltas[batch[i]])
				} else {
					args = append(args, key, batch[len(batch)-1], int64(0))
				}
			}
			if _, err := s.st.hincr[size].Exec(args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "hincr", err)
	}
	return nil
}

// HGet returns the values of the fields present in the hash at key, reading in
// batches of up to 128 fields per statement.
func (s *Store) HGet(ctx context.Context, key string, fields []string) (map[string]int64, error) {
	out := make(map[string]int64, len(fields))
	if len(fields) == 0 {
		return out, s.alive(ctx, "hget")
	}
	args := make([]any, 0, 1+batchSizes[len(batchSizes)-1])
	for len(fields) > 0 {
		size := batchSize(len(fields))
		batch := fields[:min(size, len(fields))]
		fields = fields[len(batch):]
		args = append(args[:0], key)
		for i := range size {
			args = append(args, batch[min(i, len(batch)-1)])
		}
		if err := s.hgetBatch(ctx, s.st.hget[size], args, out); err != nil {
			return nil, fail(ctx, "hget", err)
		}
	}
	return out, nil
}

func (s *Store) hgetBatch(ctx context.Context, st *sql.Stmt, args []any, out map[string]int64) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var f string
		var n int64
		if err := rows.Scan(&f, &n); err != nil {
			return err
		}
		out[f] = n
	}
	return rows.Err()
}

// SAdd adds members to the set at key; a ttl > 0 (re)sets the set's expiry, 0
// keeps the current one. An expired set is emptied before members are added.
func (s *Store) SAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	now := s.nowMS()
	err := s.write(ctx, func() error {
		var kind, expires int64
		err := s.st.setMeta.QueryRow(sql.Named("key", key)).Scan(&kind, &expires)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		isLive := exists && kind == kindSet && (expires == 0 || expires > now)
		if exists && !isLive {
			if _, err := s.st.setClear.Exec(sql.Named("key", key)); err != nil {
				return err
			}
		}
		exp := s.expiry(ttl)
		if ttl <= 0 && isLive {
			exp = expires
		}
		if !isLive || exp != expires {
			if _, err := s.st.setParent.Exec(sql.Named("key", key), sql.Named("expires", exp)); err != nil {
				return err
			}
		}
		st := s.st.setAdd
		for _, m := range members {
			if _, err := st.Exec(sql.Named("key", key), sql.Named("member", m)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "sadd", err)
	}
	return nil
}

// SIsMember reports whether member is in the live set at key.
func (s *Store) SIsMember(ctx context.Context, key, member string) (bool, error) {
	var ok bool
	err := s.st.isMember.QueryRowContext(ctx, sql.Named("key", key), sql.Named("member", member),
		sql.Named("now", s.nowMS())).Scan(&ok)
	if err != nil {
		return false, fail(ctx, "sismember", err)
	}
	return ok, nil
}
