package lmtpd

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are lmtpd's Prometheus collectors.
type Metrics struct {
	Deliveries  *prometheus.CounterVec
	Latency     prometheus.Histogram
	Bytes       prometheus.Counter
	Quarantined prometheus.Counter
	SieveErrors prometheus.Counter
	Sessions    prometheus.Gauge
	Refused     prometheus.Counter
}

// NewMetrics creates the collectors and registers them on reg (nil = unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dovetail_lmtpd_deliveries_total",
			Help: "Recipient deliveries by result (delivered, quarantined, discarded, duplicate, redirected, rejected, tempfail).",
		}, []string{"result"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dovetail_lmtpd_delivery_seconds",
			Help:    "Time to deliver one recipient's copy (Sieve + Maildir write + fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_lmtpd_bytes_total", Help: "Message bytes delivered (per recipient copy).",
		}),
		Quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_lmtpd_quarantined_total", Help: "Messages put into the quarantine.",
		}),
		SieveErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_lmtpd_sieve_errors_total", Help: "Sieve compile or runtime errors (message kept in INBOX).",
		}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dovetail_lmtpd_sessions", Help: "Open LMTP sessions.",
		}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dovetail_lmtpd_connections_refused_total", Help: "Connections answered 421 because max_connections sessions were open.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Deliveries, m.Latency, m.Bytes, m.Quarantined, m.SieveErrors, m.Sessions, m.Refused)
	}
	return m
}

func (m *Metrics) observe(result string, d time.Duration, size int) {
	m.Deliveries.WithLabelValues(result).Inc()
	m.Latency.Observe(d.Seconds())
	if result == "delivered" || result == "quarantined" {
		m.Bytes.Add(float64(size))
	}
}
