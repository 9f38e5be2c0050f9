package agbot_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/protocol"
)

// userHeader is api.UserAuthHeader holding "org/user:password".
func userHeader(cred string) http.Header {
	return http.Header{api.UserAuthHeader: {"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}}
}

// registerWith registers n's keys with extra headers and returns the answer.
func (n *simNode) registerWith(hdr http.Header) (int, string) {
	n.h.t.Helper()
	body := map[string]any{"publicKeys": n.keys.Public(), "arch": "amd64", "properties": []map[string]any{{"name": "purpose", "value": "edge"}}}
	code, raw := n.h.doWith(hdr, n.auth, "PUT", "/org/myorg/nodes/"+n.id+"/registration", body)
	return code, string(raw)
}

// release gives up the node's registered keys (hzn unregister), signed with keys at t.
func (n *simNode) release(t time.Time, keys *protocol.PrivateKeys, want int) string {
	n.h.t.Helper()
	body := api.KeyRelease{Time: t, Signature: protocol.SignKeyRelease(keys, org+"/"+n.id, t)}
	code, raw := n.h.do(n.auth, "DELETE", "/org/myorg/nodes/"+n.id+"/registration", body)
	if code != want {
		n.h.t.Fatalf("key release = %d %s, want %d", code, raw, want)
	}
	return string(raw)
}

// pollSkipping polls like poll but skips (and counts) messages sealed to other keys of the
// node: the new node sees the cancels meant for the node whose keys were replaced.
func (n *simNode) pollSkipping(wait int) ([]protocol.Message, int) {
	n.h.t.Helper()
	var out api.Messages
	n.h.mustDo(n.auth, "GET", "/org/myorg/nodes/"+n.id+"/msgs?wait="+itoa(wait)+"&after="+utoa(n.after), nil, 200, &out)
	var msgs []protocol.Message
	skipped := 0
	for _, m := range out.Messages {
		n.after = max(n.after, m.ID)
		msg, err := n.ep.Open(m.Envelope)
		if errors.Is(err, protocol.ErrWrongRecipient) {
			skipped++
			continue
		}
		if err != nil {
			n.h.t.Fatalf("open %s %d: %v", m.Type, m.ID, err)
		}
		msgs = append(msgs, msg)
	}
	return msgs, skipped
}

func nodeKeys(t *testing.T, h *harness) *protocol.PublicKeys {
	t.Helper()
	var v exchange.NodeView
	h.mustDo(bob, "GET", "/org/myorg/nodes/node1", nil, 200, &v)
	return v.PublicKeys
}

// The node token alone never replaces a node's registered keys: a token holder (a leaked
// token, a copied registration.json) is refused with the rule, and the real node's agreement
// keeps running with nothing queued for it. Other users and bad credentials are refused too.
func TestRekeyRefused(t *testing.T) {
	h, n, p := agreed(t)
	node2tok := func() { h.mustDo(bob, "PUT", "/org/myorg/nodes/node2", map[string]any{"token": "node2tok"}, 201, nil) }
	node2tok()
	h.mustDo(admin, "POST", "/org/myorg/users/eve", map[string]any{"password": "evepw", "admin": false}, 201, nil)
	cases := []struct {
		name    string
		hdr     http.Header
		code    int
		mention string
	}{
		{"token alone", nil, 403, "the node token alone does not re-key a node"},
		{"token and another user of the org", userHeader("myorg/carol:carolpw"), 403, "neither the owner"},
		{"token and the owner's wrong password", userHeader("myorg/bob:wrong"), 401, api.UserAuthHeader},
		{"token and another node's token", userHeader("myorg/node2:node2tok"), 403, "user credentials"},
		{"token and a malformed header", http.Header{api.UserAuthHeader: {"Bearer x"}}, 401, api.UserAuthHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			thief := h.node("node1", "node1tok")
			code, body := thief.registerWith(tc.hdr)
			if code != tc.code || !strings.Contains(body, tc.mention) {
				t.Fatalf("re-key = %d %s, want %d naming %q", code, body, tc.code, tc.mention)
			}
			if got := nodeKeys(t, h); !got.Equal(n.keys.Public()) {
				t.Fatalf("node keys changed to %s", got.Fingerprint())
			}
			if a := oneAgreement(t, h); a.ID != p.Agreement || a.State != engine.StateAgreed {
				t.Fatalf("agreement = %+v, want %s still agreed", a, p.Agreement)
			}
			if msgs := n.poll(0); len(msgs) != 0 {
				t.Fatalf("the real node got %v", types(msgs))
			}
		})
	}
	// The same keys again with the token alone (a retried registration) are fine.
	if code, body := n.registerWith(nil); code != 200 {
		t.Fatalf("registering the same keys again = %d %s, want 200", code, body)
	}
	if a := oneAgreement(t, h); a.ID != p.Agreement || a.State != engine.StateAgreed {
		t.Fatalf("agreement after the same keys again = %+v, want %s agreed", a, p.Agreement)
	}
}

// The node's owner or an org admin replaces its keys: the old node gets a cancel sealed to
// its old keys that says so, its answer (signed with the old keys) is accepted and ends
// it, nothing else from the old keys is, and the new node gets a new agreement.
func TestRekeyByOwnerOrAdminTellsOldNode(t *testing.T) {
	for _, by := range []string{bob, admin} {
		t.Run(strings.Split(by, ":")[0], func(t *testing.T) {
			h, old, p := agreed(t)
			n2 := h.node("node1", "node1tok")
			if code, body := n2.registerWith(userHeader(by)); code != 200 {
				t.Fatalf("re-key by %s = %d %s", by, code, body)
			}
			if got := nodeKeys(t, h); !got.Equal(n2.keys.Public()) {
				t.Fatal("node keys not replaced")
			}
			// The old node (still polling with the token) can read its cancel.
			var cancel *protocol.Cancel
			for i := 0; i < 10 && cancel == nil; i++ {
				msgs, _ := old.pollSkipping(2)
				for _, m := range msgs {
					if c, ok := m.(*protocol.Cancel); ok {
						cancel = c
					}
				}
			}
			if cancel == nil || cancel.Agreement != p.Agreement || !strings.HasPrefix(cancel.Reason, protocol.CancelKeysReplaced) {
				t.Fatalf("old node's cancel = %+v, want one for %s saying %q", cancel, p.Agreement, protocol.CancelKeysReplaced)
			}
			// Anything but the answer to it, signed with the old keys, is refused.
			rs := &protocol.Resync{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeResync, Agreement: p.Agreement,
				From: old.ep.ID, To: h.agbotID, Seq: p.Seq, Time: time.Now()}}
			env, err := old.ep.Seal(rs)
			if err != nil {
				t.Fatal(err)
			}
			if code, raw := h.do(old.auth, "POST", "/org/myorg/nodes/node1/msgs", env); code != 400 || !strings.Contains(string(raw), "replaced keys") {
				t.Fatalf("resync signed with the old keys = %d %s, want 400 naming the replaced keys", code, raw)
			}
			// The farewell and the replaced keys survive an agbot restart.
			h.restart()
			old.ack(cancel) // 204: the answer is accepted
			// The new node: a proposal under a new agreement id, and the farewell gone.
			var prop *protocol.Proposal
			for i := 0; i < 10 && prop == nil; i++ {
				msgs, skipped := n2.pollSkipping(2)
				if skipped > 0 {
					t.Fatalf("the farewell was still queued after the old node answered it")
				}
				for _, m := range msgs {
					pp, ok := m.(*protocol.Proposal)
					if !ok {
						t.Fatalf("new node got %s, want only a proposal", m.Head().Type)
					}
					prop = pp
				}
			}
			if prop == nil || prop.Agreement == p.Agreement {
				t.Fatalf("new node's proposal = %v, want one under a new agreement id", prop)
			}
			n2.ack(prop)
			if a := oneAgreement(t, h); a.ID != prop.Agreement || a.State != engine.StateAgreed {
				t.Fatalf("agreements = %+v, want only the new one, agreed", a)
			}
		})
	}
}

