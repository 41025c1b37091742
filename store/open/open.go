// Package storeopen builds the configured store backend. It is separate from
// package store because it imports the backends, which import store (the same
// split as directory/open).
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/store"
	"github.com/dovetail-mail/dovetail/store/mem"
	"github.com/dovetail-mail/dovetail/store/redis"
	"github.com/dovetail-mail/dovetail/store/sqlite"
)

// Option adjusts Open.
type Option func(*options)

type options struct {
	log *slog.Logger
	reg prometheus.Registerer
}

// WithLogger sets the logger for backend messages (SQLite sweeps, go-redis).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers dovetail_store_op_seconds{op} and
// dovetail_store_errors_total{op} (label backend) on reg and measures every call.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }

// Open returns the store cfg selects. SQLite lives at cfg.Path or
// <dataDir>/state.db; Redis is not contacted until the first call (a Redis that is
// down makes requests fail temporarily, not the daemon refuse to start), but a
// failed PING at startup is logged.
func Open(ctx context.Context, cfg store.Config, dataDir string, opts ...Option) (store.Store, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	s, err := open(ctx, cfg, dataDir, o)
	if err != nil || o.reg == nil {
		return s, err
	}
	backend := cfg.Backend
	if backend == "" {
		backend = store.BackendSQLite
	}
	m, err := instrument(s, backend, o.reg)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: metrics: %w", err)
	}
	return m, nil
}

func open(ctx context.Context, cfg store.Config, dataDir string, o options) (store.Store, error) {
	switch cfg.Backend {
	case store.BackendSQLite, "":
		path := cfg.Path
		if path == "" {
			if dataDir == "" {
				return nil, errors.New("store: sqlite needs store.path or a data_dir")
			}
			path = filepath.Join(dataDir, "state.db")
		}
		s, err := sqlite.Open(ctx, sqlite.Options{
			Path:          path,
			SweepInterval: cfg.SweepInterval.D(),
			WriteBehind:   cfg.WriteBehind.D(),
			HotKeys:       cfg.HotKeys,
			Logger:        o.log.With("component", "store/sqlite"),
		})
		if err != nil {
			return nil, err
		}
		return s, nil
	case store.BackendRedis:
		redis.SetLogger(o.log)
		r := cfg.Redis
		s, err := redis.New(redis.Options{
			Addrs:        r.AddrList(),
			Cluster:      len(r.Addrs) > 0, // addrs: cluster seeds, also a single one
			Username:     r.Username,
			Password:     r.Password.Reveal(),
			DB:           r.DB,
			Prefix:       r.Prefix,
			DialTimeout:  r.DialTimeout.D(),
			ReadTimeout:  r.ReadTimeout.D(),
			WriteTimeout: r.WriteTimeout.D(),
			PoolSize:     r.PoolSize,
		})
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if err := s.Ping(ctx); err != nil {
			o.log.Warn("store: redis does not answer yet; requests needing it fail temporarily until it does",
				"addrs", r.AddrList(), "err", err)
		}
		return s, nil
	case store.BackendMemory:
		o.log.Warn("store: memory backend: greylisting, rate limits and Bayes data are lost on restart")
		return mem.New(), nil
	}
	return nil, fmt.Errorf("store: unknown backend %q", cfg.Backend)
}
