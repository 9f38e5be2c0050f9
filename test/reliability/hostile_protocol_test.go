package reliability

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Canary values of the hostile suites: an error message that repeats one leaks a value.
const (
	canaryDB  = "CANARY-reliability-db-5e1d"
	canaryTok = "CANARY-reliability-token-77a0"
)

// badSecretNames break design §3: path-like, reserved, hidden, too long, control bytes and
// unicode look-alikes of valid names.
var badSecretNames = []string{
	"", ".", "..", "../etc/passwd", "a/b", "/abs", "./x", ".hidden", "..data", "..2026_01_01",
	"etc", "bin", "proc", "sys", "dev", "tmp", "usr", "var", "root", "run", "lib64", "sbin",
	"open-horizon-secrets", ".dockerenv", "lost+found", strings.Repeat("a", 256),
	"a b", "a\x00b", "a\nb", "a\tb", "a\\b", "db:1", "db*", "~db", "$db", "db;rm", "%2e%2e", "db?", "db\r",
	"dé", "dв_password", "рassword", "ｄｂ", "db\u200b", "\u202edb", "db\ufeff", "ᴅb",
}

// nodeSide is an agbot and a node that pinned each other's keys, plus strangers.
type nodeSide struct {
	agbot, node, other, evil *party
	ep                       *protocol.Endpoint
	tracker                  *protocol.Tracker
	agreement                string
}

func newNodeSide(t *testing.T) *nodeSide {
	s := &nodeSide{agbot: newParty(t, "agbot@reliability"), node: newParty(t, "myorg/node1"),
		other: newParty(t, "myorg/node2"), evil: newParty(t, "agbot@reliability"), agreement: "0123456789abcdef0123456789abcdef"}
	s.ep = &protocol.Endpoint{ID: s.node.id, Keys: s.node.keys, Peers: protocol.StaticKeyRing{s.agbot.id: s.agbot.keys.Public()}, Agreements: &protocol.AgreementKeyMap{}}
	s.tracker = protocol.NewTracker(protocol.TrackerOptions{})
	return s
}

func (s *nodeSide) meta(t protocol.MessageType, ag string, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: ag, From: s.agbot.id, To: s.node.id, Seq: seq, Time: time.Now().UTC()}
}

func (s *nodeSide) proposal(ag string) *protocol.Proposal {
	return &protocol.Proposal{
		Meta: s.meta(protocol.TypeProposal, ag, 1),
		Service: protocol.Service{Org: "myorg", URL: "reader", Version: "1.0.0", Arch: "amd64",
			Deployment: protocol.Deployment{Services: map[string]protocol.Container{"web": {
				Image: "localhost/reader:1", User: "1000:1000",
				Secrets: map[string]protocol.SecretDecl{"db_password": {}, "api_token": {Format: protocol.FormatValueOnly}},
			}}}},
		Secrets: map[string]protocol.SecretValue{"db_password": {Key: "k", Value: canaryDB}, "api_token": {Key: "t", Value: canaryTok}},
	}
}

func (s *nodeSide) update(ag string, seq uint64) *protocol.Update {
	return &protocol.Update{Meta: s.meta(protocol.TypeUpdate, ag, seq), Secrets: map[string]protocol.ChangedSecret{
		"db_password": {SecretValue: protocol.SecretValue{Key: "k", Value: fmt.Sprintf("%s-v%d", canaryDB, seq)}, Reason: protocol.ReasonValueUpdated},
	}}
}

