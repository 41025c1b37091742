package milter

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	messages    *prometheus.CounterVec // by action
	scanSeconds prometheus.Histogram
	errors      *prometheus.CounterVec // by kind
	connections prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_milter_messages_total",
			Help: "Messages handled at end of message, by action taken (accept, add header, rewrite subject, greylist, reject, quarantine, skipped, oversize, error).",
		}, []string{"action"}),
		scanSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dovetail_milter_scan_seconds",
			Help:    "Time spent scoring one message.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_milter_errors_total",
			Help: "Scan failures, by kind (scan, timeout, builder, reply).",
		}, []string{"kind"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dovetail_milter_connections",
			Help: "Open MTA connections.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.messages, m.scanSeconds, m.errors, m.connections)
	}
	return m
}
