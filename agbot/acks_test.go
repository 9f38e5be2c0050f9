package agbot_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/protocol"
)

// An acknowledgement travels sealed with the agreement's key (protocol.SealAgreement): the
// agbot takes it only when that key sealed it and it answers a message outstanding now. A
// forged one (signed by other keys, sealed with a key the agbot never gave, another node's
// credentials, a sequence never sent) and a replay of a genuine one are refused and change
// nothing; the update stays queued until the genuine acknowledgement, which is recorded once.
func TestAckForgedOrReplayed(t *testing.T) {
	h, n, _ := agreed(t)
	other := h.node("node2", "node2tok")
	h.mustDo(admin, "PUT", "/org/myorg/nodes/node2", map[string]any{"token": "node2tok"}, 201, nil)
	other.register("amd64", map[string]any{"purpose": "none"}, "")
	putSecret(h, admin, "db", "canary-ack-db2")
	u, ok := n.next().(*protocol.Update)
	if !ok {
		t.Fatal("no update after the secret changed")
	}
	reply := func(seq uint64) *protocol.UpdateReply {
		return &protocol.UpdateReply{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeUpdateReply,
			Agreement: u.Agreement, From: n.ep.ID, To: h.agbotID, Seq: seq, Time: time.Now()}, Status: protocol.StatusApplied}
	}
	wrap := func(ep *protocol.Endpoint, m protocol.Message) []byte {
		env, err := ep.Wrap(m)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	stranger, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	genuine := wrap(n.ep, reply(u.Seq))
	path := "/org/myorg/nodes/node1/msgs"
	forged := []struct {
		name       string
		auth, path string
		env        []byte
		want       int
	}{
		{"signed by keys the agbot never pinned", n.auth, path,
			wrap(&protocol.Endpoint{ID: n.ep.ID, Keys: stranger, Peers: n.ep.Peers}, reply(u.Seq)), 400},
		{"sealed with a key the agbot never gave", n.auth, path,
			wrap(&protocol.Endpoint{ID: n.ep.ID, Keys: n.keys, Peers: n.ep.Peers, Agreements: oneKey(protocol.NewAgreementKey())}, reply(u.Seq)), 400},
		{"posted with another node's credentials", other.auth, "/org/myorg/nodes/node2/msgs", genuine, 400},
		{"for a sequence never sent", n.auth, path, wrap(n.ep, reply(u.Seq+1)), 409},
	}
	for _, tc := range forged {
		t.Run(tc.name, func(t *testing.T) {
			if code, raw := h.do(tc.auth, "POST", tc.path, tc.env); code != tc.want {
				t.Fatalf("POST = %d %s, want %d", code, raw, tc.want)
			}
			if p := h.srv.Engine.Pending(); p != 1 {
				t.Fatalf("%d messages queued after a refused acknowledgement, want the update still queued", p)
			}
		})
	}
	if hdr, err := protocol.PeekHeader(genuine); err != nil || hdr.KEM != protocol.KEMAgreement {
		t.Fatalf("the node's acknowledgement is not sealed with the agreement key: %+v %v", hdr, err)
	}
	h.mustDo(n.auth, "POST", path, genuine, 204, nil)
	if p := h.srv.Engine.Pending(); p != 0 {
		t.Fatalf("%d messages queued after the acknowledgement, want 0", p)
	}
	rollout := func() string {
		_, raw := h.do(admin, "GET", "/org/myorg/rollouts/db", nil)
		return string(raw)
	}
	before := rollout()
	t.Run("replayed", func(t *testing.T) {
		if code, raw := h.do(n.auth, "POST", path, genuine); code != 409 {
			t.Fatalf("replayed acknowledgement = %d %s, want 409", code, raw)
		}
		if after := rollout(); after != before {
			t.Fatalf("a replay changed the rollout:\nbefore %s\nafter  %s", before, after)
		}
	})
}