// asMap and fromMap let a case change any field of a message's JSON.
func asMap(t testing.TB, m protocol.Message) map[string]any {
	t.Helper()
	raw, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func toJSON(t testing.TB, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// state is what a hostile message must not change on the node: the tracker's view of the
// live agreement and of every id the corpus uses.
func (s *nodeSide) state(ids []string) string {
	var b strings.Builder
	for _, id := range ids {
		seq, ok := s.tracker.LastSeq(id)
		fmt.Fprintf(&b, "%s=%d/%v ", id, seq, ok)
	}
	return b.String()
}

type hostileMsg struct {
	name    string
	env     []byte
	want    error  // the sentinel the refusal wraps
	mention string // a word of the rule the error must name ("" to skip)
}

func rawEnvelope(header string, enc, ct []byte) []byte {
	return []byte(fmt.Sprintf(`{"header":%s,"enc":%q,"ct":%q}`, header,
		base64.StdEncoding.EncodeToString(enc), base64.StdEncoding.EncodeToString(ct)))
}

// TestHostileEnvelopes: crafted envelopes and messages against the node's side of the
// protocol (Endpoint.Open, then the replay Tracker, as the agent runs them). Each must be
// refused with the sentinel of its rule and an error that names the rule and repeats no
// secret value, and must leave the tracker as it was; a valid update still applies after.
func TestHostileEnvelopes(t *testing.T) {
	s := newNodeSide(t)
	ag := s.agreement
	valid := func(m protocol.Message) []byte {
		return forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, m))}.seal(t)
	}

	// The live agreement: proposal (seq 1), updates 2 and 3 applied.
	for _, m := range []protocol.Message{s.proposal(ag), s.update(ag, 2), s.update(ag, 3)} {
		got, err := s.ep.Open(valid(m))
		if err != nil {
			t.Fatalf("control: a forged valid %s does not open (the forger is wrong): %v", m.Head().Type, err)
		}
		if err := s.tracker.Commit(got); err != nil {
			t.Fatalf("control: commit %s: %v", m.Head().Type, err)
		}
	}
	u2 := valid(s.update(ag, 2))
	u3 := valid(s.update(ag, 3))
	goodHdr := func() protocol.Header {
		pub := s.node.keys.Public()
		return protocol.Header{Version: 1, Type: protocol.TypeUpdate, From: s.agbot.id, To: s.node.id,
			SenderKey: keyID(s.agbot.keys.Public().Signing), RecipientKey: keyID(pub.MLKEM768X25519),
			KEM: protocol.KEMMLKEM768X25519, AEAD: protocol.AEADChaCha20Poly1305}
	}
	withHdr := func(f func(*protocol.Header)) []byte {
		h := goodHdr()
		f(&h)
		return forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, s.update(ag, 4))), header: &h}.seal(t)
	}
	body := func(f func(map[string]any)) []byte {
		m := asMap(t, s.update(ag, 4))
		f(m)
		return forge{from: s.agbot, to: s.node, body: toJSON(t, m)}.seal(t)
	}
	prop := func(ag string, f func(p *protocol.Proposal, m map[string]any)) []byte {
		p := s.proposal(ag)
		m := asMap(t, p)
		f(p, m)
		if m == nil {
			m = asMap(t, p)
		}
		return forge{from: s.agbot, to: s.node, body: toJSON(t, m)}.seal(t)
	}
	var env map[string]json.RawMessage
	_ = json.Unmarshal(u2, &env)
	hdrText := string(env["header"])
	var encB, ctB []byte
	_ = json.Unmarshal(env["enc"], &encB)
	_ = json.Unmarshal(env["ct"], &ctB)
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i%len(c)] ^= 0x40; return c }

	cases := []hostileMsg{
		// 1. Not an envelope.
		{"empty", []byte{}, protocol.ErrMalformed, ""},
		{"null", []byte("null"), protocol.ErrMalformed, ""},
		{"array", []byte("[]"), protocol.ErrMalformed, ""},
		{"empty object", []byte("{}"), protocol.ErrMalformed, "header"},
		{"string", []byte(`"x"`), protocol.ErrMalformed, ""},
		{"number overflow", []byte("1e999"), protocol.ErrMalformed, ""},
		{"truncated", u2[:len(u2)/2], protocol.ErrMalformed, ""},
		{"trailing garbage", append(append([]byte(nil), u2...), []byte(" {}")...), protocol.ErrMalformed, ""},
		{"byte order mark", append([]byte("\ufeff"), u2...), protocol.ErrMalformed, ""},
		{"missing ct", []byte(fmt.Sprintf(`{"header":%s,"enc":"AAAA"}`, hdrText)), protocol.ErrMalformed, "ct"},
		{"extra field", []byte(fmt.Sprintf(`{"header":%s,"enc":"AAAA","ct":"AAAA","x":1}`, hdrText)), protocol.ErrMalformed, ""},
		{"duplicate field", []byte(fmt.Sprintf(`{"header":%s,"header":%s,"enc":"AAAA","ct":"AAAA"}`, hdrText, hdrText)), protocol.ErrMalformed, ""},
		{"field name case", []byte(fmt.Sprintf(`{"Header":%s,"enc":"AAAA","ct":"AAAA"}`, hdrText)), protocol.ErrMalformed, ""},
		{"enc not base64", []byte(fmt.Sprintf(`{"header":%s,"enc":"!!!","ct":"AAAA"}`, hdrText)), protocol.ErrMalformed, "enc"},
		{"ct base64url", []byte(fmt.Sprintf(`{"header":%s,"enc":"AAAA","ct":"-_-_"}`, hdrText)), protocol.ErrMalformed, "ct"},
		{"ct padding bits", []byte(fmt.Sprintf(`{"header":%s,"enc":"AAAA","ct":"AB=="}`, hdrText)), protocol.ErrMalformed, "ct"},
		{"enc a number", []byte(fmt.Sprintf(`{"header":%s,"enc":5,"ct":"AAAA"}`, hdrText)), protocol.ErrMalformed, "enc"},
		{"header a string", rawEnvelope(`"x"`, encB, ctB), protocol.ErrMalformed, "header"},
		{"header unknown field", rawEnvelope(strings.Replace(hdrText, `{`, `{"x":1,`, 1), encB, ctB), protocol.ErrMalformed, ""},
		{"header duplicate key", rawEnvelope(strings.Replace(hdrText, `{`, `{"to":"myorg/node1",`, 1), encB, ctB), protocol.ErrMalformed, ""},
		// Field names are matched exactly (encoding/json matched them case-insensitively and
		// left it to the AAD): refused before any decryption.
		{"header key case", rawEnvelope(strings.Replace(hdrText, `"to"`, `"To"`, 1), encB, ctB), protocol.ErrMalformed, `unknown field "To"`},
		{"header field null", rawEnvelope(strings.Replace(hdrText, `"v":1`, `"v":1,"agreement":null`, 1), encB, ctB), protocol.ErrMalformed, "field agreement: must be a string"},
		{"escaped base64", []byte(strings.Replace(string(rawEnvelope(hdrText, encB, ctB)), `"ct":"`, `"ct":"\u0041`, 1)), protocol.ErrMalformed, "ct is not strict base64"},
		{"deeply nested", []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)), protocol.ErrMalformed, ""},
		{"deeply nested header", rawEnvelope(`{"v":`+strings.Repeat(`[`, 50000)+strings.Repeat(`]`, 50000)+`}`, encB, ctB), protocol.ErrMalformed, ""},
		{"over 1 MiB", append(append([]byte(`{"header":`+hdrText+`,"enc":"AAAA","ct":"`), []byte(strings.Repeat("A", 1<<20))...), '"', '}'), protocol.ErrTooLarge, "limit"},
		{"huge number", rawEnvelope(strings.Replace(hdrText, `"v":1`, `"v":1`+strings.Repeat("0", 5000), 1), encB, ctB), protocol.ErrMalformed, ""},

		// 2. Header rules.
		{"version 0", withHdr(func(h *protocol.Header) { h.Version = 0 }), protocol.ErrUnsupported, "version"},
		{"version 2", withHdr(func(h *protocol.Header) { h.Version = 2 }), protocol.ErrUnsupported, "version"},
		{"unknown KEM", withHdr(func(h *protocol.Header) { h.KEM = "x448" }), protocol.ErrUnsupported, "KEM"},
		{"empty KEM", withHdr(func(h *protocol.Header) { h.KEM = "" }), protocol.ErrUnsupported, "KEM"},
		{"unknown AEAD", withHdr(func(h *protocol.Header) { h.AEAD = "aes128gcm" }), protocol.ErrUnsupported, "AEAD"},
		{"wrong recipient", forge{from: s.agbot, to: s.other, body: toJSON(t, asMap(t, s.update(ag, 4)))}.seal(t), protocol.ErrWrongRecipient, "addressed to"},
		{"to another node in header, sealed to this one", withHdr(func(h *protocol.Header) { h.To = s.other.id }), protocol.ErrWrongRecipient, "addressed to"},
		{"recipient key of another node", withHdr(func(h *protocol.Header) { h.RecipientKey = keyID(s.other.keys.Public().MLKEM768X25519) }), protocol.ErrWrongRecipient, "key"},
		{"classic KEM key id for hybrid", withHdr(func(h *protocol.Header) { h.KEM = protocol.KEMX25519 }), protocol.ErrWrongRecipient, "key"},
		{"unknown sender", forge{from: newParty(t, "agbot@elsewhere"), to: s.node, body: toJSON(t, asMap(t, s.update(ag, 4)))}.seal(t), protocol.ErrUnknownSender, "agbot@elsewhere"},
		{"sender key not pinned (same id, other key)", forge{from: s.evil, to: s.node, body: toJSON(t, asMap(t, s.update(ag, 4)))}.seal(t), protocol.ErrUnknownSender, "pinned"},
		{"empty sender", withHdr(func(h *protocol.Header) { h.From = "" }), protocol.ErrUnknownSender, ""},

		// 3. Cryptography.
		{"signed by another key under the pinned key id", forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, s.update(ag, 4))), signWith: s.evil.sign}.seal(t), protocol.ErrBadSignature, ""},
		{"signature over another body", forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, s.update(ag, 4))), signedBody: toJSON(t, asMap(t, s.update(ag, 5)))}.seal(t), protocol.ErrBadSignature, ""},
		{"ciphertext flipped (first byte)", rawEnvelope(hdrText, encB, flip(ctB, 0)), protocol.ErrDecrypt, ""},
		{"ciphertext flipped (signature)", rawEnvelope(hdrText, encB, flip(ctB, 40)), protocol.ErrDecrypt, ""},
		{"ciphertext flipped (last byte)", rawEnvelope(hdrText, encB, flip(ctB, len(ctB)-1)), protocol.ErrDecrypt, ""},
		{"ciphertext truncated", rawEnvelope(hdrText, encB, ctB[:len(ctB)-17]), protocol.ErrDecrypt, ""},
		{"ciphertext empty", rawEnvelope(hdrText, encB, nil), protocol.ErrDecrypt, ""},
		{"enc flipped", rawEnvelope(hdrText, flip(encB, 7), ctB), protocol.ErrDecrypt, ""},
		{"enc truncated", rawEnvelope(hdrText, encB[:32], ctB), protocol.ErrDecrypt, ""},
		{"header re-typed after sealing", rawEnvelope(strings.Replace(hdrText, `"update"`, `"cancel"`, 1), encB, ctB), protocol.ErrDecrypt, ""},
		{"header re-spaced after sealing", rawEnvelope(strings.Replace(hdrText, `{`, `{ `, 1), encB, ctB), protocol.ErrDecrypt, ""},
		{"header of a classic-KEM envelope", rawEnvelope(string(mustField(t, forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, s.update(ag, 2))), classic: true}.seal(t), "header")), encB, ctB), protocol.ErrUnsupported, "both registered"},
		{"plaintext shorter than a signature", forge{from: s.agbot, to: s.node, body: nil, mutate: shortPlaintext(t, s)}.seal(t), protocol.ErrBadSignature, "shorter"},
		{"header says update, message is a cancel", withHdr(func(h *protocol.Header) {}), nil, ""}, // replaced below
		{"message from another sender than header", body(func(m map[string]any) { m["from"] = "agbot@elsewhere" }), protocol.ErrHeaderMismatch, ""},
		{"message to another node than header", body(func(m map[string]any) { m["to"] = s.other.id }), protocol.ErrHeaderMismatch, ""},

		// 4. Message shape (signed by the pinned agbot key: a buggy or compromised agbot).
		{"message not JSON", forge{from: s.agbot, to: s.node, body: []byte("not json")}.seal(t), protocol.ErrMalformed, ""},
		{"message unknown field", body(func(m map[string]any) { m["extra"] = true }), protocol.ErrMalformed, "extra"},
		{"message seq a string", body(func(m map[string]any) { m["seq"] = "3" }), protocol.ErrMalformed, ""},
		{"message seq negative", body(func(m map[string]any) { m["seq"] = -1 }), protocol.ErrMalformed, ""},
		{"message seq 2^70", body(func(m map[string]any) { m["seq"] = json.Number("1180591620717411303424") }), protocol.ErrMalformed, ""},
		{"message seq 0", body(func(m map[string]any) { m["seq"] = 0 }), protocol.ErrInvalid, "seq"},
		{"message version 2", body(func(m map[string]any) { m["version"] = 2 }), nil, "version"},
		{"message without agreement id", body(func(m map[string]any) { delete(m, "agreementId") }), nil, "agreement"},
		{"agreement id path-like", body(func(m map[string]any) { m["agreementId"] = "../../etc" }), protocol.ErrInvalid, "agreement"},
		{"agreement id 300 bytes", body(func(m map[string]any) { m["agreementId"] = strings.Repeat("a", 300) }), protocol.ErrInvalid, "agreement"},
		{"agreement id with newline", body(func(m map[string]any) { m["agreementId"] = "a\nb" }), protocol.ErrInvalid, "agreement"},
		{"time missing", body(func(m map[string]any) { delete(m, "time") }), nil, "time"},
		{"time not a time", body(func(m map[string]any) { m["time"] = "yesterday" }), protocol.ErrMalformed, ""},
		{"secrets null", body(func(m map[string]any) { m["secrets"] = nil }), protocol.ErrInvalid, "secrets"},
		{"secrets empty", body(func(m map[string]any) { m["secrets"] = map[string]any{} }), protocol.ErrInvalid, "secrets"},
		{"secret value an object", body(func(m map[string]any) {
			m["secrets"] = map[string]any{"db_password": map[string]any{"key": "k", "value": map[string]any{"nested": canaryDB}, "reason": "value_updated"}}
		}), protocol.ErrMalformed, ""},
		{"secret value nested 10000 deep", body(func(m map[string]any) {
			m["secrets"] = map[string]any{"db_password": map[string]any{"key": "k", "value": json.RawMessage(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), "reason": "value_updated"}}
		}), protocol.ErrMalformed, ""},
		{"secret value over 64 KiB", body(func(m map[string]any) {
			m["secrets"] = map[string]any{"db_password": map[string]any{"key": "k", "value": canaryDB + strings.Repeat("x", 64<<10), "reason": "value_updated"}}
		}), protocol.ErrTooLarge, "limit"},
		{"129 secrets", body(func(m map[string]any) {
			sec := map[string]any{}
			for i := range 129 {
				sec[fmt.Sprintf("s%03d", i)] = map[string]any{"key": "k", "value": canaryDB, "reason": "value_updated"}
			}
			m["secrets"] = sec
		}), protocol.ErrInvalid, "128"},
		{"update reason unknown", body(func(m map[string]any) {
			m["secrets"] = map[string]any{"db_password": map[string]any{"key": "k", "value": canaryDB, "reason": "because"}}
		}), protocol.ErrInvalid, "reason"},
		{"duplicate key in message", forge{from: s.agbot, to: s.node, body: []byte(strings.Replace(string(toJSON(t, asMap(t, s.update(ag, 4)))), `"seq":4`, `"seq":4,"seq":9`, 1))}.seal(t), protocol.ErrMalformed, "seq"},
		{"proposal image with newline", prop("1000000000000000000000000000000a", func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.Image = "reader\nFROM evil"
			p.Service.Deployment.Services["web"] = c
			for k := range m {
				delete(m, k)
			}
			for k, v := range asMap(t, p) {
				m[k] = v
			}
		}), protocol.ErrInvalid, "image"},
		{"proposal onUpdate exec", prop("1000000000000000000000000000000b", func(p *protocol.Proposal, m map[string]any) {
			setDecl(t, p, m, "db_password", protocol.SecretDecl{OnUpdate: "exec:/bin/sh"})
		}), protocol.ErrInvalid, "onUpdate"},
		{"proposal onUpdate SIGKILL", prop("1000000000000000000000000000000c", func(p *protocol.Proposal, m map[string]any) {
			setDecl(t, p, m, "db_password", protocol.SecretDecl{OnUpdate: "signal:SIGKILL"})
		}), protocol.ErrInvalid, "onUpdate"},
		{"proposal format yaml", prop("1000000000000000000000000000000d", func(p *protocol.Proposal, m map[string]any) {
			setDecl(t, p, m, "db_password", protocol.SecretDecl{Format: "yaml"})
		}), protocol.ErrInvalid, "format"},
		{"proposal value for an undeclared secret", prop("1000000000000000000000000000000e", func(p *protocol.Proposal, m map[string]any) {
			p.Secrets["extra"] = protocol.SecretValue{Key: "k", Value: canaryDB}
			replace(t, m, p)
		}), protocol.ErrInvalid, "extra"},
		{"proposal declared secret without value", prop("1000000000000000000000000000000f", func(p *protocol.Proposal, m map[string]any) {
			delete(p.Secrets, "api_token")
			replace(t, m, p)
		}), protocol.ErrInvalid, "api_token"},
		{"proposal cap_add ALL", prop("10000000000000000000000000000010", func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.CapAdd = []string{"ALL"}
			p.Service.Deployment.Services["web"] = c
			replace(t, m, p)
		}), protocol.ErrInvalid, "cap_add"},
		{"proposal max_memory_mb 1", prop("10000000000000000000000000000011", func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.MaxMemoryMB = 1
			p.Service.Deployment.Services["web"] = c
			replace(t, m, p)
		}), protocol.ErrInvalid, "max_memory_mb"},
		{"proposal bind with a relative source", prop("10000000000000000000000000000012", func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.Binds = []string{"../../etc:/x"}
			p.Service.Deployment.Services["web"] = c
			replace(t, m, p)
		}), protocol.ErrInvalid, "binds[0]"},
		{"proposal device outside /dev", prop("10000000000000000000000000000013", func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.Devices = []string{"/etc/shadow:/dev/x"}
			p.Service.Deployment.Services["web"] = c
			replace(t, m, p)
		}), protocol.ErrInvalid, "devices[0]"},
		{"proposal pid namespace", prop("10000000000000000000000000000014", func(p *protocol.Proposal, m map[string]any) {
			svc := m["service"].(map[string]any)
			web := svc["deployment"].(map[string]any)["services"].(map[string]any)["web"].(map[string]any)
			web["pid"] = "host"
		}), protocol.ErrMalformed, "pid"},
		{"proposal nested required services", prop("10000000000000000000000000000015", func(p *protocol.Proposal, m map[string]any) {
			dep := p.Service
			dep.URL, dep.RequiredServices = "dep", []protocol.Service{{Org: "o", URL: "x", Version: "1.0.0", Arch: p.Service.Arch}}
			dep.Deployment = protocol.Deployment{Services: map[string]protocol.Container{"dep": {Image: "i:1"}}}
			p.Service.RequiredServices = []protocol.Service{dep}
			replace(t, m, p)
		}), protocol.ErrInvalid, "requiredServices"},
		{"proposal user input replacing a platform variable", prop("10000000000000000000000000000016", func(p *protocol.Proposal, m map[string]any) {
			p.Service.UserInput = []protocol.InputVar{{Name: "HZN_AGREEMENTID", Value: "forged", Set: true}}
			replace(t, m, p)
		}), protocol.ErrInvalid, "HZN_AGREEMENTID"},
		{"proposal property with an object value", prop("10000000000000000000000000000017", func(p *protocol.Proposal, m map[string]any) {
			m["properties"] = []any{map[string]any{"name": "a", "value": map[string]any{"x": 1}}}
		}), protocol.ErrInvalid, "properties[0].value"},

		// 5. Replay and order (authentic messages).
		{"proposal replayed", valid(s.proposal(ag)), protocol.ErrKnownAgreement, ""},
		{"update replayed (acknowledged again, nothing applied)", u3, protocol.ErrDuplicate, ""},
		{"stale update", u2, protocol.ErrStale, ""},
		{"update seq 1 (below any update)", valid(s.update(ag, 1)), protocol.ErrInvalid, "seq"},
		{"update for an unknown agreement", valid(s.update("ffffffffffffffffffffffffffffffff", 2)), protocol.ErrUnknownAgreement, ""},
		{"cancel for an unknown agreement", valid(&protocol.Cancel{Meta: s.meta(protocol.TypeCancel, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", 2), Reason: "x"}), protocol.ErrUnknownAgreement, ""},
		{"expired proposal", valid(func() protocol.Message {
			p := s.proposal("dddddddddddddddddddddddddddddddd")
			p.Time = time.Now().Add(-48 * time.Hour)
			return p
		}()), protocol.ErrExpired, ""},
		{"proposal from the future", valid(func() protocol.Message {
			p := s.proposal("cccccccccccccccccccccccccccccccc")
			p.Time = time.Now().Add(48 * time.Hour)
			return p
		}()), protocol.ErrExpired, ""},
	}
	// The header/type mismatch case: a cancel body in an envelope whose header says update.
	for i := range cases {
		if strings.HasPrefix(cases[i].name, "header says update") {
			h := goodHdr()
			c := &protocol.Cancel{Meta: s.meta(protocol.TypeCancel, ag, 3), Reason: "x"}
			cases[i].env = forge{from: s.agbot, to: s.node, body: toJSON(t, asMap(t, c)), header: &h}.seal(t)
			cases[i].want = protocol.ErrHeaderMismatch
		}
	}
	// Bad secret names, in a proposal's declaration and in an update.
	for i, n := range badSecretNames {
		id := fmt.Sprintf("%032x", 0xa000+i)
		cases = append(cases, hostileMsg{fmt.Sprintf("proposal declares %q", n), prop(id, func(p *protocol.Proposal, m map[string]any) {
			c := p.Service.Deployment.Services["web"]
			c.Secrets[n] = protocol.SecretDecl{}
			p.Secrets[n] = protocol.SecretValue{Key: "k", Value: canaryDB}
			replace(t, m, p)
		}), protocol.ErrInvalid, "secret"})
		cases = append(cases, hostileMsg{fmt.Sprintf("update names %q", n), body(func(m map[string]any) {
			m["secrets"] = map[string]any{n: map[string]any{"key": "k", "value": canaryDB, "reason": "value_updated"}}
		}), protocol.ErrInvalid, "secret"})
	}

	ids := []string{ag}
	for i := range 0x40 {
		ids = append(ids, fmt.Sprintf("%032x", 0xa000+i))
	}
	ids = append(ids, "ffffffffffffffffffffffffffffffff", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "dddddddddddddddddddddddddddddddd",
		"cccccccccccccccccccccccccccccccc", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
	before := s.state(ids)
	if seq, ok := s.tracker.LastSeq(ag); !ok || seq != 3 {
		t.Fatalf("control: the live agreement is at %d (%v), want 3", seq, ok)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			m, err := s.ep.Open(c.env)
			if err == nil {
				err = s.tracker.Check(m)
			}
			switch {
			case err == nil:
				t.Fatalf("accepted")
			case c.want != nil && !errors.Is(err, c.want):
				t.Errorf("refused with %v, want an error wrapping %q", err, c.want)
			case c.want == nil && !wrapsAny(err):
				t.Errorf("refused with %v, which wraps no protocol sentinel", err)
			}
			if c.mention != "" && !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.mention)) {
				t.Errorf("error %q does not name %q", err, c.mention)
			}
			if strings.Contains(err.Error(), "CANARY-") {
				t.Errorf("the error repeats a secret value: %q", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refusing it took %v", d)
			}
			if after := s.state(ids); after != before {
				t.Errorf("the tracker changed:\n  before %s\n  after  %s", before, after)
			}
		})
	}
	t.Logf("%d hostile messages refused", len(cases))
	if len(cases) < 120 {
		t.Errorf("the node-side corpus has %d cases, want at least 120", len(cases))
	}

	// Still serving: the next update applies.
	m, err := s.ep.Open(valid(s.update(ag, 4)))
	if err == nil {
		err = s.tracker.Commit(m)
	}
	if err != nil {
		t.Fatalf("after the corpus a valid update is refused: %v", err)
	}
	if seq, _ := s.tracker.LastSeq(ag); seq != 4 {
		t.Errorf("after the corpus the agreement is at %d, want 4", seq)
	}
}

