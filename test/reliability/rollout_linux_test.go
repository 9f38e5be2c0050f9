package reliability

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/browsertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
)

var rolloutShot = flag.String("rollout-screenshot", "", "where TestRolloutStatusAgents saves the page's PNG (default: a temp dir)")

// TestRolloutStatusAgents: the secret db bound on three real agents; one is stopped and db
// changes. The agbot's JSON status, its metrics and its page (headless chromium) say
// "2 of 3 nodes acknowledged, 1 offline since T"; once the agent runs again, "3 of 3".
func TestRolloutStatusAgents(t *testing.T) {
	s := newScenarioT(t, "rollout", 10*time.Minute)
	metricsAddr, err := e2e.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.Agbot.ServeArgs = []string{"--offline-after", "3s", "--metrics-listen", metricsAddr, "--metrics-secret-names"}
	if err := s.Agbot.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Agbot.Start(s.Ctx); err != nil {
		t.Fatal(err)
	}
	agents := s.rolloutFleet(t, 3)

	const done = `^version (\d+): 3 of 3 nodes acknowledged$`
	s.waitRollout(t, done)
	if err := agents[2].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.put("db", "dbkey", "rollout-v2"); err != nil {
		t.Fatal(err)
	}
	ro := s.waitRollout(t, `^version (\d+): 2 of 3 nodes acknowledged, 1 offline since (\S+)$`)
	var since string
	for _, n := range ro.Nodes {
		if n.Node == "node3" && n.State == engine.RolloutOffline && n.LastPoll != nil {
			since = n.LastPoll.UTC().Format(time.RFC3339)
		}
	}
	if !strings.HasSuffix(ro.Summary, "offline since "+since) || since == "" {
		t.Fatalf("summary %q, node3's last poll %q", ro.Summary, since)
	}
	s.wantMetrics(t, metricsAddr, `secret="db",state="acknowledged"} 2`, `secret="db",state="offline"} 1`)
	s.wantStatusCLI(t, ro.Summary, "node3", "offline")

	b := browsertest.Start(t, filepath.Join(s.Agbot.Dir, "tls", "cert.pem"), Org+"/admin", strings.TrimPrefix(s.Admin, "admin:"))
	b.Open(s.Agbot.URL + "/ui/org/" + Org + "/rollouts/db")
	b.WaitText("summary", ro.Summary, time.Minute)
	shot := *rolloutShot
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "rollout.png")
	}
	b.Screenshot(shot)

	if err := agents[2].Start(s.Ctx); err != nil {
		t.Fatal(err)
	}
	ro = s.waitRollout(t, done)
	s.wantMetrics(t, metricsAddr, `secret="db",state="acknowledged"} 3`, `secret="db",state="offline"} 0`)
	s.wantStatusCLI(t, ro.Summary, "node3", "acknowledged")
	b.WaitText("summary", ro.Summary, time.Minute)
}

// rolloutFleet runs n agents (node1..nodeN) with the reader bound to the org secrets db and
// token, and waits for each one's agreement.
func (s *Scenario) rolloutFleet(t *testing.T, n int) []*e2e.Agent {
	t.Helper()
	steps := []func() error{
		func() error { return s.PutSecret("db", "dbkey", "rollout-v1", "") },
		func() error { return s.PutSecret("token", "tokkey", "rollout-token", "") },
		func() error {
			return s.PublishService("reader", map[string]string{"db_password": "", "api_token": protocol.FormatValueOnly})
		},
		func() error {
			return s.AddPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, false)
		},
	}
	for _, f := range steps {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	var out []*e2e.Agent
	for i := 1; i <= n; i++ {
		node, tok := fmt.Sprintf("node%d", i), fmt.Sprintf("tok%d", i)
		if err := s.CreateNode(node, tok); err != nil {
			t.Fatal(err)
		}
		a, err := s.Agent(node, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Register(a, node, tok); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	for _, a := range out {
		if _, err := a.ActiveAgreement(s.Ctx, "reader", 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// waitRollout waits until db's rollout summary matches the pattern.
func (s *Scenario) waitRollout(t *testing.T, pattern string) engine.Rollout {
	t.Helper()
	re := regexp.MustCompile(pattern)
	var ro engine.Rollout
	err := e2e.Eventually(s.Ctx, 2*time.Minute, 100*time.Millisecond, func() error {
		ro = engine.Rollout{}
		code, err := s.Agbot.Do(Org+"/"+s.Admin, "GET", "/org/"+Org+"/rollouts/db", nil, &ro)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET rollout: %d", code)
		}
		if err == nil && !re.MatchString(ro.Summary) {
			err = fmt.Errorf("summary %q", ro.Summary)
		}
		return err
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", pattern, err)
	}
	return ro
}

// wantMetrics checks lines of the agbot's per-secret rollout metrics.
func (s *Scenario) wantMetrics(t *testing.T, addr string, want ...string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if !strings.Contains(string(raw), `anax_agbot_secret_updates_by_secret{org="`+Org+`",`+w+"\n") {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// wantStatusCLI checks hzn sm secret status db prints summary, and with -n node the node's line
// holds state.
func (s *Scenario) wantStatusCLI(t *testing.T, summary, node, state string) {
	t.Helper()
	out, err := s.Hzn("sm", "secret", "status", "db")
	if err != nil || !strings.Contains(out, summary) {
		t.Fatalf("hzn sm secret status db = %q, %v; want %q", out, err, summary)
	}
	out, err = s.Hzn("sm", "secret", "status", "-n", node, "db")
	if err != nil || !strings.Contains(out, node+" agreement ") || !strings.Contains(out, ": "+state+", version") {
		t.Fatalf("hzn sm secret status -n %s db = %q, %v; want its agreement %s", node, out, err, state)
	}
	out, err = s.Hzn("sm", "secret", "status", "--output", "json", "db")
	if err != nil || !strings.Contains(out, `"summary"`) {
		t.Fatalf("hzn sm secret status --output json db = %q, %v", out, err)
	}
}
