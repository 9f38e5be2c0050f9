package agbot_test

import (
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

// pollNothing fails if the node has any message now.
func (n *simNode) pollNothing(why string) {
	n.h.t.Helper()
	if msgs := n.poll(1); len(msgs) != 0 {
		n.h.t.Fatalf("%s: node %s got %v", why, n.id, types(msgs))
	}
}

func setAdmin(h *harness, user, pw string, isAdmin bool) {
	h.t.Helper()
	h.mustDo(admin, "PUT", "/org/myorg/users/"+user, map[string]any{"password": pw, "admin": isAdmin}, 201, nil)
}

// TestBindingNeedsOwnerRights: a policy or pattern delivers a secret only if its owner may
// read it, checked at publish (403 naming binding, secret and rule) and again at every
// proposal and update (issue 12, item 1).
func TestBindingNeedsOwnerRights(t *testing.T) {
	t.Run("bob publishes a policy binding an org secret", func(t *testing.T) {
		// Bob's attack: he may not read db, so he binds it in his own policy and registers
		// his own node that matches.
		h := newHarness(t, nil)
		h.people()
		putSecret(h, admin, "db", "canary-authz-db")
		putSecret(h, admin, "api_token", "canary-authz-tok")
		if code, _ := h.do(bob, "GET", "/org/myorg/secrets/db", nil); code != 403 {
			t.Fatalf("bob reads db: %d, want 403", code)
		}
		h.mustDo(bob, "POST", "/org/myorg/services", service, 201, nil)
		code, body := h.do(bob, "PUT", "/org/myorg/business/policies/mine", policy("owner == bob"))
		if code != 403 || !strings.Contains(string(body), "secretBinding[0].secrets[0]") || !strings.Contains(string(body), `\"db\"`) ||
			!strings.Contains(string(body), "org admins only") {
			t.Errorf("bob's policy binding db = %d %s, want 403 naming the binding, the secret and the rule", code, body)
		}
		pat := map[string]any{"services": []any{map[string]any{"serviceUrl": "hello", "serviceOrgid": "myorg", "serviceArch": "amd64",
			"serviceVersions": []any{map[string]any{"version": "1.0.0"}}}}, "secretBinding": policy("")["secretBinding"]}
		if code, body := h.do(bob, "PUT", "/org/myorg/patterns/mine", pat); code != 403 || !strings.Contains(string(body), "org admins only") {
			t.Errorf("bob's pattern binding db = %d %s, want 403", code, body)
		}
		// The rest of the attack: his own node, matching his policy, registers and polls.
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"owner": "bob"}, "")
		for _, m := range n.poll(1) {
			if p, ok := m.(*protocol.Proposal); ok && p.Secrets["db_password"].Value == "canary-authz-db" {
				t.Fatal("bob's node received the org secret db that bob may not read")
			}
			t.Fatalf("bob's node got a %s", m.Head().Type)
		}
		if ags := h.agreements("node1"); len(ags) != 0 {
			t.Fatalf("agreements = %+v, want none", ags)
		}
	})

	t.Run("policy owner demoted before the proposal", func(t *testing.T) {
		h := newHarness(t, nil)
		h.people()
		putSecret(h, admin, "db", "canary-authz-db")
		putSecret(h, admin, "api_token", "canary-authz-tok")
		setAdmin(h, "bob", "bobpw", true)
		h.mustDo(bob, "POST", "/org/myorg/services", service, 201, nil)
		h.mustDo(bob, "PUT", "/org/myorg/business/policies/mine", policy("owner == bob"), 201, nil)
		setAdmin(h, "bob", "bobpw", false)
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"owner": "bob"}, "")
		ags := h.agreements("node1")
		if len(ags) != 1 || ags[0].State != engine.StateHeld || !strings.Contains(ags[0].Held, "org admins only") {
			t.Fatalf("agreements = %+v, want one held naming the rule", ags)
		}
		n.pollNothing("the policy's owner lost the right to db")
	})

	t.Run("policy owner demoted after the agreement", func(t *testing.T) {
		h := newHarness(t, nil)
		h.people()
		putSecret(h, admin, "db", "canary-authz-db")
		putSecret(h, admin, "api_token", "canary-authz-tok")
		setAdmin(h, "bob", "bobpw", true)
		h.mustDo(bob, "POST", "/org/myorg/services", service, 201, nil)
		h.mustDo(bob, "PUT", "/org/myorg/business/policies/mine", policy("owner == bob"), 201, nil)
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"owner": "bob"}, "")
		p := n.next().(*protocol.Proposal)
		n.ack(p)
		setAdmin(h, "bob", "bobpw", false)
		m := n.next()
		c, ok := m.(*protocol.Cancel)
		if !ok || !strings.Contains(c.Reason, "org admins only") {
			t.Fatalf("after the owner's demotion got %T %+v, want a cancel naming the rule", m, m)
		}
		n.ack(c)
		// A new value is not sent either.
		putSecret(h, admin, "db", "canary-authz-db-2")
		n.pollNothing("the owner is no longer an admin")
		for _, a := range h.agreements("node1") {
			if a.State != engine.StateHeld {
				t.Fatalf("agreement %+v, want none or held", a)
			}
		}
	})

	t.Run("policy owner deleted", func(t *testing.T) {
		h := newHarness(t, nil)
		h.people()
		putSecret(h, admin, "db", "canary-authz-db")
		putSecret(h, admin, "api_token", "canary-authz-tok")
		h.mustDo(admin, "POST", "/org/myorg/users/dave", map[string]any{"password": "davepw", "admin": true}, 201, nil)
		h.mustDo("myorg/dave:davepw", "POST", "/org/myorg/services", service, 201, nil)
		h.mustDo("myorg/dave:davepw", "PUT", "/org/myorg/business/policies/dave", policy("owner == bob"), 201, nil)
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"owner": "bob"}, "")
		n.ack(n.next())
		h.mustDo(admin, "DELETE", "/org/myorg/users/dave", nil, 200, nil)
		if m := n.next(); m.Head().Type != protocol.TypeCancel {
			t.Fatalf("after the owner's deletion got %s, want a cancel", m.Head().Type)
		}
	})

	t.Run("admin may not bind a user's secret", func(t *testing.T) {
		h := newHarness(t, nil)
		h.people()
		h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
		code, body := h.do(admin, "PUT", "/org/myorg/business/policies/p", policyFor("a == b", "db", "user/bob/api_token"))
		if code != 403 || !strings.Contains(string(body), "secretBinding[0].secrets[1]") {
			t.Fatalf("admin binding user/bob/api_token = %d %s, want 403 naming the binding", code, body)
		}
	})

	t.Run("bob's own policy delivers his secrets to his node", func(t *testing.T) {
		h := newHarness(t, nil)
		h.people()
		putSecret(h, bob, "user/bob/db", "canary-authz-bob-db")
		putSecret(h, bob, "user/bob/api_token", "canary-authz-bob-tok")
		h.mustDo(bob, "POST", "/org/myorg/services", service, 201, nil)
		h.mustDo(bob, "PUT", "/org/myorg/business/policies/mine", policyFor("owner == bob", "user/bob/db", "user/bob/api_token"), 201, nil)
		n := h.node("node1", "node1tok")
		n.register("amd64", map[string]any{"owner": "bob"}, "")
		p, ok := n.next().(*protocol.Proposal)
		if !ok || p.Secrets["db_password"].Value != "canary-authz-bob-db" {
			t.Fatalf("bob's node: %+v, want a proposal with bob's value", p)
		}
	})
}

