// Package metrics is the agbot's Prometheus metrics: how many agreements hold, wait for or
// failed the latest version of their secrets, by org (by secret name only when the operator
// turns that on), and how long delivery takes. Labels carry org and secret names, never a
// value. Served unauthenticated on a listener of its own (README, Decisions). Imported by
// agbot (the wiring) only.
package metrics

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edge-secrets/anax-agent/agbot/engine"
)

// Source counts holdings by state (the engine).
type Source interface {
	RolloutStats(bySecret bool) (byOrg, perSecret map[string]engine.RolloutCounts)
}

// Metrics is the agbot's registry.
type Metrics struct {
	reg      *prometheus.Registry
	fanout   *prometheus.HistogramVec
	bySecret bool
	src      Source
	holds    *prometheus.Desc
	perSec   *prometheus.Desc
}

// New registers the metrics; with bySecret, counts per secret name too.
func New(bySecret bool) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), bySecret: bySecret,
		fanout: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "anax_agbot_secret_fanout_seconds",
			Help: "Time from a secret version queued for an agreement to the node acknowledging it.",
			// 10 ms .. ~12 h: an online node answers in milliseconds, an offline one when it is back.
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 13),
		}, []string{"org"}),
		holds: prometheus.NewDesc("anax_agbot_secret_updates",
			"Agreements by the state of the latest secret version sent to them: pending (node online, no answer yet), "+
				"offline (node not polling), acknowledged, failed (the node's answer; resent until applied).",
			[]string{"org", "state"}, nil),
		perSec: prometheus.NewDesc("anax_agbot_secret_updates_by_secret",
			"anax_agbot_secret_updates per secret manager name (only with --metrics-secret-names).",
			[]string{"org", "secret", "state"}, nil),
	}
	m.reg.MustRegister(m.fanout, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), m)
	return m
}

// CountParked exports n, how many node long-polls wait parked now (package park), as a
// gauge.
func (m *Metrics) CountParked(n func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "anax_agbot_long_polls_parked",
		Help: "Node long-polls waiting for a message, their connections parked (no goroutine)."},
		func() float64 { return float64(n()) }))
}

// CountInFlight exports the long-poll answers in flight (written, the node not back with
// its next request yet) and those waiting for a place (park.Lot.SetMaxInFlight), as gauges.
func (m *Metrics) CountInFlight(flying, waiting func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "anax_agbot_long_poll_answers_in_flight",
		Help: "Long-poll answers written whose node has not come back with its next request (bounded by --max-in-flight)."},
		func() float64 { return float64(flying()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "anax_agbot_long_poll_answers_waiting",
		Help: "Long-poll answers waiting for a place in flight (--max-in-flight)."},
		func() float64 { return float64(waiting()) }))
}

// SetSource sets what the state counts come from; call before serving.
func (m *Metrics) SetSource(s Source) { m.src = s }

// Observe records one acknowledged delivery (engine.Config.Observe).
func (m *Metrics) Observe(org string, d time.Duration) {
	m.fanout.WithLabelValues(org).Observe(d.Seconds())
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.holds
	if m.bySecret {
		ch <- m.perSec
	}
}

// Collect implements prometheus.Collector: counted at each scrape.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.src == nil {
		return
	}
	byOrg, perSecret := m.src.RolloutStats(m.bySecret)
	for org, c := range byOrg {
		for state, n := range states(c) {
			ch <- prometheus.MustNewConstMetric(m.holds, prometheus.GaugeValue, float64(n), org, state)
		}
	}
	for k, c := range perSecret {
		org, name, _ := strings.Cut(k, "\x00")
		for state, n := range states(c) {
			ch <- prometheus.MustNewConstMetric(m.perSec, prometheus.GaugeValue, float64(n), org, name, state)
		}
	}
}

func states(c engine.RolloutCounts) map[string]int {
	return map[string]int{"pending": c.Pending, "offline": c.Offline, "acknowledged": c.Acknowledged, "failed": c.Failed}
}