func wrapsAny(err error) bool {
	for _, s := range []error{protocol.ErrInvalid, protocol.ErrMalformed, protocol.ErrTooLarge, protocol.ErrUnsupported,
		protocol.ErrWrongRecipient, protocol.ErrUnknownSender, protocol.ErrDecrypt, protocol.ErrBadSignature,
		protocol.ErrHeaderMismatch, protocol.ErrReplay, protocol.ErrDuplicate, protocol.ErrUnknownAgreement, protocol.ErrExpired} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func mustField(t testing.TB, env []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(env, &m); err != nil {
		t.Fatal(err)
	}
	return m[name]
}

// replace makes m the JSON of p.
func replace(t testing.TB, m map[string]any, p protocol.Message) {
	for k := range m {
		delete(m, k)
	}
	for k, v := range asMap(t, p) {
		m[k] = v
	}
}

func setDecl(t testing.TB, p *protocol.Proposal, m map[string]any, name string, d protocol.SecretDecl) {
	c := p.Service.Deployment.Services["web"]
	c.Secrets[name] = d
	p.Service.Deployment.Services["web"] = c
	replace(t, m, p)
}

// shortPlaintext re-seals a 10-byte plaintext under the same header, so the envelope
// decrypts but holds less than a signature.
func shortPlaintext(t testing.TB, s *nodeSide) func(hdr, enc, ct []byte) ([]byte, []byte, []byte) {
	return func(hdr, _, _ []byte) ([]byte, []byte, []byte) {
		return resealRaw(t, s.node, hdr, []byte("0123456789"))
	}
}
