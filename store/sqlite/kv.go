package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/dovetail-mail/dovetail/store"
)

// Get returns the value of key or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if s.hot != nil {
		return s.hotGet(ctx, key)
	}
	var v []byte
	err := s.st.get.QueryRowContext(ctx, sql.Named("key", key), sql.Named("now", s.nowMS())).Scan(&v)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, fail(ctx, "get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil // Scan into *[]byte copies
}

// Set stores value under key with ttl (0: no expiry).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if s.hot != nil {
		return s.hotSet(ctx, key, value, ttl)
	}
	if value == nil {
		value = []byte{}
	}
	err := s.write(ctx, func() error {
		_, err := s.st.set.Exec(sql.Named("key", key), sql.Named("value", value),
			sql.Named("expires", s.expiry(ttl)))
		return err
	})
	if err != nil {
		return fail(ctx, "set", err)
	}
	return nil
}

// SetNX stores value only when key is missing or expired.
func (s *Store) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if s.hot != nil {
		return s.hotSetNX(ctx, key, value, ttl)
	}
	if value == nil {
		value = []byte{}
	}
	var stored bool
	err := s.write(ctx, func() error {
		res, err := s.st.setNX.Exec(sql.Named("key", key), sql.Named("value", value),
			sql.Named("expires", s.expiry(ttl)), sql.Named("now", s.nowMS()))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		stored = n > 0
		return err
	})
	if err != nil {
		return false, fail(ctx, "setnx", err)
	}
	return stored, nil
}

// Delete removes keys of every kind; missing keys are not an error.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return s.alive(ctx, "delete")
	}
	if s.hot != nil {
		return s.hotDelete(ctx, keys)
	}
	return s.deleteRows(ctx, keys)
}

// deleteRows removes the rows of keys from every table in one transaction.
func (s *Store) deleteRows(ctx context.Context, keys []string) error {
	err := s.write(ctx, func() error {
		for _, k := range keys {
			for _, st := range []*sql.Stmt{s.st.delKV, s.st.delHash, s.st.delSet} {
				if _, err := st.Exec(sql.Named("key", k)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fail(ctx, "delete", err)
	}
	return nil
}

// Incr adds delta to the counter at key. The ttl applies when the counter is
// created (or restarted after expiring) and is left alone afterwards.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if s.hot != nil {
		return s.hotIncr(ctx, key, delta, ttl)
	}
	var n int64
	err := s.write(ctx, func() error {
		return s.st.incr.QueryRow(sql.Named("key", key), sql.Named("delta", delta),
			sql.Named("expires", s.expiry(ttl)), sql.Named("now", s.nowMS())).Scan(&n)
	})
	if err != nil {
		return 0, fail(ctx, "incr", err)
	}
	return n, nil
}

var errClosed = errors.New("store closed")

// alive reports a closed store or a dead context for calls that have nothing to do.
func (s *Store) alive(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, op, err)
	}
	if s.closed.Load() {
		return fail(ctx, op, errClosed)
	}
	return nil
}
