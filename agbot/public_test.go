package agbot_test

import (
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// TestPublicAcrossOrgs: a policy or pattern of one org uses a service of another org, and a
// node uses a pattern of another org, only if that service or pattern is public (issue 12,
// item 6). A private one is as if not published: nothing reveals it exists.
func TestPublicAcrossOrgs(t *testing.T) {
	h := newHarness(t, nil)
	h.addOrg2()
	h.people()
	svc := clone(service)
	svc["org"] = "org2"
	delete(svc["deployment"].(map[string]any)["services"].(map[string]any)["web"].(map[string]any), "secrets")
	h.mustDo(other, "POST", "/org/org2/services", svc, 201, nil)
	pat := map[string]any{"public": false, "services": []any{map[string]any{"serviceUrl": "hello", "serviceOrgid": "org2", "serviceArch": "amd64",
		"serviceVersions": []any{map[string]any{"version": "1.0.0"}}}}}
	h.mustDo(other, "PUT", "/org/org2/patterns/pat", pat, 201, nil)

	pol := map[string]any{"service": map[string]any{"name": "hello", "org": "org2", "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"purpose == edge"}}
	var rep struct{ Warnings []string }
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/cross", pol, 201, &rep)
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "no published service") {
		t.Errorf("policy on org2's private service: warnings %q, want it as not published", rep.Warnings)
	}

	t.Run("private service of another org is not deployed", func(t *testing.T) {
		h.t = t
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"purpose": "edge"}, "")
		n.pollNothing("org2's service is private")
		if ags := h.agreements("node1"); len(ags) != 0 {
			t.Fatalf("agreements = %+v, want none", ags)
		}
		// Made public: now deployed.
		svc["public"] = true
		h.mustDo(other, "PUT", "/org/org2/services/hello_1.0.0_amd64", svc, 201, nil)
		if m := n.next(); m.Head().Type != protocol.TypeProposal {
			t.Fatalf("after org2 made it public got %s, want a proposal", m.Head().Type)
		}
	})
	t.Run("private pattern of another org", func(t *testing.T) {
		h.t = t
		h.mustDo(bob, "PUT", "/org/myorg/nodes/node5", map[string]any{"token": "node5tok"}, 201, nil)
		n := h.node("node5", "node5tok")
		body := map[string]any{"publicKeys": n.keys.Public(), "arch": "amd64", "pattern": "org2/pat"}
		code, raw := h.do(n.auth, "PUT", "/org/myorg/nodes/node5/registration", body)
		if code != 400 || !strings.Contains(string(raw), "pattern") {
			t.Fatalf("registering with org2's private pattern = %d %s, want 400", code, raw)
		}
		pat["public"] = true
		h.mustDo(other, "PUT", "/org/org2/patterns/pat", pat, 201, nil)
		n.register("amd64", nil, "org2/pat")
		if m := n.next(); m.Head().Type != protocol.TypeProposal {
			t.Fatalf("with org2's public pattern got %s, want a proposal", m.Head().Type)
		}
		// Made private again: the agreement ends.
		pat["public"] = false
		h.mustDo(other, "PUT", "/org/org2/patterns/pat", pat, 201, nil)
		if m := n.next(); m.Head().Type != protocol.TypeCancel {
			t.Fatalf("after org2 made the pattern private got %s, want a cancel", m.Head().Type)
		}
	})
	h.t = t
}