// TestNodeSecretForAReusedName: an admin provisions node/node9/db; bob then creates a node
// named node9. An admin's policy matching node9 must not give it that value (written before
// bob's node existed), only the org value; a version the admin writes after bob's node exists
// is meant for it.
func TestNodeSecretForAReusedName(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	putSecret(h, admin, "db", "canary-reuse-org")
	putSecret(h, admin, "api_token", "canary-reuse-tok")
	putSecret(h, admin, "node/node9/db", "canary-reuse-node9-old")
	putSecret(h, admin, "node/adm/db", "canary-reuse-adm")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)

	h.mustDo(bob, "PUT", "/org/myorg/nodes/node9", map[string]any{"token": "node9tok"}, 201, nil)
	n := h.node("node9", "node9tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	p, ok := n.next().(*protocol.Proposal)
	if !ok {
		t.Fatal("node9: no proposal")
	}
	if got := p.Secrets["db_password"].Value; got != "canary-reuse-org" {
		t.Fatalf("bob's node9 got db_password %q, want the org value, not the one provisioned before it existed", got)
	}
	n.ack(p)
	// The admin writes node9's value now, knowing node9 is bob's: it is delivered.
	putSecret(h, admin, "node/node9/db", "canary-reuse-node9-new")
	wantUpdate(t, n.next(), "db_password", "canary-reuse-node9-new", protocol.ReasonNodeAdded)

	// An admin's own node gets a node-specific value provisioned before it existed.
	h.mustDo(admin, "PUT", "/org/myorg/nodes/adm", map[string]any{"token": "admtok"}, 201, nil)
	a := h.node("adm", "admtok")
	a.register("amd64", map[string]any{"purpose": "edge"}, "")
	if p, ok := a.next().(*protocol.Proposal); !ok || p.Secrets["db_password"].Value != "canary-reuse-adm" {
		t.Fatalf("admin's node: want the value provisioned for it")
	}
}

// TestPublishDoesNotRevealUserSecrets: publishing a binding of another user's secret is
// refused the same way whether or not the secret exists.
func TestPublishDoesNotRevealUserSecrets(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	putSecret(h, bob, "user/bob/api_token", "canary-reveal")
	h.mustDo(carol, "POST", "/org/myorg/services", service, 201, nil)
	answer := func(auth, name string) (int, string) {
		code, body := h.do(auth, "PUT", "/org/myorg/business/policies/probe", policyFor("a == b", "user/carol/db", name))
		return code, strings.ReplaceAll(string(body), name, "NAME")
	}
	for _, who := range []string{carol, admin} {
		c1, b1 := answer(who, "user/bob/api_token")
		c2, b2 := answer(who, "user/bob/nope")
		if c1 == 201 || c1 != c2 || b1 != b2 {
			t.Errorf("%s: existing secret answered %d %s, missing one %d %s: want the same refusal", who, c1, b1, c2, b2)
		}
	}
}
