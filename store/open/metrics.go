package storeopen

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dovetail-mail/dovetail/store"
)

// instrumented wraps a Store with per-operation latency and error metrics, the
// same for every backend, so dashboards do not care which one is configured.
type instrumented struct {
	store.Store
	seconds *prometheus.HistogramVec
	errors  *prometheus.CounterVec
}

func instrument(s store.Store, backend string, reg prometheus.Registerer) (store.Store, error) {
	m := &instrumented{
		Store: s,
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "dovetail_store_op_seconds",
			Help:        "Latency of state store operations.",
			ConstLabels: prometheus.Labels{"backend": backend},
			// The policy daemon's budget is ~1 ms per request: resolve below it.
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "dovetail_store_errors_total",
			Help:        "State store operations that failed (backend unavailable, timeouts, cancelled).",
			ConstLabels: prometheus.Labels{"backend": backend},
		}, []string{"op"}),
	}
	for _, c := range []prometheus.Collector{m.seconds, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if _, ok := s.(store.ReadAheader); ok {
		return &instrumentedAhead{instrumentedMulti{m}}, nil
	}
	if _, ok := s.(store.MultiGetter); ok {
		return &instrumentedMulti{m}, nil
	}
	return m, nil
}

// instrumentedMulti is instrumented for a store.MultiGetter, and
// instrumentedAhead for a store.ReadAheader: the wrapper keeps a capability
// when, and only when, the backend has it (callers ask for it to decide
// whether reading ahead saves a round trip).
type instrumentedMulti struct{ *instrumented }

type instrumentedAhead struct{ instrumentedMulti }

func (m *instrumented) done(op string, start time.Time, err error) {
	m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.errors.WithLabelValues(op).Inc()
	}
}

func (m *instrumented) Get(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := m.Store.Get(ctx, key)
	m.done("get", start, err)
	return v, err
}

func (m *instrumentedMulti) GetMulti(ctx context.Context, keys ...string) ([][]byte, error) {
	start := time.Now()
	v, err := m.Store.(store.MultiGetter).GetMulti(ctx, keys...)
	m.done("getmulti", start, err)
	return v, err
}

func (m *instrumented) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := m.Store.Set(ctx, key, value, ttl)
	m.done("set", start, err)
	return err
}

func (m *instrumented) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	start := time.Now()
	ok, err := m.Store.SetNX(ctx, key, value, ttl)
	m.done("setnx", start, err)
	return ok, err
}

func (m *instrumented) Delete(ctx context.Context, keys ...string) error {
	start := time.Now()
	err := m.Store.Delete(ctx, keys...)
	m.done("delete", start, err)
	return err
}

func (m *instrumented) Incr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	start := time.Now()
	n, err := m.Store.Incr(ctx, key, delta, ttl)
	m.done("incr", start, err)
	return n, err
}

func (m *instrumented) WindowAdd(ctx context.Context, key string, now time.Time, window time.Duration, n int64) (int64, error) {
	start := time.Now()
	total, err := m.Store.WindowAdd(ctx, key, now, window, n)
	m.done("windowadd", start, err)
	return total, err
}

// WindowAddGetMulti is measured as one operation, "windowadd_getmulti"; its
// error is the WindowAdd's (reads that failed are the caller's to redo).
func (m *instrumentedAhead) WindowAddGetMulti(ctx context.Context, key string, now time.Time, window time.Duration, n int64, keys ...string) (int64, [][]byte, error) {
	start := time.Now()
	total, vals, err := m.Store.(store.ReadAheader).WindowAddGetMulti(ctx, key, now, window, n, keys...)
	m.done("windowadd_getmulti", start, err)
	return total, vals, err
}

func (m *instrumented) HIncr(ctx context.Context, key string, deltas map[string]int64) error {
	start := time.Now()
	err := m.Store.HIncr(ctx, key, deltas)
	m.done("hincr", start, err)
	return err
}

func (m *instrumented) HGet(ctx context.Context, key string, fields []string) (map[string]int64, error) {
	start := time.Now()
	v, err := m.Store.HGet(ctx, key, fields)
	m.done("hget", start, err)
	return v, err
}

func (m *instrumented) SAdd(ctx context.Context, key string, ttl time.Duration, members ...string) error {
	start := time.Now()
	err := m.Store.SAdd(ctx, key, ttl, members...)
	m.done("sadd", start, err)
	return err
}

func (m *instrumented) SIsMember(ctx context.Context, key, member string) (bool, error) {
	start := time.Now()
	ok, err := m.Store.SIsMember(ctx, key, member)
	m.done("sismember", start, err)
	return ok, err
}
