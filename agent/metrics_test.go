package agent

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetricsExposition(t *testing.T) {
	m := NewMetrics()
	m.SetMode("mount-swap")
	m.SetMode("mount-stack") // only the last mode stays at 1
	m.UpdateLatency.Observe(0.0001)
	m.StoreSwap.Observe(0.0001)
	m.Swaps.Add(3)
	m.Failures.WithLabelValues("update").Inc()
	m.Agreements.Set(2)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	text := string(body)
	for _, want := range []string{
		`anax_agent_secretfs_mode{mode="mount-stack"} 1`,
		"anax_agent_secret_swaps_total 3",
		`anax_agent_failures_total{op="update"} 1`,
		"anax_agent_agreements 2",
		"anax_agent_update_apply_seconds_count 1",
		"anax_agent_store_swap_seconds_count 1",
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, `mode="mount-swap"`) {
		t.Errorf("old mode still exported after SetMode changed it")
	}
}
