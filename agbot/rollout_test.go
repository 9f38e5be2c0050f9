package agbot_test

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

// rolloutFleet is a harness with three nodes (owned by bob) agreed on the service, whose
// db_password comes from the org secret db (version 1 acknowledged everywhere). Every node
// not polling right now counts as offline (OfflineAfter 1ns), so "offline" is decided by
// the test, not by a clock.
func rolloutFleet(t *testing.T) (*harness, []*simNode) {
	h := newHarness(t, nil)
	h.offlineAfter, h.metricsNames = time.Nanosecond, true
	h.restart()
	h.people()
	for _, id := range []string{"node2", "node3"} {
		h.mustDo(bob, "PUT", "/org/myorg/nodes/"+id, map[string]any{"token": id + "tok"}, 201, nil)
	}
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	putSecret(h, admin, "db", "canary-rollout-v1")
	putSecret(h, admin, "api_token", "canary-tok-v1")
	var nodes []*simNode
	for _, id := range []string{"node1", "node2", "node3"} {
		n := h.node(id, id+"tok")
		n.register("amd64", map[string]any{"purpose": "edge"}, "")
		n.ack(n.next())
		nodes = append(nodes, n)
	}
	return h, nodes
}

func (h *harness) rollout(name, query string) engine.Rollout {
	h.t.Helper()
	code, raw := h.do(admin, "GET", "/org/myorg/rollouts/"+name+query, nil)
	if code != 200 {
		h.t.Fatalf("rollout %s = %d %s", name, code, raw)
	}
	if strings.Contains(string(raw), "canary") {
		h.t.Fatalf("rollout status holds a secret value: %s", raw)
	}
	var ro engine.Rollout
	mustJSON(h.t, raw, &ro)
	return ro
}

func nodeState(ro engine.Rollout, node string) engine.RolloutNode {
	for _, n := range ro.Nodes {
		if n.Node == node {
			return n
		}
	}
	return engine.RolloutNode{}
}

// failUpdate answers an update as a node that could not apply it.
func (n *simNode) failUpdate(m protocol.Message, reason string) {
	n.h.t.Helper()
	h := m.Head()
	reply := &protocol.UpdateReply{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeUpdateReply,
		Agreement: h.Agreement, From: n.ep.ID, To: n.h.agbotID, Seq: h.Seq, Time: time.Now()},
		Status: protocol.StatusFailed, Reason: reason}
	env, err := n.ep.Wrap(reply)
	if err != nil {
		n.h.t.Fatal(err)
	}
	n.h.mustDo(n.auth, "POST", "/org/myorg/nodes/"+n.id+"/msgs", env, 204, nil)
}

// TestRolloutStatus: one node stopped, the secret changes twice, one node fails to apply
// it: the status says who holds what and why; once the nodes answer, "3 of 3", also after
// a restart.
func TestRolloutStatus(t *testing.T) {
	h, nodes := rolloutFleet(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	if ro := h.rollout("db", ""); ro.Summary != "version 1: 3 of 3 nodes acknowledged" {
		t.Fatalf("after the proposals: %q", ro.Summary)
	}

	// node3 stops. Version 2: nodes 1 and 2 acknowledge.
	putSecret(h, admin, "db", "canary-rollout-v2")
	n1.ack(n1.next())
	n2.ack(n2.next())
	ro := h.rollout("db", "")
	s3 := nodeState(ro, "node3")
	if s3.State != engine.RolloutOffline || s3.LastPoll == nil || s3.Acked != 1 || s3.Version != 2 {
		t.Fatalf("node3 = %+v, want offline holding 1, sent 2, with its last poll", s3)
	}
	want := "version 2: 2 of 3 nodes acknowledged, 1 offline since " + s3.LastPoll.UTC().Format(time.RFC3339)
	if ro.Summary != want {
		t.Fatalf("summary %q, want %q", ro.Summary, want)
	}
	// db: 2 acknowledged, 1 offline; api_token: 3 acknowledged.
	h.wantMetrics(`anax_agbot_secret_updates{org="myorg",state="acknowledged"} 5`,
		`anax_agbot_secret_updates{org="myorg",state="offline"} 1`,
		`anax_agbot_secret_updates_by_secret{org="myorg",secret="db",state="acknowledged"} 2`,
		`anax_agbot_secret_updates_by_secret{org="myorg",secret="db",state="offline"} 1`)
	page := h.page("/ui/org/myorg/rollouts/db")
	for _, want := range []string{html.EscapeString(want), "<td>node3</td><td class=\"offline\">offline</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("rollout page lacks %q:\n%s", want, page)
		}
	}
	if nodes := h.page("/ui/org/myorg/nodes"); !strings.Contains(nodes, `href="/ui/org/myorg/rollouts/db"`) {
		t.Errorf("nodes page lacks the link to db's rollout:\n%s", nodes)
	}

	// Version 3: node1 applies it, node2 fails, node3 is still away (2 superseded).
	putSecret(h, admin, "db", "canary-rollout-v3")
	n1.ack(n1.next())
	n2.failUpdate(n2.next(), "disk full\non /var")
	ro = h.rollout("db", "")
	want = "version 3: 1 of 3 nodes acknowledged, 1 offline since " + s3.LastPoll.UTC().Format(time.RFC3339) +
		", 1 failed: disk full on /var (1)"
	if ro.Summary != want {
		t.Fatalf("summary %q, want %q", ro.Summary, want)
	}
	if s := nodeState(ro, "node3"); s.Superseded != 2 {
		t.Fatalf("node3 = %+v, want version 2 superseded", s)
	}
	if one := h.rollout("db", "?node=node2"); len(one.Nodes) != 1 || one.Nodes[0].State != engine.RolloutFailed || one.Total != 3 {
		t.Fatalf("node filter: %+v", one)
	}

	// node2 gets the update again and applies it; node3 comes back and applies both.
	n2.ack(n2.next())
	msgs := n3.poll(5)
	if len(msgs) != 2 {
		t.Fatalf("node3 got %v, want the two updates", types(msgs))
	}
	for _, m := range msgs {
		n3.ack(m)
	}
	if ro := h.rollout("db", ""); ro.Summary != "version 3: 3 of 3 nodes acknowledged" {
		t.Fatalf("after node3 is back: %q", ro.Summary)
	}
	// 6 acknowledged with the proposals, 2 of version 2, 3 of version 3.
	h.wantMetrics(`anax_agbot_secret_updates_by_secret{org="myorg",secret="db",state="acknowledged"} 3`,
		`anax_agbot_secret_updates_by_secret{org="myorg",secret="db",state="offline"} 0`,
		`anax_agbot_secret_updates_by_secret{org="myorg",secret="db",state="failed"} 0`,
		`anax_agbot_secret_fanout_seconds_count{org="myorg"} 11`)
	h.restart()
	if ro := h.rollout("db", ""); ro.Summary != "version 3: 3 of 3 nodes acknowledged" || ro.Total != 3 {
		t.Fatalf("after a restart: %q (%d)", ro.Summary, ro.Total)
	}

	// A node-specific db for node1: its agreement now holds that name, not db.
	putSecret(h, admin, "node/node1/db", "canary-node1")
	n1.ack(n1.next())
	if ro := h.rollout("db", ""); ro.Total != 2 || len(h.rollout("db", "?node=node1").Nodes) != 0 {
		t.Fatalf("db after node1 got its own: %q (%d)", ro.Summary, ro.Total)
	}
	if ro := h.rollout("node/node1/db", ""); ro.Summary != "version 1: 1 of 1 nodes acknowledged" {
		t.Fatalf("node/node1/db: %q", ro.Summary)
	}
}

