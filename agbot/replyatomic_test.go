package agbot_test

import (
	"context"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// testProposalReplyAtomic: a proposal reply whose decision can not be written (here a
// trigger refuses every write of an agreement; in production a lost lease, a timed-out
// transaction) changes nothing: the node is told it failed, the proposal stays queued and is
// offered again, and the answer to that decides the agreement. Recording half of it (the
// proposal gone from the outbox, the agreement still proposed) would leave the agreement
// undecided for good: nothing offers the proposal again, so no answer ever comes.
func testProposalReplyAtomic(t *testing.T, pg *postgrestest.Server) {
	db := agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}
	h := newHarnessEnv(t, backendEnv{db: db})
	h.people()
	putSecret(h, admin, "db", "canary-a1")
	putSecret(h, admin, "api_token", "canary-at")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	n := h.node("node1", "node1tok")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	prop, ok := n.next().(*protocol.Proposal)
	if !ok {
		t.Fatal("first message is not a proposal")
	}

	pool, err := openPool(pg, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(`CREATE FUNCTION test_refuse_agreements() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN RAISE EXCEPTION 'test: agreements can not be written'; END $$`)
	exec(`CREATE TRIGGER test_refuse_agreements BEFORE INSERT OR UPDATE ON records FOR EACH ROW
		WHEN (NEW.tbl = 'agreements') EXECUTE FUNCTION test_refuse_agreements()`)
	env, err := n.ep.Wrap(&protocol.ProposalReply{Meta: prop.Head().ReplyMeta(protocol.TypeProposalReply), Status: protocol.StatusAccepted})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := h.do(n.auth, "POST", "/org/myorg/nodes/node1/msgs", env); code/100 == 2 {
		t.Fatalf("reply while agreements can not be written = %d %s, want a failure", code, body)
	}
	exec(`DROP TRIGGER test_refuse_agreements ON records`)
	if ags := h.agreements("node1"); len(ags) != 1 || ags[0].State != engine.StateProposed {
		t.Fatalf("agreements after the failed reply = %+v, want one, proposed", ags)
	}

	// The proposal is offered again (after the retry backoff) and its answer decides.
	again, ok := n.next().(*protocol.Proposal)
	if !ok || again.Agreement != prop.Agreement || again.Seq != prop.Seq {
		t.Fatalf("offered after the failed reply: %+v, want the proposal again", again)
	}
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
