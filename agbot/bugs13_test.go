package agbot_test

import (
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

// TestIgnoredBindingDoesNotHold (issue 13, item 3): a binding for a secret the service does not
// declare is reported as ignored at publish, and must not hold the agreement waiting for it.
func TestIgnoredBindingDoesNotHold(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	putSecret(h, admin, "db", "canary-ign-db")
	putSecret(h, admin, "api_token", "canary-ign-tok")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	pol := policy("purpose == edge")
	b := pol["secretBinding"].([]any)[0].(map[string]any)
	b["secrets"] = append(b["secrets"].([]any), map[string]string{"undeclared": "never-stored"})
	var rep struct{ Notes []string }
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", pol, 201, &rep)
	if len(rep.Notes) == 0 {
		t.Fatalf("publish notes %q: want the undeclared binding reported as ignored", rep.Notes)
	}
	n := h.node("node1", "node1tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	if _, ok := n.next().(*protocol.Proposal); !ok {
		t.Fatalf("agreements %+v: want a proposal, not a hold for the ignored binding", h.agreements("node1"))
	}
}

// TestRegisterPolicyAfterPatternUnregister (issue 13, item 3): after `hzn unregister`, a node
// registered again with a policy and no pattern is a policy node, not its old pattern's.
func TestRegisterPolicyAfterPatternUnregister(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	putSecret(h, admin, "db", "canary-pat-db")
	putSecret(h, admin, "api_token", "canary-pat-tok")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	pat := map[string]any{"services": []any{map[string]any{"serviceUrl": "hello", "serviceOrgid": "myorg", "serviceArch": "amd64",
		"serviceVersions": []any{map[string]any{"version": "1.0.0"}}}},
		"secretBinding": policy("")["secretBinding"]}
	h.mustDo(admin, "PUT", "/org/myorg/patterns/pat", pat, 201, nil)
	n := h.node("node1", "node1tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "myorg/pat")
	if _, ok := n.next().(*protocol.Proposal); !ok {
		t.Fatal("pattern node: want a proposal")
	}
	// hzn unregister -f: the node releases its keys; then register --policy (no pattern).
	n.release(time.Now(), n.keys, 200)
	n2 := h.node("node1", "node1tok")
	n2.register("amd64", map[string]any{"purpose": "none"}, "")
	var node struct {
		Pattern string `json:"pattern"`
	}
	h.mustDo(admin, "GET", "/org/myorg/nodes/node1", nil, 200, &node)
	if node.Pattern != "" {
		t.Errorf("node pattern after unregister and register --policy = %q, want none", node.Pattern)
	}
	for _, a := range h.agreements("node1") {
		if a.State != engine.StateDeclined && a.State != engine.StateEnding {
			t.Errorf("agreement %s (%s) %s: the policy node's properties match no policy, want none live", a.ID, a.Source, a.State)
		}
	}
}
