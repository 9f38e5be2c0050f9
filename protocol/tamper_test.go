package protocol

import (
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// sentinels is every error Open may wrap.
var sentinels = []error{ErrTooLarge, ErrMalformed, ErrUnsupported, ErrWrongRecipient,
	ErrUnknownSender, ErrDecrypt, ErrBadSignature, ErrHeaderMismatch, ErrInvalid}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// forge seals body with hdr, signed by sign, to the hybrid or X25519 key in hdr.KEM of pub.
func forge(t *testing.T, hdr Header, sign ed25519.PrivateKey, body []byte, pub *PublicKeys) []byte {
	t.Helper()
	var k hpke.PublicKey
	var err error
	if hdr.KEM == KEMMLKEM768X25519 {
		k, err = kemHybrid.NewPublicKey(pub.MLKEM768X25519)
	} else {
		k, err = kemX25519.NewPublicKey(pub.X25519)
	}
	if err != nil {
		t.Fatal(err)
	}
	env, err := sealRaw(hdr, sign, body, k, hpke.ChaCha20Poly1305())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// goodHeader is the header the agbot would write for a message to the node.
func goodHeader(p *parties, typ MessageType) Header {
	return Header{Version: ProtocolVersion, Type: typ, From: agbotID, To: nodeID,
		SenderKey: KeyID(p.agbotKeys.Public().Signing), RecipientKey: KeyID(p.nodeKeys.Public().MLKEM768X25519),
		KEM: KEMMLKEM768X25519, AEAD: AEADChaCha20Poly1305}
}

func mustEncode(t *testing.T, m Message) []byte {
	t.Helper()
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func envelopeFields(t *testing.T, env []byte) map[string]json.RawMessage {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal(env, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func joinEnvelope(t *testing.T, f map[string]json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTampering(t *testing.T) {
	p := newParties(t, true)
	attacker := testKeys(t, 4)[2]
	otherNode := testKeys(t, 4)[3]
	seal := func(t *testing.T, m Message) []byte {
		t.Helper()
		env, err := p.agbot.Seal(m)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}

	tests := []struct {
		name  string
		make  func(t *testing.T) []byte
		node  func() *Endpoint // receiving endpoint; nil means p.node
		want  error
		wantS string // substring of the error
	}{
		{"flip ciphertext byte", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			var ct []byte
			json.Unmarshal(f["ct"], &ct)
			ct[len(ct)/2] ^= 0x01
			f["ct"], _ = json.Marshal(ct)
			return joinEnvelope(t, f)
		}, nil, ErrDecrypt, "decryption failed"},
		{"flip encapsulated key byte", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			var enc []byte
			json.Unmarshal(f["enc"], &enc)
			enc[5] ^= 0x80
			f["enc"], _ = json.Marshal(enc)
			return joinEnvelope(t, f)
		}, nil, ErrDecrypt, "decryption failed"},
		{"edit header type", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["header"] = json.RawMessage(strings.Replace(string(f["header"]), `"type":"proposal"`, `"type":"cancel"`, 1))
			return joinEnvelope(t, f)
		}, nil, ErrDecrypt, "header altered"},
		{"swap header from another envelope", func(t *testing.T) []byte {
			a := envelopeFields(t, seal(t, testProposal()))
			b := envelopeFields(t, seal(t, testUpdate()))
			a["header"] = b["header"]
			return joinEnvelope(t, a)
		}, nil, ErrDecrypt, "header altered"},
		{"swap header for another recipient", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.To = "myorg/node2"
			a := envelopeFields(t, seal(t, testProposal()))
			a["header"], _ = json.Marshal(h)
			return joinEnvelope(t, a)
		}, nil, ErrWrongRecipient, `addressed to "myorg/node2"`},
		{"re-sign with another key, pinned key id claimed", func(t *testing.T) []byte {
			return forge(t, goodHeader(p, TypeProposal), attacker.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, nil, ErrBadSignature, "bad signature"},
		{"re-sign with another key, own key id", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.SenderKey = KeyID(attacker.Public().Signing)
			return forge(t, h, attacker.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, nil, ErrUnknownSender, "not its pinned key"},
		{"sender not pinned", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.From = "agbot2"
			return forge(t, h, attacker.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, nil, ErrUnknownSender, `sender "agbot2"`},
		{"encrypted to another node", func(t *testing.T) []byte {
			m := testProposal()
			m.To = "myorg/node2"
			ep := &Endpoint{ID: agbotID, Keys: p.agbotKeys, Peers: StaticKeyRing{"myorg/node2": otherNode.Public()}}
			env, err := ep.Seal(m)
			if err != nil {
				t.Fatal(err)
			}
			return env
		}, nil, ErrWrongRecipient, "addressed to"},
		{"addressed to this node, sealed to another node's key", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.RecipientKey = KeyID(otherNode.Public().MLKEM768X25519)
			return forge(t, h, p.agbotKeys.sign, mustEncode(t, testProposal()), otherNode.Public())
		}, nil, ErrWrongRecipient, "not this party's"},
		{"claims this node's key, sealed to another node's key", func(t *testing.T) []byte {
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, mustEncode(t, testProposal()), otherNode.Public())
		}, nil, ErrDecrypt, "decryption failed"},
		{"another node re-seals what it received", func(t *testing.T) []byte {
			// node2 got a genuine message and re-encrypts it to node1 under its own header.
			h := goodHeader(p, TypeProposal)
			h.From = "myorg/node2"
			h.SenderKey = KeyID(otherNode.Public().Signing)
			return forge(t, h, otherNode.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, func() *Endpoint {
			return &Endpoint{ID: nodeID, Keys: p.nodeKeys, Peers: StaticKeyRing{agbotID: p.agbotKeys.Public(), "myorg/node2": otherNode.Public()}}
		}, ErrHeaderMismatch, "does not match its envelope header"},
		{"signed message names another recipient", func(t *testing.T) []byte {
			m := testProposal()
			m.To = "myorg/node2"
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, mustEncode(t, m), p.nodeKeys.Public())
		}, nil, ErrHeaderMismatch, "does not match its envelope header"},
		{"signed message of another type", func(t *testing.T) []byte {
			return forge(t, goodHeader(p, TypeUpdate), p.agbotKeys.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, nil, ErrHeaderMismatch, "does not match its envelope header"},
		{"truncated", func(t *testing.T) []byte {
			env := seal(t, testProposal())
			return env[:len(env)-10]
		}, nil, ErrMalformed, "JSON"},
		{"ciphertext truncated", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			var ct []byte
			json.Unmarshal(f["ct"], &ct)
			f["ct"], _ = json.Marshal(ct[:len(ct)-1])
			return joinEnvelope(t, f)
		}, nil, ErrDecrypt, "decryption failed"},
		{"plaintext shorter than a signature", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			k, _ := kemHybrid.NewPublicKey(p.nodeKeys.Public().MLKEM768X25519)
			hb, _ := json.Marshal(h)
			enc, s, _ := hpke.NewSender(k, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte(hpkeInfo))
			ct, _ := s.Seal(hb, []byte("short"))
			env, _ := json.Marshal(Envelope{Header: hb, Enc: enc, Ciphertext: ct})
			return env
		}, nil, ErrBadSignature, "shorter than a signature"},
		{"signed garbage", func(t *testing.T) []byte {
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, []byte(`{"type":"proposal",`), p.nodeKeys.Public())
		}, nil, ErrMalformed, "JSON"},
		{"signed message with unknown field", func(t *testing.T) []byte {
			body := mustEncode(t, testProposal())
			body = append([]byte(`{"extra":1,`), body[1:]...)
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, body, p.nodeKeys.Public())
		}, nil, ErrMalformed, `unknown field "extra"`},
		{"signed message with duplicate key", func(t *testing.T) []byte {
			body := mustEncode(t, testProposal())
			body = append([]byte(`{"seq":7,`), body[1:]...)
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, body, p.nodeKeys.Public())
		}, nil, ErrMalformed, `duplicate JSON object key "seq"`},
		{"signed invalid message", func(t *testing.T) []byte {
			m := testProposal()
			m.Secrets["etc"] = SecretValue{Value: canaryDB}
			withContainer(m, func(c *Container) { c.Secrets["etc"] = SecretDecl{} })
			return forge(t, goodHeader(p, TypeProposal), p.agbotKeys.sign, mustEncode(t, m), p.nodeKeys.Public())
		}, nil, ErrInvalid, `secret name "etc": is a top-level directory`},
		{"classic KEM refused when hybrid required", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.KEM, h.RecipientKey = KEMX25519, KeyID(p.nodeKeys.Public().X25519)
			return forge(t, h, p.agbotKeys.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, func() *Endpoint {
			e := *p.node
			e.RequireHybrid = true
			return &e
		}, ErrUnsupported, "is required"},
		{"classic KEM between two hybrid parties (downgrade)", func(t *testing.T) []byte {
			h := goodHeader(p, TypeProposal)
			h.KEM, h.RecipientKey = KEMX25519, KeyID(p.nodeKeys.Public().X25519)
			return forge(t, h, p.agbotKeys.sign, mustEncode(t, testProposal()), p.nodeKeys.Public())
		}, nil, ErrUnsupported, "both registered"},
		{"hybrid KEM to a node without it", func(t *testing.T) []byte {
			return seal(t, testProposal())
		}, func() *Endpoint {
			e := *p.node
			e.Keys = p.nodeKeys.WithoutHybrid()
			return &e
		}, ErrUnsupported, "not enabled here"},
		{"unknown KEM", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["header"] = json.RawMessage(strings.Replace(string(f["header"]), KEMMLKEM768X25519, "mlkem1024p384", 1))
			return joinEnvelope(t, f)
		}, nil, ErrUnsupported, `KEM "mlkem1024p384"`},
		{"unknown AEAD", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["header"] = json.RawMessage(strings.Replace(string(f["header"]), AEADChaCha20Poly1305, "aes128gcm", 1))
			return joinEnvelope(t, f)
		}, nil, ErrUnsupported, `AEAD "aes128gcm"`},
		{"other protocol version", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["header"] = json.RawMessage(strings.Replace(string(f["header"]), `"v":1`, `"v":2`, 1))
			return joinEnvelope(t, f)
		}, nil, ErrUnsupported, "header version 2"},
		{"envelope field case changed", func(t *testing.T) []byte {
			return []byte(strings.Replace(string(seal(t, testProposal())), `"ct":`, `"Ct":`, 1))
		}, nil, ErrMalformed, "exactly the fields header, enc and ct"},
		{"envelope duplicate field", func(t *testing.T) []byte {
			env := seal(t, testProposal())
			return append([]byte(`{"ct":"AAAA",`), env[1:]...)
		}, nil, ErrMalformed, `duplicate JSON object key "ct"`},
		{"header unknown field", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["header"] = json.RawMessage(`{"x":1,` + string(f["header"][1:]))
			return joinEnvelope(t, f)
		}, nil, ErrMalformed, `unknown field "x"`},
		{"non-strict base64", func(t *testing.T) []byte {
			f := envelopeFields(t, seal(t, testProposal()))
			f["ct"] = json.RawMessage(`"AB=="`) // the second character carries padding bits
			return joinEnvelope(t, f)
		}, nil, ErrMalformed, "not strict base64"},
		{"oversize", func(t *testing.T) []byte {
			return []byte(`{"header":{},"pad":"` + strings.Repeat("A", DefaultMaxEnvelope) + `"}`)
		}, nil, ErrTooLarge, "more than the limit 1048576"},
		{"oversize under a configured limit", func(t *testing.T) []byte {
			return seal(t, testProposal())
		}, func() *Endpoint {
			e := *p.node
			e.Limits.MaxEnvelope = 1000
			return &e
		}, ErrTooLarge, "more than the limit 1000"},
		{"not JSON", func(t *testing.T) []byte { return []byte("\x00\x01binary") }, nil, ErrMalformed, "JSON"},
		{"not UTF-8", func(t *testing.T) []byte { return []byte("{\"header\":\"\xff\"}") }, nil, ErrMalformed, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := p.node
			if tc.node != nil {
				node = tc.node()
			}
			m, err := node.Open(tc.make(t))
			if err == nil {
				t.Fatalf("Open = %v, nil; want %v", m, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Open error = %v, want it to wrap %v", err, tc.want)
			}
			for _, s := range sentinels {
				if s != tc.want && s != ErrInvalid && errors.Is(err, s) {
					t.Errorf("Open error = %v also wraps %v: each case must have its own error", err, s)
				}
			}
			if !strings.Contains(err.Error(), tc.wantS) {
				t.Errorf("Open error = %q, want it to contain %q", err, tc.wantS)
			}
			assertNoCanary(t, err.Error())
			t.Logf("refused: %v", err)
		})
	}
}

