package agbot_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// refuseWrites makes every write of table tbl (op: "INSERT OR UPDATE" or "DELETE") in the
// store's database fail, as a lost lease or a timed-out transaction does, until the returned
// function is called.
func refuseWrites(t *testing.T, pg *postgrestest.Server, url, op, tbl string) (allow func()) {
	t.Helper()
	pool, err := openPool(pg, url)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	row := "NEW"
	if op == "DELETE" {
		row = "OLD"
	}
	exec(`CREATE OR REPLACE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN RAISE EXCEPTION 'test: this table can not be written'; END $$`)
	exec(fmt.Sprintf(`CREATE TRIGGER test_refuse BEFORE %s ON records FOR EACH ROW
		WHEN (%s.tbl = '%s') EXECUTE FUNCTION test_refuse()`, op, row, tbl))
	return func() {
		exec(`DROP TRIGGER test_refuse ON records`)
		pool.Close()
	}
}

// answer posts the node's reply to m (accepted, applied) and returns the HTTP status.
func (n *simNode) answer(m protocol.Message) int {
	n.h.t.Helper()
	var reply protocol.Message
	switch m := m.(type) {
	case *protocol.Proposal:
		reply = &protocol.ProposalReply{Meta: m.ReplyMeta(protocol.TypeProposalReply), Status: protocol.StatusAccepted}
	case *protocol.Cancel:
		reply = &protocol.CancelReply{Meta: m.ReplyMeta(protocol.TypeCancelReply), Status: protocol.StatusApplied}
	default:
		n.h.t.Fatalf("answer to %T", m)
	}
	env, err := n.ep.Wrap(reply)
	if err != nil {
		n.h.t.Fatal(err)
	}
	code, _ := n.h.do(n.auth, "POST", "/org/myorg/nodes/"+n.id+"/msgs", env)
	return code
}

// replyFixture is an agbot on a fresh database of pg with the service and a policy that
// matches node1, which is registered and about to be offered its proposal; tag tells the
// tests' canaries apart.
func replyFixture(t *testing.T, pg *postgrestest.Server, tag string) (*harness, *simNode, agbot.DBOptions) {
	t.Helper()
	db := agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}
	h := newHarnessEnv(t, backendEnv{db: db})
	h.people()
	putSecret(h, admin, "db", "canary-"+tag+"1")
	putSecret(h, admin, "api_token", "canary-"+tag+"t")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	n := h.node("node1", "node1tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	return h, n, db
}

// testProposalReplyAtomic: a proposal reply whose decision can not be written (here a
// trigger refuses every write of an agreement; in production a lost lease, a timed-out
// transaction) changes nothing: the node is told it failed, the proposal stays queued and is
// offered again, and the answer to that decides the agreement. Recording half of it (the
// proposal gone from the outbox, the agreement still proposed) would leave the agreement
// undecided for good: nothing offers the proposal again, so no answer ever comes.
func testProposalReplyAtomic(t *testing.T, pg *postgrestest.Server) {
	h, n, db := replyFixture(t, pg, "a")
	prop, ok := n.next().(*protocol.Proposal)
	if !ok {
		t.Fatal("first message is not a proposal")
	}

	// The proposal is offered again (after the retry backoff) and its answer decides.
	again := refusedReplyOffersAgain(t, h, n, pg, db.URL, "INSERT OR UPDATE", prop, engine.StateProposed)
	n.ack(again)
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != engine.StateAgreed {
		t.Fatalf("agreements after the reply = %+v, want one, agreed", ags)
	}
	// Survives a restart: the decision is in the database, and nothing is left queued.
	h.restart()
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != engine.StateAgreed {
		t.Fatalf("agreements after a restart = %+v, want one, agreed", ags)
	}
	if left := n.poll(1); len(left) != 0 {
		t.Fatalf("queued after the decision: %v, want nothing", types(left))
	}
}

// testCancelReplyAtomic: the same for the answer to a cancel. When the agreement can not be
// dropped, the cancel stays queued and is offered again; the answer to that ends the
// agreement (removing the cancel alone would leave the agreement ending for good).
func testCancelReplyAtomic(t *testing.T, pg *postgrestest.Server) {
	h, n, db := replyFixture(t, pg, "c")
	n.ack(n.next())
	h.mustDo(admin, "DELETE", "/org/myorg/business/policies/pol", nil, 200, nil)
	cancel, ok := n.next().(*protocol.Cancel)
	if !ok {
		t.Fatal("after the policy's removal the node got no cancel")
	}

	again := refusedReplyOffersAgain(t, h, n, pg, db.URL, "DELETE", cancel, engine.StateEnding)
	if code := n.answer(again); code != 204 {
		t.Fatalf("cancel reply = %d, want 204", code)
	}
	h.restart()
	if ags := h.agreements("node1"); len(ags) != 0 {
		t.Fatalf("agreements after the cancel's answer and a restart = %+v, want none", ags)
	}
	if left := n.poll(1); len(left) != 0 {
		t.Fatalf("queued after the cancel's answer: %v, want nothing", types(left))
	}
}

// refusedReplyOffersAgain answers m while the database refuses op on agreements: the reply
// must fail and leave node1's one agreement in state, and m must be offered again (same type,
// agreement and seq), which it returns.
func refusedReplyOffersAgain(t *testing.T, h *harness, n *simNode, pg *postgrestest.Server, dbURL, op string, m protocol.Message, state engine.State) protocol.Message {
	t.Helper()
	allow := refuseWrites(t, pg, dbURL, op, "agreements")
	if code := n.answer(m); code/100 == 2 {
		t.Fatalf("%s reply while the database refuses %s on agreements = %d, want a failure", m.Head().Type, op, code)
	}
	allow()
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != state {
		t.Fatalf("agreements after the failed reply = %+v, want one, %s", ags, state)
	}
	again := n.next()
	was, got := m.Head(), again.Head()
	if got.Type != was.Type || got.Agreement != was.Agreement || got.Seq != was.Seq {
		t.Fatalf("offered after the failed reply: %+v, want the %s again", got, was.Type)
	}
	return again
}
