// Package store holds dovetail's shared state: counters with a TTL, sliding
// windows, sets, hashes of counters and plain values.
//
// The embedded default is SQLite (store/sqlite) in the data dir; several hosts share
// Redis (store/redis). Both pass one conformance suite (store/storetest). store/mem is
// an in-memory implementation for unit tests.
package store

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound is returned by Get for a missing or expired key.
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable wraps every backend failure (Redis down, disk error): callers turn
	// it into a temporary answer (DEFER_IF_PERMIT, 451, fail-open by config).
	ErrUnavailable = errors.New("store: backend unavailable")
)

// Store is the seam every stateful component uses. Keys are plain strings; callers
// namespace them ("grey:", "rate:", "bayes:", "vacation:"). A ttl of 0 means no expiry.
//
// A key holds one kind of data (value, counter, window, hash or set); using one key
// for two kinds is undefined (Redis answers WRONGTYPE, SQLite replaces the data).
// Every error other than ErrNotFound wraps ErrUnavailable and is temporary; when
// the caller's context is done the error also wraps ctx.Err(). Implementations are
// safe for concurrent use, and the conformance suite in store/storetest pins all of
// this down.
type Store interface {
	// Get returns the value of key or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value under key with ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only if key does not exist; it reports whether it stored.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Delete removes keys; missing keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Incr adds delta to the counter at key and returns the new value. The ttl is set
	// when the counter is created and left alone afterwards (a fixed window).
	Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error)
	// WindowAdd records n events at now in the sliding window at key and returns the
	// number of events in (now-window, now], including these. n=0 only reads.
	// Use one window length per key. Backends may coalesce events into buckets of
	// window/60, so an event may count up to window/60 longer than exact, never
	// shorter (limits err on the safe side) and a key stays small however busy.
	WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error)
	// HIncr adds deltas to the fields of the hash at key (Bayes token counts).
	HIncr(ctx context.Context, key string, deltas map[string]int64) error
	// HGet returns the values of fields in the hash at key; missing fields are absent.
	HGet(ctx context.Context, key string, fields []string) (map[string]int64, error)
	// SAdd adds members to the set at key; ttl refreshes the set's expiry when > 0.
	SAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error
	// SIsMember reports whether member is in the set at key.
	SIsMember(ctx context.Context, key, member string) (bool, error)
	// Close releases the backend; later calls fail with ErrUnavailable. Closing
	// twice is harmless.
	Close() error
}

// MultiGetter is implemented by stores that read several values in one round
// trip (Redis); GetMulti uses it. Callers may test for it to decide whether
// reading a key they may not need is worth it: on a local store it is not.
type MultiGetter interface {
	GetMulti(ctx context.Context, keys ...string) ([][]byte, error)
}

// GetMulti returns the values of keys in order, as Get would: a missing or
// expired key's value is nil, a present key's never is (an empty value is
// empty, not nil). A MultiGetter answers in one call; other stores get one Get
// per key, so a wrapper that overrides Get is still obeyed.
func GetMulti(ctx context.Context, s Store, keys ...string) ([][]byte, error) {
	if m, ok := s.(MultiGetter); ok {
		return m.GetMulti(ctx, keys...)
	}
	out := make([][]byte, len(keys))
	for i, k := range keys {
		v, err := s.Get(ctx, k)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		case v == nil: // present, empty
			out[i] = []byte{}
		default:
			out[i] = v
		}
	}
	return out, nil
}

// ReadAheader is implemented by stores where a WindowAdd can carry reads in its
// round trip (Redis: the window script and GETs in one pipeline). A caller that
// reads keys right after counting (policyd: rate limits, then greylisting)
// reads them ahead with WindowAddGetMulti. Like MultiGetter, callers test for
// it to decide whether a read they may not need is worth it.
type ReadAheader interface {
	MultiGetter
	WindowAddGetMulti(ctx context.Context, key string, now time.Time, window time.Duration, n int64, keys ...string) (int64, [][]byte, error)
}

// WindowAddGetMulti is WindowAdd(key, now, window, n) followed by GetMulti(keys),
// in one round trip on a ReadAheader. The total and the error are the
// WindowAdd's, exactly as WindowAdd answers them; when it fails, nothing is read.
// The reads are a look-ahead: their values are as GetMulti's, read after the add,
// or nil when the reads failed (the caller reads again and sees the error
// itself), so a failed read never hides a counted event.
func WindowAddGetMulti(ctx context.Context, s Store, key string, now time.Time, window time.Duration, n int64, keys ...string) (int64, [][]byte, error) {
	if r, ok := s.(ReadAheader); ok {
		return r.WindowAddGetMulti(ctx, key, now, window, n, keys...)
	}
	total, err := s.WindowAdd(ctx, key, now, window, n)
	if err != nil {
		return 0, nil, err
	}
	vals, err := GetMulti(ctx, s, keys...)
	if err != nil {
		vals = nil
	}
	return total, vals, nil
}