// TestFlipEveryByte flips each byte of sealed envelopes with several masks: every result is
// refused with a sentinel error, never accepted and never a panic.
func TestFlipEveryByte(t *testing.T) {
	cases := []struct {
		name   string
		hybrid bool
		m      Message
		masks  []byte
	}{
		{"cancel classic", false, allMessages()["cancel"], []byte{0x01, 0x20, 0x80, 0xff}},
		{"update hybrid", true, testUpdate(), []byte{0x01, 0x20}},
		{"proposal classic", false, testProposal(), []byte{0x04}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newParties(t, tc.hybrid)
			env, err := p.agbot.Seal(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.node.Open(env); err != nil {
				t.Fatalf("untouched envelope: %v", err)
			}
			for i := range env {
				for _, mask := range tc.masks {
					bad := append([]byte(nil), env...)
					bad[i] ^= mask
					_, err := p.node.Open(bad)
					if err == nil {
						t.Fatalf("byte %d ^ %#x (%q -> %q): accepted", i, mask, env[i], bad[i])
					}
					if !wrapsSentinel(err) {
						t.Fatalf("byte %d ^ %#x: error %v wraps no sentinel", i, mask, err)
					}
				}
			}
		})
	}
}

// TestTruncateEverywhere opens every prefix of an envelope.
func TestTruncateEverywhere(t *testing.T) {
	p := newParties(t, false)
	env, err := p.agbot.Seal(allMessages()["cancel"])
	if err != nil {
		t.Fatal(err)
	}
	for n := range env {
		_, err := p.node.Open(env[:n])
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix of %d bytes: error %v, want ErrMalformed", n, err)
		}
	}
}

