package policyd

import (
	"sync/atomic"

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

// resultLabels are the label values Action.Label returns plus the checks' own
// "error" and "fail_open" results, in the order that indexes the metric caches.
var resultLabels = [...]string{VerbDunno, VerbOK, VerbReject, VerbDefer, VerbDeferIfPermit, VerbDeferIfReject, VerbHold,
	VerbDiscard, VerbPrepend, VerbWarn, VerbInfo, VerbFilter, VerbRedirect, VerbBCC, "4xx", "5xx", "error", "fail_open"}

// resultIndex is label's index in resultLabels, -1 when it is not one.
func resultIndex(label string) int {
	switch label {
	case VerbDunno:
		return 0
	case VerbOK:
		return 1
	case VerbReject:
		return 2
	case VerbDefer:
		return 3
	case VerbDeferIfPermit:
		return 4
	case VerbDeferIfReject:
		return 5
	case VerbHold:
		return 6
	case VerbDiscard:
		return 7
	case VerbPrepend:
		return 8
	case VerbWarn:
		return 9
	case VerbInfo:
		return 10
	case VerbFilter:
		return 11
	case VerbRedirect:
		return 12
	case VerbBCC:
		return 13
	case "4xx":
		return 14
	case "5xx":
		return 15
	case "error":
		return 16
	case "fail_open":
		return 17
	}
	return -1
}

// checkMetrics are one engine's metric children, looked up once instead of by
// label values on every request (hashing the labels and a map lookup under a
// lock for each of several metrics was ~4 % of the daemon's CPU). Children are
// created on first use, as WithLabelValues does, so /metrics shows the same
// series as before.
type checkMetrics struct {
	m        *metrics
	names    []string              // check names by index
	latency  []prometheus.Observer // by check
	results  [][len(resultLabels)]lazyCounter
	requests [][len(resultLabels)]lazyCounter // by deciding check, the last row for none
}

func newCheckMetrics(m *metrics, checks []check) *checkMetrics {
	cm := &checkMetrics{m: m, names: make([]string, len(checks)), latency: make([]prometheus.Observer, len(checks)),
		results: make([][len(resultLabels)]lazyCounter, len(checks)), requests: make([][len(resultLabels)]lazyCounter, len(checks)+1)}
	for i, c := range checks {
		cm.names[i] = c.name()
		cm.latency[i] = m.checkLatency.WithLabelValues(c.name())
	}
	return cm
}

// result counts one result of check i.
func (cm *checkMetrics) result(i int, label string) {
	if j := resultIndex(label); j >= 0 {
		cm.results[i][j].get(cm.m.checkResults, cm.names[i], label).Inc()
		return
	}
	cm.m.checkResults.WithLabelValues(cm.names[i], label).Inc()
}

// request counts one answered request decided by check i (-1: none did).
func (cm *checkMetrics) request(i int, label string) {
	name, row := "none", len(cm.names)
	if i >= 0 {
		name, row = cm.names[i], i
	}
	if j := resultIndex(label); j >= 0 {
		cm.requests[row][j].get(cm.m.requests, name, label).Inc()
		return
	}
	cm.m.requests.WithLabelValues(name, label).Inc()
}

// lazyCounter is a CounterVec child fetched on first use.
type lazyCounter struct {
	c atomic.Pointer[prometheus.Counter]
}

func (l *lazyCounter) get(vec *prometheus.CounterVec, a, b string) prometheus.Counter {
	if c := l.c.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(a, b) // the same child for concurrent callers
	l.c.Store(&c)
	return c
}
