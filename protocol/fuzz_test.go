package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seed corpus lives in testdata/fuzz/<Target>/ (written by `go test -run Golden
// -update`); crashers the fuzzer finds land there too and stay as regression cases.

var fuzzParties *parties

func fuzzSetup(f *testing.F) *parties {
	if fuzzParties == nil {
		fuzzParties = newParties(f, true)
	}
	return fuzzParties
}

// checkOpened holds for any input: a refusal wraps a sentinel; an accepted message is
// valid, addressed to the node and from the agbot.
func checkOpened(t *testing.T, m Message, err error) {
	if err != nil {
		if m != nil {
			t.Fatalf("Open returned a message and an error %v", err)
		}
		if !wrapsSentinel(err) {
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		return
	}
	h := m.Head()
	if h.To != nodeID || h.From != agbotID {
		t.Fatalf("accepted a message from %q to %q", h.From, h.To)
	}
	if err := m.Validate(Limits{}); err != nil {
		t.Fatalf("accepted an invalid message: %v", err)
	}
}

// FuzzOpen feeds arbitrary envelopes to the node.
func FuzzOpen(f *testing.F) {
	p := fuzzSetup(f)
	classic := newParties(f, false)
	for _, m := range allMessages() {
		if m.Head().From != agbotID {
			continue
		}
		for _, from := range []*Endpoint{p.agbot, classic.agbot} {
			env, err := from.Seal(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(env)
		}
		if SignedOnly(m.Head().Type) { // the agbot's cancel_reply, signed only
			env, err := p.agbot.Sign(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(env)
		}
	}
	keyed := keyedParties(f)
	if env, err := keyed.agbot.SealAgreement(testUpdate()); err == nil {
		f.Add(env) // sealed with an agreement key this node does not hold
	}
	f.Add([]byte(`{"header":{"v":1},"enc":"","ct":""}`))
	f.Add([]byte(`{"header":{"v":1,"kem":"none","aead":"none"},"body":"","sig":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := p.node.Open(data)
		checkOpened(t, m, err)
	})
}

// FuzzSealedMessage signs and encrypts arbitrary message bytes correctly, so the fuzzer
// reaches decoding, header matching and validation behind the cryptography. Classic KEM:
// the hybrid one costs 4x per input and adds nothing behind the decryption.
func FuzzSealedMessage(f *testing.F) {
	p := newParties(f, false)
	for _, m := range allMessages() {
		if m.Head().From == agbotID {
			f.Add(string(m.Head().Type), mustEncodeF(f, m))
		}
	}
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		h := goodHeader(p, MessageType(typ))
		h.KEM, h.RecipientKey = KEMX25519, KeyID(p.nodeKeys.Public().X25519)
		env := forge(t, h, p.agbotKeys.sign, body, p.nodeKeys.Public())
		m, err := p.node.Open(env)
		checkOpened(t, m, err)
	})
}

// FuzzAgreementSealedMessage seals arbitrary message bytes with the agreement's key, so the
// fuzzer reaches decoding, header matching and validation behind the AEAD.
func FuzzAgreementSealedMessage(f *testing.F) {
	p := keyedParties(f)
	for _, m := range allMessages() {
		if m.Head().From == agbotID && m.Head().Type != TypeProposal {
			f.Add(string(m.Head().Type), mustEncodeF(f, m))
		}
	}
	key := p.agbot.Agreements.AgreementKey(nodeID, agreement)
	signing := KeyID(p.agbotKeys.Public().Signing)
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		hdr := Header{Version: ProtocolVersion, Type: MessageType(typ), From: agbotID, To: nodeID, Agreement: agreement,
			SenderKey: signing, KEM: KEMAgreement, AEAD: AEADChaCha20Poly1305}
		env, err := sealAgreementRaw(hdr, key, body)
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.node.Open(env)
		checkOpened(t, m, err)
	})
}

// FuzzDecode decodes and validates arbitrary message bytes; what is accepted encodes back
// to a fixed point.
func FuzzDecode(f *testing.F) {
	for _, m := range allMessages() {
		f.Add(mustEncodeF(f, m))
	}
	f.Add([]byte(`{"type":"proposal","secrets":{"a":{},"a":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if err := m.Validate(Limits{}); err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("Validate error wraps no sentinel: %v", err)
			}
			return
		}
		once, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode of a valid message: %v", err)
		}
		back, err := Decode(once)
		if err != nil {
			t.Fatalf("Decode(Encode(m)): %v\n%s", err, once)
		}
		if err := back.Validate(Limits{}); err != nil {
			t.Fatalf("re-decoded message no longer valid: %v", err)
		}
		twice, _ := Encode(back)
		if !bytes.Equal(once, twice) {
			t.Fatalf("Encode not a fixed point:\n%s\n%s", once, twice)
		}
	})
}

// FuzzNames checks the name validators agree with what they promise.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"db", "user/alice/db", "node/n/db", "user/a/node/n/db", "..", ".env", "etc", "a/b", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := ValidateSecretName(s); err == nil {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || filepath.Base(s) != s || s[0] == '.' {
				t.Fatalf("ValidateSecretName accepted unsafe %q", s)
			}
		} else if !errors.Is(err, ErrInvalidSecretName) {
			t.Fatalf("error does not wrap ErrInvalidSecretName: %v", err)
		}
		if m, err := ParseManagerName(s); err == nil {
			if m.String() != s {
				t.Fatalf("ParseManagerName(%q).String() = %q", s, m.String())
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error does not wrap ErrInvalid: %v", err)
		}
		if err := ValidateID("id", s); err == nil && strings.ContainsAny(s, "\"<>& \n\x00\\") {
			t.Fatalf("ValidateID accepted %q", s)
		}
	})
}