// TestReplayAndReorder goes through Open and a Tracker as the agent would.
func TestReplayAndReorder(t *testing.T) {
	p := newParties(t, true)
	tr := NewTracker(TrackerOptions{Now: func() time.Time { return testTime.Add(time.Minute) }})
	deliver := func(m Message) error {
		env, err := p.agbot.Seal(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.node.Open(env)
		if err != nil {
			return err
		}
		if err := tr.Check(got); err != nil {
			return err
		}
		return tr.Commit(got)
	}
	update := func(seq uint64) *Update {
		u := testUpdate()
		u.Seq = seq
		return u
	}
	steps := []struct {
		name string
		m    Message
		want error // nil: applied
	}{
		{"proposal", testProposal(), nil},
		{"proposal replayed", testProposal(), ErrKnownAgreement},
		{"update 2", update(2), nil},
		{"update 2 replayed", update(2), ErrDuplicate},
		{"update 4 (3 lost or late)", update(4), nil},
		{"update 3 reordered", update(3), ErrStale},
		{"update 2 replayed late", update(2), ErrStale},
		{"cancel 5", &Cancel{Meta: meta(TypeCancel, agbotID, nodeID, 5)}, nil},
		{"cancel 5 retransmitted", &Cancel{Meta: meta(TypeCancel, agbotID, nodeID, 5)}, ErrDuplicate},
		{"update after cancel", update(6), ErrUnknownAgreement},
		{"proposal replayed after cancel", testProposal(), ErrKnownAgreement},
	}
	for _, s := range steps {
		err := deliver(s.m)
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Errorf("%s: error %v, want %v", s.name, err, s.want)
		}
	}
	if errors.Is(ErrKnownAgreement, ErrReplay) != true || errors.Is(ErrStale, ErrReplay) != true {
		t.Errorf("ErrKnownAgreement and ErrStale must wrap ErrReplay")
	}
}