// A key release must be signed by the registered keys and be fresh; after a good one the
// token alone registers new keys.
func TestKeyRelease(t *testing.T) {
	h, n, _ := agreed(t)
	other, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		at      time.Time
		keys    *protocol.PrivateKeys
		mention string
	}{
		{"signed by other keys", time.Now(), other, "not signed by its registered keys"},
		{"an hour old", time.Now().Add(-time.Hour), n.keys, "from the agbot's clock"},
		{"an hour ahead", time.Now().Add(time.Hour), n.keys, "from the agbot's clock"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if body := n.release(tc.at, tc.keys, 403); !strings.Contains(body, tc.mention) {
				t.Fatalf("refusal %s does not name %q", body, tc.mention)
			}
			if !nodeKeys(t, h).Equal(n.keys.Public()) {
				t.Fatal("keys changed")
			}
		})
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(n.release(time.Now(), n.keys, 200)), &out); err != nil || out["released"] != true {
		t.Fatalf("release answer %v %v", out, err)
	}
	if k := nodeKeys(t, h); k != nil {
		t.Fatalf("keys after release: %s", k.Fingerprint())
	}
	if ags := h.agreements("node1"); len(ags) != 0 {
		t.Fatalf("agreements after release: %+v", ags)
	}
	n2 := h.node("node1", "node1tok")
	if code, body := n2.registerWith(nil); code != 200 {
		t.Fatalf("token registration after release = %d %s", code, body)
	}
	if _, ok := n2.next().(*protocol.Proposal); !ok {
		t.Fatal("no proposal after registering again")
	}
}
