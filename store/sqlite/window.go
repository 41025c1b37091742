package sqlite

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A sliding window is one row whose value is a list of buckets, each (latest event
// time in ms, event count). Events whose times fall in the same window/60-wide
// slot share a bucket stamped with the latest of them, so a window never holds more
// than ~61 buckets however busy the key is, one small row is read and written per
// call, and an event counts at most window/60 longer than exact (never shorter:
// rate limits err on the safe side). A bucket whose events all happened at one
// instant expires exactly.

type bucket struct{ at, n int64 }

const maxBuckets = 4096 // decode limit: a corrupt row must not allocate without bound

func decodeBuckets(b []byte) ([]bucket, error) {
	var out []bucket
	for len(b) > 0 {
		at, k := binary.Varint(b)
		if k <= 0 {
			return nil, errors.New("corrupt window row")
		}
		b = b[k:]
		n, k := binary.Varint(b)
		if k <= 0 {
			return nil, errors.New("corrupt window row")
		}
		b = b[k:]
		if len(out) == maxBuckets {
			return nil, errors.New("corrupt window row: too many buckets")
		}
		out = append(out, bucket{at, n})
	}
	return out, nil
}

func encodeBuckets(bs []bucket) []byte {
	out := make([]byte, 0, len(bs)*8)
	for _, b := range bs {
		out = binary.AppendVarint(out, b.at)
		out = binary.AppendVarint(out, b.n)
	}
	return out
}

// slot is the window/60-wide slot of t (floor division: times before 1970 too).
func slot(t, width int64) int64 {
	q := t / width
	if t%width < 0 {
		q--
	}
	return q
}

// addEvents drops buckets at or before cut, adds n events at now and returns the
// remaining buckets with their total.
func addEvents(bs []bucket, now, window, n int64) ([]bucket, int64) {
	width := max(window/60, 1)
	cut := now - window
	kept := bs[:0]
	var total int64
	merged := n == 0
	for _, b := range bs {
		if b.at <= cut {
			continue
		}
		if !merged && slot(b.at, width) == slot(now, width) {
			b.n += n
			b.at = max(b.at, now)
			merged = true
		}
		kept = append(kept, b)
		total += b.n
	}
	if !merged {
		kept = append(kept, bucket{now, n})
		total += n
	}
	return kept, total
}

// WindowAdd records n events at now in the sliding window at key and returns the
// events in (now-window, now] (see the bucket note above). n = 0 only reads.
func (s *Store) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	if window <= 0 {
		return 0, fmt.Errorf("sqlite windowadd: window %v must be positive", window)
	}
	nowMS, winMS := now.UnixMilli(), max(window.Milliseconds(), 1)
	if s.hot != nil {
		return s.hotWindowAdd(ctx, key, nowMS, winMS, n)
	}
	args := []any{sql.Named("key", key), sql.Named("now", s.nowMS())}
	if n == 0 {
		var raw []byte
		err := s.st.winPeek.QueryRowContext(ctx, args...).Scan(&raw)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, fail(ctx, "windowadd", err)
		}
		bs, err := decodeBuckets(raw)
		if err != nil {
			return 0, fail(ctx, "windowadd", err)
		}
		_, total := addEvents(bs, nowMS, winMS, 0)
		return total, nil
	}
	var total int64
	err := s.write(ctx, func() error {
		var raw []byte
		var expires int64
		err := s.st.winRead.QueryRow(args...).Scan(&raw, &expires)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		bs, err := decodeBuckets(raw)
		if err != nil {
			// A corrupt row is replaced rather than failing the key forever.
			s.log.Warn("sqlite store: replacing corrupt window", "key", key, "err", err)
			bs = nil
		}
		bs, total = addEvents(bs, nowMS, winMS, n)
		value := encodeBuckets(bs)
		// The row must outlive its newest event by a window (on the store
		// clock). Moving expires costs an index update, so it is pushed two
		// windows ahead only when less than one is left: most adds rewrite
		// just the value.
		if clock := s.nowMS(); expires >= clock+winMS {
			_, err = s.st.winUpdate.Exec(sql.Named("key", key), sql.Named("value", value))
		} else {
			_, err = s.st.winWrite.Exec(sql.Named("key", key),
				sql.Named("value", value), sql.Named("expires", clock+2*winMS))
		}
		return err
	})
	if err != nil {
		return 0, fail(ctx, "windowadd", err)
	}
	return total, nil
}
