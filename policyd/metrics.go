package policyd

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered once per Server (not per reload) on the injected
// registerer. Label values come from closed sets: check names, action labels
// (verbs, "4xx", "5xx"), protocol error kinds.
type metrics struct {
	requests      *prometheus.CounterVec   // by deciding check and action
	checkResults  *prometheus.CounterVec   // by check and its own result
	latency       prometheus.Histogram     // request read complete -> reply written
	storeFailures *prometheus.CounterVec   // by check and fail mode
	protoErrors   *prometheus.CounterVec   // by kind
	panics        *prometheus.CounterVec   // by check
	connections   prometheus.Gauge         // open connections
	rejectedConns prometheus.Counter       // over max_connections
	reloads       *prometheus.CounterVec   // by result
	dnsFailures   *prometheus.CounterVec   // by check
	checkLatency  *prometheus.HistogramVec // by check
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_requests_total",
			Help: "Policy requests answered, by the check that decided (none = no check decided) and the action.",
		}, []string{"check", "action"}),
		checkResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_check_results_total",
			Help: "Results of each check: its action label, error, or fail_open.",
		}, []string{"check", "result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dovetail_policyd_request_duration_seconds",
			Help:    "Time from a complete request to its reply.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		storeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_store_failures_total",
			Help: "Checks that could not reach the store, by check and configured fail mode.",
		}, []string{"check", "mode"}),
		protoErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_protocol_errors_total",
			Help: "Malformed requests: answered (temporary action) or fatal (connection closed).",
		}, []string{"kind"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_check_panics_total",
			Help: "Panics recovered in checks.",
		}, []string{"check"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dovetail_policyd_connections",
			Help: "Open policy connections.",
		}),
		rejectedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_policyd_connections_refused_total",
			Help: "Connections closed at once because max_connections was reached.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_reloads_total",
			Help: "Configuration reloads by result.",
		}, []string{"result"}),
		dnsFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_policyd_dns_failures_total",
			Help: "DNS trouble: SPF evaluations that ended in temperror (check=spf), requests with a DNS list that did not answer and counted as not listing (check=dnsbl).",
		}, []string{"check"}),
		checkLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dovetail_policyd_check_duration_seconds",
			Help:    "Time spent in each check.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1, 5},
		}, []string{"check"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.checkResults, m.latency, m.storeFailures, m.protoErrors,
		m.panics, m.connections, m.rejectedConns, m.reloads, m.dnsFailures, m.checkLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