// A connection remembers the credentials that last logged in on it; changing the node's
// token, replacing its keys or deleting it drops that at once: the old credentials on the
// same keep-alive connection are refused on the next request.
func TestConnLoginDroppedOnChange(t *testing.T) {
	cases := []struct {
		name   string
		change func(h *harness, n *simNode)
	}{
		{"token changed", func(h *harness, n *simNode) {
			h.mustDo(admin, "PUT", "/org/myorg/nodes/node1", map[string]any{"token": "another-token"}, 201, nil)
		}},
		{"node deleted", func(h *harness, n *simNode) {
			h.mustDo(admin, "DELETE", "/org/myorg/nodes/node1", nil, 200, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, n, _ := agreed(t)
			// The node's own keep-alive connection: the admin's requests go on others.
			nc := &http.Client{Transport: h.client.Transport.(*http.Transport).Clone()}
			defer nc.CloseIdleConnections()
			poll := func() int {
				req, _ := http.NewRequest("GET", h.url+"/org/myorg/nodes/node1/msgs?wait=0", nil)
				u, p, _ := strings.Cut(n.auth, ":")
				req.SetBasicAuth(u, p)
				resp, err := nc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				_, _ = io.Copy(io.Discard, resp.Body)
				return resp.StatusCode
			}
			for range 3 { // logged in, then served from the connection's memory
				if code := poll(); code != 200 {
					t.Fatalf("poll = %d", code)
				}
			}
			tc.change(h, n)
			if code := poll(); code != 401 {
				t.Fatalf("poll with the old credentials on the same connection after the change = %d, want 401", code)
			}
		})
	}
}

// oneKey is an AgreementKeys with one key for every agreement.
type oneKey protocol.AgreementKey

func (k oneKey) AgreementKey(_, _ string) protocol.AgreementKey { return protocol.AgreementKey(k) }

// Agreement keys: a node that advertises them gets its agreement's key in the proposal and
// the agreement's updates sealed with it; a node of an older agent (no features in its
// registered keys) gets none and every message sealed to its keys, and its signed-only
// acknowledgements are taken as before.
func TestAgreementKeysOnlyForNodesThatSpeakThem(t *testing.T) {
	for _, tc := range []struct {
		name     string
		older    bool
		wantKEM  string
		ackKEM   string
		keyInMsg bool
	}{
		{"current node", false, protocol.KEMAgreement, protocol.KEMAgreement, true},
		{"older node", true, protocol.KEMMLKEM768X25519, protocol.KEMNone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			n := h.edgeDeployment("canary-ak-db", "canary-ak-tok")
			if tc.older {
				n.ep.Agreements = nil
			}
			n.register("amd64", map[string]any{"purpose": "edge"}, "")
			p, ok := n.next().(*protocol.Proposal)
			if !ok || (len(p.AgreementKey) == protocol.AgreementKeySize) != tc.keyInMsg {
				t.Fatalf("proposal %T with a %d-byte agreement key, want a key: %v", p, len(p.AgreementKey), tc.keyInMsg)
			}
			n.ack(p)
			if kem := updateKEM(t, h, n, "canary-ak-db2"); kem != tc.wantKEM {
				t.Fatalf("update sealed with kem %s, want %s", kem, tc.wantKEM)
			}
			u, ok := n.next().(*protocol.Update)
			if !ok {
				t.Fatal("the update does not open")
			}
			env, err := n.ep.Wrap(successReply(u, n.ep.ID, h.agbotID))
			if err != nil {
				t.Fatal(err)
			}
			if hdr, _ := protocol.PeekHeader(env); hdr.KEM != tc.ackKEM {
				t.Fatalf("acknowledgement kem %s, want %s", hdr.KEM, tc.ackKEM)
			}
			h.mustDo(n.auth, "POST", "/org/myorg/nodes/node1/msgs", env, 204, nil)
			if p := h.srv.Engine.Pending(); p != 0 {
				t.Fatalf("%d messages queued after the acknowledgement", p)
			}
		})
	}
}

// An agent upgraded in place registers again with the same keys, now advertising agreement
// keys: no owner's authority is needed (features are not keys), the running agreement keeps
// its messages sealed to the node's keys (its proposal carried no key), and the node still
// opens and acknowledges them.
func TestAgreementKeysAfterAgentUpgrade(t *testing.T) {
	h := newHarness(t, nil)
	n := h.edgeDeployment("canary-up-db", "canary-up-tok")
	n.ep.Agreements = nil // the older agent
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	p, ok := n.next().(*protocol.Proposal)
	if !ok || len(p.AgreementKey) != 0 {
		t.Fatalf("proposal to the older agent: %T with a %d-byte key", p, len(p.AgreementKey))
	}
	n.ack(p)
	n.ep.Agreements = &protocol.AgreementKeyMap{} // upgraded: same keys, now with the feature
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	if kem := updateKEM(t, h, n, "canary-up-db2"); kem != protocol.KEMMLKEM768X25519 {
		t.Fatalf("update of the agreement made before the upgrade sealed with kem %s, want the node's keys", kem)
	}
	u, ok := n.next().(*protocol.Update)
	if !ok {
		t.Fatal("the update does not open")
	}
	n.ack(u)
	if p := h.srv.Engine.Pending(); p != 0 {
		t.Fatalf("%d messages queued after the acknowledgement", p)
	}
}

// updateKEM stores value as db, waits for the update it makes for node1 without opening it
// (n.next still returns it) and says how its envelope is sealed (header kem).
func updateKEM(t *testing.T, h *harness, n *simNode, value string) string {
	t.Helper()
	putSecret(h, admin, "db", value)
	var raw api.Messages
	h.mustDo(n.auth, "GET", "/org/myorg/nodes/node1/msgs?wait=5&after="+utoa(n.after), nil, 200, &raw)
	if len(raw.Messages) != 1 {
		t.Fatalf("%d messages, want the update", len(raw.Messages))
	}
	hdr, err := protocol.PeekHeader(raw.Messages[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	return hdr.KEM
}
