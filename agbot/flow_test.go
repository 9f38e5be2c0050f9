package agbot_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

var service = map[string]any{
	"org": "myorg", "url": "hello", "version": "1.0.0", "arch": "amd64",
	"deployment": map[string]any{"services": map[string]any{
		"web": map[string]any{"image": "hello:1", "secrets": map[string]any{
			"db_password": map[string]any{"description": "db"},
			"api_token":   map[string]any{"format": "value_only"},
		}},
	}},
}

// policy is an admin's deployment policy for the service with org-level secrets.
func policy(constraint string) map[string]any { return policyFor(constraint, "db", "api_token") }

// policyFor binds db_password and api_token to the manager names db and tok.
func policyFor(constraint, db, tok string) map[string]any {
	return map[string]any{
		"service":     map[string]any{"name": "hello", "org": "myorg", "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{constraint},
		"secretBinding": []any{map[string]any{
			"serviceOrgid": "myorg", "serviceUrl": "hello", "serviceArch": "amd64", "serviceVersionRange": "[0.0.0,INFINITY)",
			"enableNodeLevelSecrets": true,
			"secrets":                []any{map[string]string{"db_password": db}, map[string]string{"api_token": tok}},
		}},
	}
}

func (h *harness) agreements(node string) []engine.Agreement {
	var out []engine.Agreement
	h.mustDo(admin, "GET", "/org/myorg/nodes/"+node+"/agreements", nil, 200, &out)
	return out
}

func putSecret(h *harness, who, name, val string) {
	h.t.Helper()
	h.mustDo(who, "PUT", "/org/myorg/secrets/"+name, map[string]string{"key": "k-" + name, "value": val}, 201, nil)
}

func wantUpdate(t *testing.T, m protocol.Message, svc, val string, reason protocol.ChangeReason) {
	t.Helper()
	u, ok := m.(*protocol.Update)
	if !ok {
		t.Fatalf("got %T, want an update", m)
	}
	got, ok := u.Secrets[svc]
	if !ok || got.Value != val || got.Reason != reason {
		t.Fatalf("update secrets[%s] = %+v (value ok: %v), want value %q reason %s", svc, got, got.Value == val, val, reason)
	}
}

// testFlow walks one agreement through hold, proposal, updates, fallback and deletion rules.
func testFlow(t *testing.T, env backendEnv) {
	h := newHarnessEnv(t, env)
	h.people()
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	var pub struct {
		Warnings []string `json:"warnings"`
	}
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge && zone in 'a,b'"), 201, &pub)
	if len(pub.Warnings) != 2 {
		t.Errorf("publishing with both bound secrets missing: warnings %q, want 2", pub.Warnings)
	}

	n := h.node("node1", "node1tok")
	n.register("amd64", map[string]any{"purpose": "edge", "zone": "a"}, "")

	// 1. Secrets missing: held, nothing sent.
	ags := h.agreements("node1")
	if len(ags) != 1 || ags[0].State != engine.StateHeld {
		t.Fatalf("agreements = %+v, want one held", ags)
	}
	if msgs := n.poll(0); len(msgs) != 0 {
		t.Fatalf("held agreement sent %v", types(msgs))
	}
	putSecret(h, admin, "db", "canary-org-v1")
	if msgs := n.poll(0); len(msgs) != 0 {
		t.Fatalf("still missing api_token, but sent %v", types(msgs))
	}
	// 2. The last one appears: proposed with both values.
	putSecret(h, admin, "api_token", "canary-tok-v1")
	m := n.next()
	p, ok := m.(*protocol.Proposal)
	if !ok {
		t.Fatalf("got %T, want a proposal", m)
	}
	if p.Secrets["db_password"].Value != "canary-org-v1" || p.Secrets["api_token"].Value != "canary-tok-v1" {
		t.Fatalf("proposal secrets wrong: %v", p.Secrets)
	}
	n.ack(p)
	if ags := h.agreements("node1"); ags[0].State != engine.StateAgreed {
		t.Fatalf("state after accept = %s", ags[0].State)
	}

	// 3. Org value changes: update.
	putSecret(h, admin, "db", "canary-org-v2")
	m = n.next()
	wantUpdate(t, m, "db_password", "canary-org-v2", protocol.ReasonValueUpdated)
	n.ack(m)
	// 4. Node-specific appears: it wins.
	putSecret(h, admin, "node/node1/db", "canary-node-v1")
	m = n.next()
	wantUpdate(t, m, "db_password", "canary-node-v1", protocol.ReasonNodeAdded)
	n.ack(m)
	// 5. An org change no longer reaches the node (node-specific in use).
	putSecret(h, admin, "db", "canary-org-v3")
	if msgs := n.poll(1); len(msgs) != 0 {
		t.Fatalf("org change with node-specific in use sent %v", types(msgs))
	}
	// 6. Deleting the node-specific one falls back through an update.
	h.mustDo(admin, "DELETE", "/org/myorg/secrets/node/node1/db", nil, 204, nil)
	m = n.next()
	wantUpdate(t, m, "db_password", "canary-org-v3", protocol.ReasonNodeRemoved)
	n.ack(m)

	// 7. Deleting the org secret in use: 409 naming the node and its owner.
	code, body := h.do(admin, "DELETE", "/org/myorg/secrets/db", nil)
	if code != 409 || !strings.Contains(string(body), "node1") || !strings.Contains(string(body), "bob") {
		t.Fatalf("delete in use = %d %s, want 409 naming node1 and bob", code, body)
	}
	// 8. Forced: the agreement is cancelled, and a new one is held until the secret is back.
	req, _ := http.NewRequest("DELETE", h.url+"/org/myorg/secrets/db?force=true", nil)
	req.SetBasicAuth("myorg/admin", "adminpw")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get(api.CancelledHeader) != "1" {
		t.Fatalf("forced delete = %d, %s %q; want 204 and 1 cancelled", resp.StatusCode, api.CancelledHeader, resp.Header.Get(api.CancelledHeader))
	}
	m = n.next()
	if _, ok := m.(*protocol.Cancel); !ok {
		t.Fatalf("got %T, want a cancel", m)
	}
	n.ack(m)
	ags = h.agreements("node1")
	if len(ags) != 1 || ags[0].State != engine.StateHeld || !strings.Contains(ags[0].Held, `"db"`) {
		t.Fatalf("after forced delete: %+v, want one agreement held for db", ags)
	}
	putSecret(h, admin, "db", "canary-org-v4")
	m = n.next()
	if p, ok := m.(*protocol.Proposal); !ok || p.Secrets["db_password"].Value != "canary-org-v4" {
		t.Fatalf("after the secret is back: %T, want a proposal with the new value", m)
	}
	n.ack(m)

	// 9. A user-level secret never reaches a node its user does not own: bob's own policy
	// binding his secrets matches carol's node2 too, which is held; admin's policy serves it.
	putSecret(h, bob, "user/bob/db", "canary-bob-db")
	putSecret(h, bob, "user/bob/api_token", "canary-bob-tok")
	h.mustDo(bob, "PUT", "/org/myorg/business/policies/bobpol", policyFor("zone == b", "user/bob/db", "user/bob/api_token"), 201, nil)
	h.mustDo(carol, "PUT", "/org/myorg/nodes/node2", map[string]any{"token": "node2tok"}, 201, nil)
	n2 := h.node("node2", "node2tok")
	n2.register("amd64", map[string]any{"purpose": "edge", "zone": "b"}, "")
	ags = h.agreements("node2")
	var held *engine.Agreement
	for i := range ags {
		if ags[i].Source == "policy/myorg/bobpol" {
			held = &ags[i]
		}
	}
	if len(ags) != 2 || held == nil || held.State != engine.StateHeld || !strings.Contains(held.Held, "owned by") {
		t.Fatalf("node2 agreements = %+v, want bob's policy held: bob's secret, carol's node", ags)
	}
	if m := n2.next(); m.Head().Type != protocol.TypeProposal || m.(*protocol.Proposal).Secrets["db_password"].Value != "canary-org-v4" {
		t.Fatalf("node2 got %s, want admin's policy's proposal with the org value", m.Head().Type)
	}
	if msgs := n2.poll(0); len(msgs) != 0 {
		t.Fatalf("node2 got %v", types(msgs))
	}

	// 10. A node whose properties do not match gets nothing.
	h.mustDo(bob, "PUT", "/org/myorg/nodes/node3", map[string]any{"token": "node3tok"}, 201, nil)
	n3 := h.node("node3", "node3tok")
	n3.register("amd64", map[string]any{"purpose": "edge", "zone": "c"}, "")
	if ags := h.agreements("node3"); len(ags) != 0 {
		t.Fatalf("node3 (zone c) agreements = %+v, want none", ags)
	}

	// 11. Removing the policy cancels the agreement.
	h.mustDo(admin, "DELETE", "/org/myorg/business/policies/pol", nil, 200, nil)
	if m := n.next(); m.Head().Type != protocol.TypeCancel {
		t.Fatalf("after policy removal got %s, want cancel", m.Head().Type)
	}
}

// testRestart: updates queued for an offline node survive an agbot restart.
func testRestart(t *testing.T, env backendEnv) {
	h := newHarnessEnv(t, env)
	n := h.edgeDeployment("canary-r1", "canary-rt")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	m := n.next()
	n.ack(m)

	// Offline node: two changes queue up.
	putSecret(h, admin, "db", "canary-r2")
	putSecret(h, admin, "node/node1/db", "canary-r3")
	h.restart()
	// Re-pin (same keys after restart) and poll from a fresh client (after=0).
	n.after = 0
	// What must hold is convergence: the last update carries the node-specific value. A
	// change still in the watch feed at shutdown is found by the start-up reconciliation,
	// which sends the current value only, so the superseded org value may or may not come
	// first (with OpenBao it usually does not).
	var msgs []protocol.Message
	last := func() bool {
		if len(msgs) == 0 {
			return false
		}
		u, ok := msgs[len(msgs)-1].(*protocol.Update)
		return ok && u.Secrets["db_password"].Value == "canary-r3"
	}
	msgs = n.poll(5)
	for i := 0; i < 5 && !last(); i++ {
		msgs = append(msgs, n.poll(2)...)
	}
	if len(msgs) == 0 || len(msgs) > 2 {
		t.Fatalf("after restart got %v, want one or two queued updates", types(msgs))
	}
	if len(msgs) == 2 {
		wantUpdate(t, msgs[0], "db_password", "canary-r2", protocol.ReasonValueUpdated)
	}
	wantUpdate(t, msgs[len(msgs)-1], "db_password", "canary-r3", protocol.ReasonNodeAdded)
	// Not acknowledged: offered again after the backoff, not lost.
	again := n.poll(5)
	for i := 0; i < 5 && len(again) < len(msgs); i++ {
		again = append(again, n.poll(2)...)
	}
	if len(again) != len(msgs) {
		t.Fatalf("unacknowledged updates resent: got %v, want %v", types(again), types(msgs))
	}
	for _, m := range msgs {
		n.ack(m)
	}
	if left := n.poll(2); len(left) != 0 {
		t.Fatalf("after acks got %v, want nothing", types(left))
	}
}

// testPublishing checks the publishing rules.
func testPublishing(t *testing.T, env backendEnv) {
	h := newHarnessEnv(t, env)
	bad := func(v any, path string) []byte {
		t.Helper()
		code, body := h.do(admin, "PUT", path, v)
		if code != 400 {
			t.Fatalf("PUT %s = %d %s, want 400", path, code, body)
		}
		return body
	}
	svc := clone(service)
	svc["deployment"].(map[string]any)["services"].(map[string]any)["web"].(map[string]any)["secrets"] = map[string]any{"etc": map[string]any{}}
	if body := bad(svc, "/org/myorg/services/hello_1.0.0_amd64"); !strings.Contains(string(body), "reserved") {
		t.Errorf("reserved secret name: %s", body)
	}
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	pol := policy("purpose == edge")
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "db"}, map[string]string{"extra": "db"}}
	body := bad(pol, "/org/myorg/business/policies/p1")
	if !strings.Contains(string(body), `api_token`) || !strings.Contains(string(body), "no binding") {
		t.Errorf("unbound service secret: %s, want it named", body)
	}
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "db"}, map[string]string{"api_token": "tok"}, map[string]string{"extra": "db"}}
	var rep struct {
		Notes, Warnings []string
	}
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/p1", pol, 201, &rep)
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], `"extra"`) {
		t.Errorf("notes = %q, want one naming extra", rep.Notes)
	}
	if len(rep.Warnings) != 2 {
		t.Errorf("warnings = %q, want two missing secrets", rep.Warnings)
	}
	pol["constraints"] = []string{"purpose =="}
	if body := bad(pol, "/org/myorg/business/policies/p2"); !strings.Contains(string(body), "constraints") {
		t.Errorf("bad constraint: %s", body)
	}
	pol["constraints"] = nil
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "../x"}, map[string]string{"api_token": "tok"}}
	bad(pol, "/org/myorg/business/policies/p3")
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "node/n1/x"}, map[string]string{"api_token": "tok"}}
	if body := bad(pol, "/org/myorg/business/policies/p4"); !strings.Contains(string(body), "enableNodeLevelSecrets") {
		t.Errorf("node-level binding: %s", body)
	}
}

func clone(m map[string]any) map[string]any {
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

func TestFlowEmbedded(t *testing.T)       { testFlow(t, backendEnv{}) }
func TestRestartEmbedded(t *testing.T)    { testRestart(t, backendEnv{}) }
func TestPublishingEmbedded(t *testing.T) { testPublishing(t, backendEnv{}) }
