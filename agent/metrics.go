package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics, on a registry of their own so several agents in
// one test process do not collide. Labels carry names and modes, never a value.
type Metrics struct {
	reg           *prometheus.Registry
	UpdateLatency prometheus.Histogram
	StoreSwap     prometheus.Histogram
	Swaps         prometheus.Counter
	Failures      *prometheus.CounterVec
	Agreements    prometheus.Gauge
	Mode          *prometheus.GaugeVec
	MountDepth    prometheus.Gauge
	Messages      *prometheus.CounterVec
	ESSCalls      *prometheus.CounterVec
}

// NewMetrics registers the agent's metrics and the Go runtime and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		UpdateLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "anax_agent_update_apply_seconds",
			Help: "Time to apply one agreement update on the node: stage, swap, onUpdate, persist.",
			// 50 µs .. ~3 s: a swap is ~70 µs, an update with a restart seconds.
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 13),
		}),
		StoreSwap: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "anax_agent_store_swap_seconds",
			Help: "Time secretfs took to swap one store's changed secrets (write the version, swap the publish points and the view).",
			// 10 µs .. ~1.5 s.
			Buckets: prometheus.ExponentialBuckets(0.00001, 2.5, 14),
		}),
		Swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "anax_agent_secret_swaps_total", Help: "Secret files swapped into running containers.",
		}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anax_agent_failures_total", Help: "Failures by operation (proposal, update, cancel, poll, reply, repair).",
		}, []string{"op"}),
		Agreements: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anax_agent_agreements", Help: "Agreements the agent holds.",
		}),
		Mode: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "anax_agent_secretfs_mode", Help: "1 for the secretfs mode in use (mount-swap, mount-stack, restart).",
		}, []string{"mode"}),
		MountDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anax_agent_mount_depth_max", Help: "Deepest mount stack at any publish point.",
		}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anax_agent_messages_total", Help: "Protocol messages received, by type and result.",
		}, []string{"type", "result"}),
		ESSCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anax_agent_ess_api_calls_total", Help: "Calls of the ESS secrets API by services, by operation (list, get, ack) and HTTP status; never by secret name.",
		}, []string{"op", "code"}),
	}
	m.reg.MustRegister(m.UpdateLatency, m.StoreSwap, m.Swaps, m.Failures, m.Agreements, m.Mode, m.MountDepth, m.Messages, m.ESSCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetMode marks mode as the one in use.
func (m *Metrics) SetMode(mode string) {
	m.Mode.Reset()
	m.Mode.WithLabelValues(mode).Set(1)
}

// watchScans exports secretfs's count of incomplete scans: each kept every replaced version of
// a store whose containers could not be read, and was retried (a warning names the store).
func (m *Metrics) watchScans(count func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "anax_agent_secretfs_scans_incomplete_total",
		Help: "Scans of a store's containers that could not read their mounts; the store kept its replaced versions and the scan was retried.",
	}, func() float64 { return float64(count()) }))
}

// essCall counts one call of the ESS secrets API.
func (m *Metrics) essCall(op, code string) { m.ESSCalls.WithLabelValues(op, code).Inc() }
