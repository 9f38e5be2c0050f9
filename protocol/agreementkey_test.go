package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
)

// keyedParties is an agbot deriving agreement keys and a node remembering them, after the
// node opened a proposal that carried its agreement's key.
func keyedParties(t testing.TB) *parties {
	t.Helper()
	p := newParties(t, true)
	p.agbot.Agreements = DerivedAgreementKeys{ID: agbotID, Keys: p.agbotKeys, Peers: p.agbot.Peers}
	p.node.Agreements = &AgreementKeyMap{}
	prop := testProposal()
	prop.AgreementKey = p.agbot.Agreements.AgreementKey(nodeID, agreement)
	if len(prop.AgreementKey) != AgreementKeySize {
		t.Fatalf("derived key is %d bytes", len(prop.AgreementKey))
	}
	env, err := p.agbot.Seal(prop)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.node.Open(env); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAgreementKeyRoundTrip: once the proposal carried the key, every other message of the
// agreement seals with it both ways (Wrap on the node, SealAgreement on the agbot) and opens
// to what was sent; the envelope has only header and ct, and the header names the agreement.
func TestAgreementKeyRoundTrip(t *testing.T) {
	p := keyedParties(t)
	for name, m := range allMessages() {
		t.Run(name, func(t *testing.T) {
			from, to := p.node, p.agbot
			seal := from.Wrap
			if m.Head().From == agbotID {
				from, to = p.agbot, p.node
				seal = from.SealAgreement
			}
			env, err := seal(m)
			if m.Head().Type == TypeProposal {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("SealAgreement(proposal) = %v, want ErrUnsupported", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f := envelopeFields(t, env); len(f) != 2 || f["ct"] == nil {
				t.Fatalf("fields %v, want header and ct", f)
			}
			hdr, err := PeekHeader(env)
			if err != nil || hdr.KEM != KEMAgreement || hdr.Agreement != agreement || hdr.RecipientKey != "" {
				t.Fatalf("header = %+v, %v", hdr, err)
			}
			got, err := to.Open(env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("Open = %#v, want %#v", got, m)
			}
		})
	}
}

// TestAgreementKeyRefusals: each way a keyed envelope can be wrong is refused with its error.
func TestAgreementKeyRefusals(t *testing.T) {
	p := keyedParties(t)
	update := func() []byte {
		env, err := p.agbot.SealAgreement(testUpdate())
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	reply, err := p.node.Wrap(allMessages()["update_reply"])
	if err != nil {
		t.Fatal(err)
	}
	rekeyedRing := StaticKeyRing{nodeID: testKeys(t, 3)[2].Public()}
	rekeyed := &Endpoint{ID: agbotID, Keys: p.agbotKeys, Peers: rekeyedRing,
		Agreements: DerivedAgreementKeys{ID: agbotID, Keys: p.agbotKeys, Peers: rekeyedRing}}
	stranger := &Endpoint{ID: nodeID, Keys: p.nodeKeys, Peers: p.node.Peers, Agreements: &AgreementKeyMap{}}
	otherKey := DerivedAgreementKeys{ID: agbotID, Keys: p.agbotKeys, Peers: p.agbot.Peers}.AgreementKey(nodeID, "another-agreement")
	for _, tc := range []struct {
		name string
		to   *Endpoint
		env  []byte
		want error
	}{
		{"ciphertext flipped", p.node, flipCT(t, update()), ErrDecrypt},
		{"header's agreement changed", p.node, editHeader(t, update(), func(h *Header) { h.Agreement = "another-agreement" }), ErrDecrypt},
		{"header's seq-free fields changed", p.node, editHeader(t, update(), func(h *Header) { h.AEAD = AEADAES256GCM }), ErrDecrypt},
		{"sealed with another agreement's key", p.node, forgeKeyed(t, otherKey, agbotID, nodeID, testUpdate()), ErrDecrypt},
		{"node without the key", stranger, update(), ErrDecrypt},
		{"reflected to its sender", p.agbot, update(), ErrWrongRecipient},
		{"node re-keyed since", rekeyed, reply, ErrUnknownSender},
		{"a proposal", p.node, editHeader(t, update(), func(h *Header) { h.Type = TypeProposal }), ErrInvalid},
		{"no agreement named", p.node, editHeader(t, update(), func(h *Header) { h.Agreement = "" }), ErrInvalid},
		{"extra enc field", p.node, addField(t, update(), "enc"), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.to.Open(tc.env); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestAgreementKeyRekeyedDerivation: the agbot's key for an agreement changes when the node's
// pinned keys change, and differs per agreement and per node.
func TestAgreementKeyRekeyedDerivation(t *testing.T) {
	ks := testKeys(t, 3)
	d := func(node *PrivateKeys) DerivedAgreementKeys {
		return DerivedAgreementKeys{ID: agbotID, Keys: ks[0], Peers: StaticKeyRing{nodeID: node.Public(), "myorg/other": node.Public()}}
	}
	k := d(ks[1]).AgreementKey(nodeID, agreement)
	for name, other := range map[string]AgreementKey{
		"node re-keyed":   d(ks[2]).AgreementKey(nodeID, agreement),
		"other agreement": d(ks[1]).AgreementKey(nodeID, agreement+"x"),
		"other node":      d(ks[1]).AgreementKey("myorg/other", agreement),
	} {
		if bytes.Equal(k, other) {
			t.Errorf("%s: same key", name)
		}
	}
	if !bytes.Equal(k, d(ks[1]).AgreementKey(nodeID, agreement)) {
		t.Error("derivation is not deterministic")
	}
	if d(ks[1]).AgreementKey("myorg/unknown", agreement) != nil {
		t.Error("a key for an unknown node")
	}
}

// TestAgreementKeyRedacted: the key never prints or logs.
func TestAgreementKeyRedacted(t *testing.T) {
	prop := testProposal()
	prop.AgreementKey = bytes.Repeat([]byte{0xAB}, AgreementKeySize)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "key", prop.AgreementKey, "proposal", prop)
	for _, s := range []string{fmt.Sprintf("%v %+v %x %s", prop, prop, prop.AgreementKey, prop.AgreementKey), logged.String()} {
		if bytes.Contains([]byte(s), []byte("abab")) || bytes.Contains([]byte(s), []byte("q6ur")) || bytes.Contains([]byte(s), []byte("171 171")) {
			t.Errorf("key printed: %s", s)
		}
	}
	prop.AgreementKey = prop.AgreementKey[:16]
	if err := prop.Validate(Limits{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("16-byte key: %v, want ErrInvalid", err)
	}
}

// TestFeatures: features travel with the public keys but are not keys.
func TestFeatures(t *testing.T) {
	pub := testKeys(t, 1)[0].Public()
	if !pub.Supports(FeatureAgreementKeys) {
		t.Fatal("Public() does not advertise agreement keys")
	}
	old := *pub
	old.Features = nil
	if !pub.Equal(&old) || pub.Fingerprint() != old.Fingerprint() {
		t.Error("features change the key comparison or fingerprint")
	}
	for _, tc := range []struct {
		name     string
		features []string
		ok       bool
	}{
		{"unknown name kept", []string{"some-future-thing"}, true},
		{"upper case", []string{"Agreement-Keys"}, false},
		{"empty", []string{""}, false},
		{"too many", make([]string, maxFeatures+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := *pub
			k.Features = tc.features
			if err := k.Validate(); (err == nil) != tc.ok {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}

func flipCT(t *testing.T, env []byte) []byte {
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	e.Ciphertext[len(e.Ciphertext)-1] ^= 1
	out, _ := json.Marshal(e)
	return out
}

func editHeader(t *testing.T, env []byte, edit func(*Header)) []byte {
	var e Envelope
	var h Header
	if err := json.Unmarshal(env, &e); err != nil || json.Unmarshal(e.Header, &h) != nil {
		t.Fatal(err)
	}
	edit(&h)
	e.Header, _ = json.Marshal(h)
	out, _ := json.Marshal(e)
	return out
}

func addField(t *testing.T, env []byte, name string) []byte {
	var f map[string]any
	if err := json.Unmarshal(env, &f); err != nil {
		t.Fatal(err)
	}
	f[name] = "AAAA"
	out, _ := json.Marshal(f)
	return out
}

func forgeKeyed(t *testing.T, key AgreementKey, from, to string, m Message) []byte {
	body, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	hdr := Header{Version: ProtocolVersion, Type: m.Head().Type, From: from, To: to, Agreement: m.Head().Agreement,
		SenderKey: KeyID(testKeys(t, 1)[0].Public().Signing), KEM: KEMAgreement, AEAD: AEADChaCha20Poly1305}
	env, err := sealAgreementRaw(hdr, key, body)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
