package authd

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	attempts    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	cacheHits   prometheus.Counter
	cacheMisses prometheus.Counter
	penalties   prometheus.Counter
	conns       prometheus.Gauge
	rejected    prometheus.Counter
	protoErrors prometheus.Counter
}

// register registers c, or returns the collector already registered under the
// same name (a server rebuilt on reload keeps counting in the same series).
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(T); ok {
				return ex
			}
		}
	}
	return c
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
	}
	return &metrics{
		attempts: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_authd_attempts_total",
			Help: "Authentication attempts by mechanism and result (ok, fail, tempfail).",
		}, []string{"mechanism", "result"})),
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dovetail_authd_attempt_duration_seconds",
			Help:    "Time from AUTH to the final reply, penalty delay included.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"mechanism"})),
		cacheHits:   counter("dovetail_authd_cache_hits_total", "PLAIN/LOGIN verdicts answered from the cache."),
		cacheMisses: counter("dovetail_authd_cache_misses_total", "PLAIN/LOGIN verdicts asked from the directory."),
		penalties:   counter("dovetail_authd_penalties_total", "Failure replies delayed by the per IP+login penalty."),
		conns: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dovetail_authd_connections", Help: "Open client connections."})),
		rejected:    counter("dovetail_authd_connections_rejected_total", "Connections closed at once because max_connections was reached."),
		protoErrors: counter("dovetail_authd_protocol_errors_total", "Connections closed because the client broke the protocol."),
	}
}
