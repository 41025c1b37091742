// Package redis is the store.Store for several hosts sharing state: Redis (or a
// Redis Cluster) through github.com/redis/go-redis/v9.
//
// Every operation is one round trip: Incr and WindowAdd are Lua scripts (atomic,
// EVALSHA with an EVAL fallback), HIncr and SAdd are MULTI/EXEC,
// HGet/Delete/GetMulti are pipelines, and
// WindowAddGetMulti pipelines the window script with GETs. Timeouts are
// short and nothing is retried, so a dead or frozen Redis fails a call within
// about one read timeout with store.ErrUnavailable and callers answer "try later"
// (or fail open) instead of piling up; the client reconnects on its own once Redis
// is back.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/dovetail-mail/dovetail/store"
)

// Options configure New. Zero fields take the defaults noted.
type Options struct {
	// Addrs are host:port seeds: one address is a single server, several a
	// Redis Cluster.
	Addrs []string
	// Cluster: Addrs are Redis Cluster seeds even when there is one (a
	// cluster's configuration endpoint); a plain client would get MOVED for
	// most keys.
	Cluster  bool
	Username string
	Password string
	DB       int
	// Prefix is prepended to every key (namespaces several installations in one
	// Redis, and tests in one server).
	Prefix string
	// DialTimeout (default 300 ms), ReadTimeout and WriteTimeout (default 200 ms)
	// bound each attempt: a frozen Redis costs a caller at most this long.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the connection pool size (default 10 per CPU).
	PoolSize int
}

// Defaults applied by New.
const (
	DefaultDialTimeout  = 300 * time.Millisecond
	DefaultReadTimeout  = 200 * time.Millisecond
	DefaultWriteTimeout = 200 * time.Millisecond
)

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	c      goredis.UniversalClient
	prefix string
	closer sync.Once
	cerr   error
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
	_ store.ReadAheader = (*Store)(nil)
)

// New returns a Store; it does not connect (the first call does), so a Redis that
// is down at startup makes calls fail, not the daemon. Use Ping to check.
func New(opts Options) (*Store, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redis: no address")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	c := goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:         opts.Addrs,
		IsClusterMode: opts.Cluster,
		Username:      opts.Username,
		Password:      opts.Password,
		DB:            opts.DB,
		DialTimeout:   opts.DialTimeout,
		ReadTimeout:   opts.ReadTimeout,
		WriteTimeout:  opts.WriteTimeout,
		PoolSize:      opts.PoolSize,
		PoolTimeout:   opts.DialTimeout + opts.ReadTimeout,
		// No retries: a command that timed out may have run (Incr twice), and a
		// caller waiting for retries is a caller not answering Postfix.
		MaxRetries:    -1,
		DialerRetries: 1,
		// Deadlines of the caller's context apply too (policyd's per-request budget).
		ContextTimeoutEnabled: true,
		DisableIdentity:       true,
	})
	return &Store{c: c, prefix: opts.Prefix}, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close closes the connection pool; later calls fail with store.ErrUnavailable.
func (s *Store) Close() error {
	s.closer.Do(func() { s.cerr = s.c.Close() })
	return s.cerr
}

func (s *Store) key(k string) string { return s.prefix + k }

// fail wraps every error as store.ErrUnavailable, and the caller's context error
// when it is done (go-redis reports a timed-out call as a socket timeout).
func (s *Store) fail(ctx context.Context, op string, err error) error {
	cerr := ctx.Err()
	if d, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(d) {
		// The socket deadline (set from the context's) can fire a hair before
		// the context's own timer: it is still the caller's deadline.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redis %s: %w: %w (%w)", op, store.ErrUnavailable, cerr, err)
	}
	return fmt.Errorf("redis %s: %w: %w", op, store.ErrUnavailable, err)
}

// start fails at once with a context that is already done: go-redis would
// otherwise still take a connection and write the command.
func (s *Store) start(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// ms is a ttl in milliseconds for PX/PEXPIRE, at least 1 for a positive ttl.
func ms(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return max(d.Milliseconds(), 1)
}

// Get returns the value of key or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := s.start(ctx, "get"); err != nil {
		return nil, err
	}
	v, err := s.c.Get(ctx, s.key(key)).Bytes()
	switch {
	case errors.Is(err, goredis.Nil):
		return nil, store.ErrNotFound
	case err != nil:
		return nil, s.fail(ctx, "get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// GetMulti reads keys in one round trip (a pipeline of GETs rather than MGET,
// whose keys would all have to hash to one slot of a Redis Cluster); see
// store.GetMulti.
func (s *Store) GetMulti(ctx context.Context, keys ...string) ([][]byte, error) {
	if err := s.start(ctx, "getmulti"); err != nil {
		return nil, err
	}
	cmds := make([]*goredis.StringCmd, len(keys))
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, s.key(k))
		}
		return nil
	})
	if err != nil && !errors.Is(err, goredis.Nil) {
		return nil, s.fail(ctx, "getmulti", err)
	}
	out, err := values(cmds)
	if err != nil {
		return nil, s.fail(ctx, "getmulti", err)
	}
	return out, nil
}

