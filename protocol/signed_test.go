package protocol

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// TestSignedOnlyRoundTrip: every reply type signs and opens; every other type is refused by
// Sign, and Wrap seals it.
func TestSignedOnlyRoundTrip(t *testing.T) {
	p := newParties(t, true)
	for name, m := range allMessages() {
		t.Run(name, func(t *testing.T) {
			from, to := p.node, p.agbot
			if m.Head().From == agbotID {
				from, to = p.agbot, p.node
			}
			env, err := from.Sign(m)
			if !SignedOnly(m.Head().Type) {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("Sign(%s) = %v, want ErrUnsupported", name, err)
				}
				env, err = from.Wrap(m)
				if err != nil {
					t.Fatal(err)
				}
				if f := envelopeFields(t, env); f["ct"] == nil || f["body"] != nil {
					t.Fatalf("Wrap(%s) did not seal: fields %v", name, f)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := to.Open(env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("Open(Sign(m)) = %#v, want %#v", got, m)
			}
			hdr, err := PeekHeader(env)
			if err != nil || hdr.KEM != KEMNone || hdr.AEAD != AEADNone || hdr.RecipientKey != "" {
				t.Errorf("header = %+v, %v", hdr, err)
			}
		})
	}
}

// TestGoldenSignedReply pins the whole signed-only envelope: Ed25519 is deterministic.
func TestGoldenSignedReply(t *testing.T) {
	p := newParties(t, true)
	env, err := p.node.Sign(allMessages()["update_reply"])
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "envelope_signed_update_reply", env)
}

// TestSignedOnlyForgeries: a forged, altered, misaddressed or misused signed-only envelope
// is refused, each with its sentinel.
func TestSignedOnlyForgeries(t *testing.T) {
	p := newParties(t, true)
	other := testKeys(t, 3)[2]
	reply := allMessages()["update_reply"]
	good := func() Header {
		return Header{Version: ProtocolVersion, Type: TypeUpdateReply, From: nodeID, To: agbotID,
			SenderKey: KeyID(p.nodeKeys.Public().Signing), KEM: KEMNone, AEAD: AEADNone}
	}
	sign := func(h Header, m Message, by *PrivateKeys) []byte {
		env, err := signRaw(h, by.sign, mustEncode(t, m))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	edit := func(env []byte, field string, fn func([]byte) []byte) []byte {
		f := envelopeFields(t, env)
		var s string
		if err := json.Unmarshal(f[field], &s); err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(s)
		f[field], _ = json.Marshal(base64.StdEncoding.EncodeToString(fn(raw)))
		return joinEnvelope(t, f)
	}
	valid := sign(good(), reply, p.nodeKeys)
	for _, tc := range []struct {
		name string
		env  []byte
		want error
	}{
		{"signed by another key", sign(good(), reply, other), ErrBadSignature},
		{"another key named in the header", func() []byte {
			h := good()
			h.SenderKey = KeyID(other.Public().Signing)
			return sign(h, reply, other)
		}(), ErrUnknownSender},
		{"status changed after signing", edit(valid, "body", func(b []byte) []byte {
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			m["status"] = "failed"
			out, _ := json.Marshal(m)
			return out
		}), ErrBadSignature},
		{"signature bit flipped", edit(valid, "sig", func(b []byte) []byte { b[5] ^= 1; return b }), ErrBadSignature},
		{"signature truncated", edit(valid, "sig", func(b []byte) []byte { return b[:10] }), ErrBadSignature},
		{"to another agbot", func() []byte {
			h := good()
			h.To = "agbot2"
			m := *reply.(*UpdateReply)
			m.To = "agbot2"
			return sign(h, &m, p.nodeKeys)
		}(), ErrWrongRecipient},
		{"an update in clear", func() []byte {
			h := good()
			h.Type, h.From, h.To, h.SenderKey = TypeUpdate, agbotID, nodeID, KeyID(p.agbotKeys.Public().Signing)
			return sign(h, testUpdate(), p.agbotKeys)
		}(), ErrUnsupported},
		{"a recipient key named", func() []byte {
			h := good()
			h.RecipientKey = KeyID(p.agbotKeys.Public().X25519)
			return sign(h, reply, p.nodeKeys)
		}(), ErrInvalid},
		{"header type differs from the message", func() []byte {
			h := good()
			h.Type = TypeProposalReply
			return sign(h, reply, p.nodeKeys)
		}(), ErrHeaderMismatch},
		{"sealed and signed fields mixed", func() []byte {
			f := envelopeFields(t, valid)
			f["enc"] = f["sig"]
			delete(f, "sig")
			return joinEnvelope(t, f)
		}(), ErrMalformed},
		{"kem none with enc and ct", func() []byte {
			f := envelopeFields(t, valid)
			f["enc"], f["ct"] = f["body"], f["sig"]
			delete(f, "body")
			delete(f, "sig")
			return joinEnvelope(t, f)
		}(), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.agbot.Open(tc.env)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := p.agbot.Open(valid); err != nil {
		t.Fatalf("the unaltered envelope: %v", err)
	}
}
