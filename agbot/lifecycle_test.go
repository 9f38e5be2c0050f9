package agbot_test

import (
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

// send seals m (its Meta From/To filled in) and posts it as the node, wanting 204.
func (n *simNode) send(m protocol.Message, meta *protocol.Meta) {
	n.h.t.Helper()
	meta.Version, meta.From, meta.To, meta.Time = protocol.ProtocolVersion, n.ep.ID, n.h.agbotID, time.Now()
	env, err := n.ep.Wrap(m)
	if err != nil {
		n.h.t.Fatal(err)
	}
	n.h.mustDo(n.auth, "POST", "/org/myorg/nodes/"+n.id+"/msgs", env, 204, nil)
}

// proposalReply answers agreement ag at seq with status.
func (n *simNode) proposalReply(ag string, seq uint64, status protocol.ReplyStatus) {
	n.h.t.Helper()
	r := &protocol.ProposalReply{Meta: protocol.Meta{Type: protocol.TypeProposalReply, Agreement: ag, Seq: seq}, Status: status}
	if status != protocol.StatusAccepted {
		r.Reason = "test decline"
	}
	n.send(r, &r.Meta)
}

// cancel ends agreement ag on the node's initiative, as `hzn unregister` does.
func (n *simNode) cancel(ag string, seq uint64) {
	n.h.t.Helper()
	c := &protocol.Cancel{Meta: protocol.Meta{Type: protocol.TypeCancel, Agreement: ag, Seq: seq}, Reason: "node unregistered"}
	n.send(c, &c.Meta)
}

// agreed sets up the flow's service, policy and secrets and brings node1 to one agreed
// agreement; it returns the node and the accepted proposal.
func agreed(t *testing.T) (*harness, *simNode, *protocol.Proposal) {
	h := newHarness(t, nil)
	n := h.edgeDeployment("canary-lc-db", "canary-lc-tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	p, ok := n.next().(*protocol.Proposal)
	if !ok {
		t.Fatal("first message is not a proposal")
	}
	n.ack(p)
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != engine.StateAgreed {
		t.Fatalf("agreements = %+v, want one agreed", ags)
	}
	return h, n, p
}

// edgeDeployment stores the secrets db and api_token with these values, publishes the
// service and a policy for nodes with purpose edge, and returns node1, not registered yet.
func (h *harness) edgeDeployment(db, apiToken string) *simNode {
	h.people()
	putSecret(h, admin, "db", db)
	putSecret(h, admin, "api_token", apiToken)
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	return h.node("node1", "node1tok")
}

func oneAgreement(t *testing.T, h *harness) engine.Agreement {
	t.Helper()
	ags := h.agreements("node1")
	if len(ags) != 1 {
		t.Fatalf("agreements = %+v, want one", ags)
	}
	return ags[0]
}

// A cancel_reply is delivered until the node polls past it, then gone: never offered again
// by backoff, and not kept across a restart.
func TestCancelReplyDeliveredUntilPolledPast(t *testing.T) {
	h, n, p := agreed(t)
	n.cancel(p.Agreement, p.Seq)
	before := n.after
	m := n.next()
	if _, ok := m.(*protocol.CancelReply); !ok {
		t.Fatalf("got %T, want the cancel_reply", m)
	}
	// The answer got lost: a poll still below its id gets it again.
	n.after = before
	if msgs := n.poll(0); len(msgs) != 1 || msgs[0].Head().Type != protocol.TypeCancelReply {
		t.Fatalf("poll below the cancel_reply's id got %v, want it again", types(msgs))
	}
	// Polled past: gone, also after the resend backoff (200 ms doubling to 1 s here) has passed.
	for i := range 3 {
		if msgs := n.poll(2); len(msgs) != 0 {
			t.Fatalf("poll %d past the cancel_reply got %v, want nothing", i, types(msgs))
		}
	}
	// Removed from the stored outbox too: a restarted agbot and a restarted client
	// (after=0) find nothing.
	h.restart()
	n.after = 0
	if msgs := n.poll(1); len(msgs) != 0 {
		t.Fatalf("after restart got %v, want nothing", types(msgs))
	}
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != engine.StateDeclined {
		t.Fatalf("agreements = %+v, want one declined", ags)
	}
}

// A node cancel alone does not bring the agreement back; registering again (new keys, as
// `hzn register` after `hzn unregister`, which released the old ones) does, under a new
// agreement id, and nothing sealed to the old keys reaches the node.
func TestRegisterAgainAfterUnregister(t *testing.T) {
	h, n, p := agreed(t)
	// An update the node never acknowledges, sealed to the old keys.
	putSecret(h, admin, "db", "canary-lc-db2")
	if _, ok := n.next().(*protocol.Update); !ok {
		t.Fatal("want an update")
	}
	// hzn unregister: the node cancels and forgets its keys without polling again.
	n.cancel(p.Agreement, p.Seq)
	if a := oneAgreement(t, h); a.State != engine.StateDeclined {
		t.Fatalf("after the node's cancel: state %s, want declined", a.State)
	}
	// No re-proposal by itself, even when something makes the agbot reconcile.
	putSecret(h, admin, "db", "canary-lc-db3")
	for range 2 {
		for _, m := range n.poll(1) {
			if m.Head().Type == protocol.TypeProposal {
				t.Fatalf("node-cancelled agreement proposed again without a registration")
			}
		}
	}

	// hzn unregister also releases the keys, signed by them; then hzn register: same node,
	// new keys, a fresh client, the token alone.
	n.release(time.Now(), n.keys, 200)
	n2 := h.node("node1", "node1tok")
	n2.register("amd64", map[string]any{"purpose": "edge"}, "")
	var got *protocol.Proposal
	for i := 0; i < 10 && got == nil; i++ {
		for _, m := range n2.poll(2) { // poll fails the test on a message it can not open
			if pp, ok := m.(*protocol.Proposal); ok {
				got = pp
			} else {
				t.Fatalf("after registering again got %s of %s, want only a proposal", m.Head().Type, m.Head().Agreement)
			}
		}
	}
	if got == nil {
		t.Fatal("no proposal after registering again")
	}
	if got.Agreement == p.Agreement {
		t.Fatalf("proposal reuses agreement id %s, want a new one", got.Agreement)
	}
	if got.Secrets["db_password"].Value != "canary-lc-db3" {
		t.Fatal("new proposal does not carry the current db value")
	}
	n2.ack(got)
	a := oneAgreement(t, h)
	if a.ID != got.Agreement || a.State != engine.StateAgreed {
		t.Fatalf("agreements = %+v, want only the new one, agreed", a)
	}
	if msgs := n2.poll(1); len(msgs) != 0 {
		t.Fatalf("after accepting got %v, want nothing", types(msgs))
	}
}

// Only the answer to the outstanding proposal decides an agreement: a duplicate or stale
// proposal_reply is acknowledged and changes nothing.
func TestStaleProposalReplyIgnored(t *testing.T) {
	h, n, p := agreed(t)
	// 1. A duplicate answer to the accepted proposal (a copy offered again or resealed).
	n.proposalReply(p.Agreement, p.Seq, protocol.StatusDeclined)
	if a := oneAgreement(t, h); a.State != engine.StateAgreed {
		t.Fatalf("duplicate decline of an accepted proposal: state %s, want agreed", a.State)
	}

	// 2. The node declines a proposal; a changed binding proposes the same agreement again
	// with a higher seq; the earlier seq's answer (declined again) is stale.
	h2 := newHarness(t, nil)
	h2.people()
	putSecret(h2, admin, "db", "canary-st-db")
	putSecret(h2, admin, "db2", "canary-st-db2")
	putSecret(h2, admin, "api_token", "canary-st-tok")
	h2.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h2.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	m := h2.node("node1", "node1tok")
	m.register("amd64", map[string]any{"purpose": "edge"}, "")
	p1 := m.next().(*protocol.Proposal)
	m.proposalReply(p1.Agreement, p1.Seq, protocol.StatusDeclined)
	if a := oneAgreement(t, h2); a.State != engine.StateDeclined {
		t.Fatalf("after decline: state %s, want declined", a.State)
	}
	pol := policy("purpose == edge")
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "db2"}, map[string]string{"api_token": "api_token"}}
	h2.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", pol, 201, nil)
	p2, ok := m.next().(*protocol.Proposal)
	if !ok || p2.Agreement != p1.Agreement || p2.Seq <= p1.Seq {
		t.Fatalf("re-proposal = %+v, want the same agreement with a higher seq than %d", p2, p1.Seq)
	}
	m.proposalReply(p1.Agreement, p1.Seq, protocol.StatusDeclined)
	if a := oneAgreement(t, h2); a.State != engine.StateProposed {
		t.Fatalf("stale decline (seq %d < %d): state %s, want proposed", p1.Seq, p2.Seq, a.State)
	}

	// 3. An update queued while the proposal is outstanding: a proposal_reply carrying the
	// update's seq neither decides the agreement nor acknowledges the update.
	putSecret(h2, admin, "db2", "canary-st-db2b")
	var u *protocol.Update
	for i := 0; i < 10 && u == nil; i++ {
		for _, x := range m.poll(2) { // the unanswered proposal may be offered again too
			if x, ok := x.(*protocol.Update); ok {
				u = x
			}
		}
	}
	if u == nil {
		t.Fatal("want an update")
	}
	m.proposalReply(u.Agreement, u.Seq, protocol.StatusDeclined)
	if a := oneAgreement(t, h2); a.State != engine.StateProposed {
		t.Fatalf("proposal_reply with the update's seq: state %s, want proposed", a.State)
	}
	var again []protocol.Message
	found := false
	for i := 0; i < 5 && !found; i++ { // offered again after the backoff unless acknowledged
		for _, x := range m.poll(2) {
			again = append(again, x)
			found = found || (x.Head().Type == protocol.TypeUpdate && x.Head().Seq == u.Seq)
		}
	}
	if !found {
		t.Fatalf("update seq %d no longer offered (got %v): a proposal_reply acknowledged it", u.Seq, types(again))
	}
	// The real answer decides.
	m.proposalReply(p2.Agreement, p2.Seq, protocol.StatusAccepted)
	if a := oneAgreement(t, h2); a.State != engine.StateAgreed {
		t.Fatalf("accept of the outstanding proposal: state %s, want agreed", a.State)
	}
}