// values are the replies of pipelined GETs as store.GetMulti answers them.
func values(cmds []*goredis.StringCmd) ([][]byte, error) {
	out := make([][]byte, len(cmds))
	for i, c := range cmds {
		v, err := c.Bytes()
		switch {
		case errors.Is(err, goredis.Nil):
		case err != nil:
			return nil, err
		default:
			if v == nil {
				v = []byte{}
			}
			out[i] = v
		}
	}
	return out, nil
}

// Set stores value under key; ttl 0 stores it without expiry (clearing any).
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := s.start(ctx, "set"); err != nil {
		return err
	}
	args := []any{"SET", s.key(key), value}
	if ttl > 0 {
		args = append(args, "PX", ms(ttl))
	}
	if err := s.c.Do(ctx, args...).Err(); err != nil {
		return s.fail(ctx, "set", err)
	}
	return nil
}

// SetNX stores value only if key does not exist (SET NX).
func (s *Store) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if err := s.start(ctx, "setnx"); err != nil {
		return false, err
	}
	args := []any{"SET", s.key(key), value, "NX"}
	if ttl > 0 {
		args = append(args, "PX", ms(ttl))
	}
	err := s.c.Do(ctx, args...).Err()
	switch {
	case errors.Is(err, goredis.Nil):
		return false, nil
	case err != nil:
		return false, s.fail(ctx, "setnx", err)
	}
	return true, nil
}

// Delete removes keys: one DEL per key in one pipeline, so that keys in different
// cluster slots are fine.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := s.start(ctx, "delete"); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, s.key(k))
		}
		return nil
	})
	if err != nil {
		return s.fail(ctx, "delete", err)
	}
	return nil
}

// incrScript adds to a counter and sets its expiry only when it creates it: the
// fixed-window contract. KEYS[1] counter; ARGV[1] delta, ARGV[2] ttl ms (0: none).
var incrScript = goredis.NewScript(`
local created = redis.call('EXISTS', KEYS[1]) == 0
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v`)

// Incr adds delta to the counter at key; ttl applies only when it is created.
func (s *Store) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := s.start(ctx, "incr"); err != nil {
		return 0, err
	}
	n, err := incrScript.Run(ctx, s.c, []string{s.key(key)}, delta, ms(ttl)).Int64()
	if err != nil {
		return 0, s.fail(ctx, "incr", err)
	}
	return n, nil
}

// HIncr adds deltas to the fields of the hash at key: HINCRBYs in one
// MULTI/EXEC, all or nothing. A plain pipeline cut off half-way (a write
// timeout, a dropped link) left the fields Redis had read counted and the call
// failed: Bayes then gave its claim back and a retry counted them twice, with
// no record to forget them by.
func (s *Store) HIncr(ctx context.Context, key string, deltas map[string]int64) error {
	if err := s.start(ctx, "hincr"); err != nil {
		return err
	}
	if len(deltas) == 0 {
		return nil
	}
	k := s.key(key)
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		for f, d := range deltas {
			p.HIncrBy(ctx, k, f, d)
		}
		return nil
	})
	if err != nil {
		return s.fail(ctx, "hincr", err)
	}
	return nil
}

// hgetBatch bounds one HMGET, so a huge request does not make one huge reply.
const hgetBatch = 1000

// HGet returns the fields present in the hash at key (HMGET, pipelined per 1,000).
func (s *Store) HGet(ctx context.Context, key string, fields []string) (map[string]int64, error) {
	if err := s.start(ctx, "hget"); err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(fields))
	if len(fields) == 0 {
		return out, nil
	}
	k := s.key(key)
	var cmds []*goredis.SliceCmd
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := 0; i < len(fields); i += hgetBatch {
			cmds = append(cmds, p.HMGet(ctx, k, fields[i:min(i+hgetBatch, len(fields))]...))
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, "hget", err)
	}
	for i, c := range cmds {
		for j, v := range c.Val() {
			str, ok := v.(string)
			if !ok {
				continue // nil: missing field
			}
			n, err := strconv.ParseInt(str, 10, 64)
			if err != nil {
				return nil, s.fail(ctx, "hget", fmt.Errorf("field %q: %w", fields[i*hgetBatch+j], err))
			}
			out[fields[i*hgetBatch+j]] = n
		}
	}
	return out, nil
}

// SAdd adds members to the set at key and, when ttl > 0, sets its expiry, in one
// MULTI/EXEC.
func (s *Store) SAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	if err := s.start(ctx, "sadd"); err != nil {
		return err
	}
	if len(members) == 0 && ttl <= 0 {
		return nil
	}
	k := s.key(key)
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		if len(members) > 0 {
			ms := make([]any, len(members))
			for i, m := range members {
				ms[i] = m
			}
			p.SAdd(ctx, k, ms...)
		}
		if ttl > 0 {
			p.PExpire(ctx, k, time.Duration(ms(ttl))*time.Millisecond)
		}
		return nil
	})
	if err != nil {
		return s.fail(ctx, "sadd", err)
	}
	return nil
}

// SIsMember reports whether member is in the set at key.
func (s *Store) SIsMember(ctx context.Context, key, member string) (bool, error) {
	if err := s.start(ctx, "sismember"); err != nil {
		return false, err
	}
	ok, err := s.c.SIsMember(ctx, s.key(key), member).Result()
	if err != nil {
		return false, s.fail(ctx, "sismember", err)
	}
	return ok, nil
}