// TestRolloutStatusAccess: reading a rollout is allowed to whom may read the secret.
func TestRolloutStatusAccess(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	putSecret(h, bob, "user/bob/db", "canary-bob")
	cases := []struct {
		name, auth, path string
		want             int
	}{
		{"admin reads an org secret's rollout", admin, "/org/myorg/rollouts/db", 200},
		{"user may not read an org secret's", bob, "/org/myorg/rollouts/db", 403},
		{"owner reads his user secret's", bob, "/org/myorg/rollouts/user/bob/db", 200},
		{"admin may not read a user secret's", admin, "/org/myorg/rollouts/user/bob/db", 403},
		{"another user may not", carol, "/org/myorg/rollouts/user/bob/db", 403},
		{"node credentials may not", "myorg/node1:node1tok", "/org/myorg/rollouts/db", 403},
		{"another org may not", admin, "/org/otherorg/rollouts/db", 403},
		{"no credentials", "", "/org/myorg/rollouts/db", 401},
		{"dot-dot segment", admin, "/org/myorg/rollouts/a/../db", 400},
		{"bad node filter", admin, "/org/myorg/rollouts/db?node=a/b", 400},
		{"page: admin", admin, "/ui/org/myorg/rollouts/db", 200},
		{"page: user may not read an org secret's", bob, "/ui/org/myorg/rollouts/db", 403},
		{"page: owner reads his user secret's", bob, "/ui/org/myorg/rollouts/user/bob/db", 200},
		{"page: no credentials", "", "/ui/org/myorg/rollouts/db", 401},
		{"page: dot-dot segment", admin, "/ui/org/myorg/rollouts/db/../x", 400},
		{"nodes page: user sees his own", bob, "/ui/org/myorg/nodes", 200},
		{"nodes page: node credentials may not", "myorg/node1:node1tok", "/ui/org/myorg/nodes", 403},
		{"nodes page: another org may not", admin, "/ui/org/otherorg/nodes", 403},
	}
	t.Run("metrics name no secret by default", func(t *testing.T) {
		m := h.scrape()
		if strings.Contains(m, "secret=") || strings.Contains(m, "canary") || !strings.Contains(m, "go_goroutines") {
			t.Fatalf("metrics without --metrics-secret-names:\n%s", grepLines(m, "anax_agbot"))
		}
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, raw := h.do(c.auth, "GET", c.path, nil)
			if code != c.want {
				t.Fatalf("GET %s = %d %s, want %d", c.path, code, raw, c.want)
			}
			if strings.Contains(string(raw), "canary") {
				t.Fatalf("answer holds a value: %s", raw)
			}
		})
	}
}

// page GETs a page as the admin: HTML, with a policy that allows only its own script.
func (h *harness) page(path string) string {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.url+path, nil)
	req.SetBasicAuth("myorg/admin", "adminpw")
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(csp, "default-src 'none'") {
		h.t.Fatalf("GET %s = %d %s (CSP %q): %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), csp, raw)
	}
	if strings.Contains(string(raw), "canary") {
		h.t.Fatalf("page %s holds a secret value", path)
	}
	return string(raw)
}

// scrape reads the agbot's metrics.
func (h *harness) scrape() string {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.srv.MetricsServer().Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		h.t.Fatalf("metrics = %d", rec.Code)
	}
	return rec.Body.String()
}

func (h *harness) wantMetrics(lines ...string) {
	h.t.Helper()
	got := h.scrape()
	for _, l := range lines {
		if !strings.Contains(got, "\n"+l+"\n") {
			h.t.Errorf("metrics lack %s; rollout lines:\n%s", l, grepLines(got, "anax_agbot_secret_"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func mustJSON(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
}