// FuzzVersionRange: what parses prints back to the same range.
func FuzzVersionRange(f *testing.F) {
	for _, s := range []string{"", "1", "1.2.3", "[1.0.0,2.0.0)", "(1,2]", "[1,INFINITY)", "[1.2.3,1.2.3]"} {
		f.Add(s, "1.5.0")
	}
	f.Fuzz(func(t *testing.T, s, v string) {
		r, err := ParseVersionRange(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		r2, err := ParseVersionRange(r.String())
		if err != nil || r2 != r {
			t.Fatalf("ParseVersionRange(%q) = %v; String %q re-parses to %v, %v", s, r, r.String(), r2, err)
		}
		if ver, err := ParseVersion(v); err == nil {
			if r.Contains(ver) != r2.Contains(ver) {
				t.Fatalf("Contains differs after round trip")
			}
			if ver.String() != v && !strings.HasPrefix(ver.String(), v+".") {
				t.Fatalf("ParseVersion(%q).String() = %q", v, ver.String())
			}
		}
	})
}

func mustEncodeF(f *testing.F, m Message) []byte {
	b, err := Encode(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// writeFuzzCorpus (re)writes the checked-in seed corpus; TestGoldenMessages calls it with
// -update.
func writeFuzzCorpus(t *testing.T) {
	write := func(target, name string, args ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := newParties(t, true)
	classic := newParties(t, false)
	for name, m := range allMessages() {
		body, _ := Encode(m)
		write("FuzzDecode", name, body)
		if m.Head().From != agbotID {
			continue
		}
		write("FuzzSealedMessage", name, string(m.Head().Type), body)
		for kind, ep := range map[string]*Endpoint{"hybrid": p.agbot, "classic": classic.agbot} {
			env, err := ep.Seal(m)
			if err != nil {
				t.Fatal(err)
			}
			write("FuzzOpen", name+"-"+kind, env)
		}
	}
	// Hostile shapes worth keeping in front of the fuzzer.
	write("FuzzDecode", "duplicate-keys", []byte(`{"type":"update","secrets":{"a":{"key":"k","value":"1"},"a":{"key":"k","value":"2"}}}`))
	write("FuzzDecode", "deep", []byte(strings.Repeat(`{"type":"cancel","x":`, 40)+"1"+strings.Repeat("}", 40)))
	var pretty bytes.Buffer
	json.Indent(&pretty, mustEncode(t, testProposal()), "", " ")
	write("FuzzDecode", "indented", pretty.Bytes())
	for name, s := range map[string]string{
		"escaped-duplicate": `{"a\u0022":1,"a\"":2}`,
		"brace-in-string":   `{"x":"}","x":1}`,
		"array-of-objects":  `[{"a":1},{"a":1,"b":[{"a":1,"a":2}]}]`,
	} {
		write("FuzzCheckJSON", name, []byte(s))
	}
	write("FuzzOpen", "not-utf8", []byte("{\"header\":\"\xff\xfe\"}"))
}
