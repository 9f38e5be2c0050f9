package e2e

import (
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
)

// fakeAgbot speaks the agbot's node endpoints (package agbot documents them) so a test can
// hand a real agent messages a real agbot never sends: forged, misaddressed, malformed,
// oversized, replayed, stale.
type fakeAgbot struct {
	t    *testing.T
	srv  *httptest.Server
	id   string
	keys *protocol.PrivateKeys
	ca   string

	mu      sync.Mutex
	ep      *protocol.Endpoint // to the node, once it registered
	node    string             // org/node
	queue   []queuedMsg
	next    uint64
	replies []protocol.Message
	wake    chan struct{}
}

type queuedMsg struct {
	ID        uint64 `json:"id"`
	Agreement string `json:"agreementId"`
	Type      string `json:"type"`
	Seq       uint64 `json:"seq"`
	Envelope  []byte `json:"envelope"`
}

func newFakeAgbot(t *testing.T, dir string) *fakeAgbot {
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgbot{t: t, id: "fake-agbot", keys: keys, wake: make(chan struct{})}
	mux := http.NewServeMux()
	info := func(w http.ResponseWriter) {
		pub := keys.Public()
		json.NewEncoder(w).Encode(map[string]any{"agbotId": f.id, "publicKeys": pub, "fingerprint": pub.Fingerprint()})
	}
	mux.HandleFunc("GET /agbot", func(w http.ResponseWriter, r *http.Request) { info(w) })
	mux.HandleFunc("PUT /org/{org}/nodes/{node}/registration", func(w http.ResponseWriter, r *http.Request) {
		var reg struct {
			PublicKeys *protocol.PublicKeys `json:"publicKeys"`
		}
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil || reg.PublicKeys == nil {
			http.Error(w, `{"error":"bad registration"}`, 400)
			return
		}
		f.mu.Lock()
		f.node = r.PathValue("org") + "/" + r.PathValue("node")
		f.ep = &protocol.Endpoint{ID: f.id, Keys: keys, Peers: protocol.StaticKeyRing{f.node: reg.PublicKeys}}
		f.mu.Unlock()
		info(w)
	})
	mux.HandleFunc("GET /org/{org}/nodes/{node}/msgs", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
		deadline := time.After(time.Second)
		for {
			f.mu.Lock()
			var out []queuedMsg
			for _, m := range f.queue {
				if m.ID > after {
					out = append(out, m)
				}
			}
			wake := f.wake
			f.mu.Unlock()
			if len(out) > 0 {
				json.NewEncoder(w).Encode(map[string]any{"messages": out})
				return
			}
			select {
			case <-wake:
			case <-deadline:
				json.NewEncoder(w).Encode(map[string]any{"messages": []queuedMsg{}})
				return
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /org/{org}/nodes/{node}/msgs", func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 2<<20)
		n, _ := readFull(r, body)
		f.mu.Lock()
		ep := f.ep
		f.mu.Unlock()
		m, err := ep.Open(body[:n])
		if err != nil {
			t.Errorf("fake agbot: the agent posted a message that does not open: %v", err)
			http.Error(w, `{"error":"bad"}`, 400)
			return
		}
		f.mu.Lock()
		f.replies = append(f.replies, m)
		f.mu.Unlock()
		w.WriteHeader(204)
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	f.ca = filepath.Join(dir, "fake-agbot-ca.pem")
	if err := os.WriteFile(f.ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func readFull(r *http.Request, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Body.Read(buf[n:])
		n += m
		if err != nil {
			return n, nil
		}
	}
	return n, nil
}

// push queues an envelope for the node.
func (f *fakeAgbot) push(agreement, typ string, seq uint64, envelope []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.queue = append(f.queue, queuedMsg{ID: f.next, Agreement: agreement, Type: typ, Seq: seq, Envelope: envelope})
	close(f.wake)
	f.wake = make(chan struct{})
}

// seal seals m with the fake agbot's own keys to the node.
func (f *fakeAgbot) seal(m protocol.Message) []byte {
	f.t.Helper()
	f.mu.Lock()
	ep := f.ep
	f.mu.Unlock()
	env, err := ep.Seal(m)
	if err != nil {
		f.t.Fatal(err)
	}
	return env
}

// reply waits for the node's reply to agreement at seq.
func (f *fakeAgbot) reply(agreement string, seq uint64, timeout time.Duration) (protocol.Message, error) {
	var got protocol.Message
	err := Eventually(f.t.Context(), timeout, 20*time.Millisecond, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, m := range f.replies {
			if m.Head().Agreement == agreement && m.Head().Seq == seq {
				got = m
				return nil
			}
		}
		return fmt.Errorf("no reply for %s seq %d", agreement, seq)
	})
	return got, err
}

func (f *fakeAgbot) replyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.replies)
}

// testHostile feeds a real agent hostile messages and hostile local API requests: each is
// refused with a clear log line or reply, changes nothing, and the agent keeps serving; a
// good proposal and update afterwards work.
func testHostile(t *testing.T, s *suite) {
	e := s.newEnv(t, "hostile", nil) // its agbot is unused; the fake one talks to the agent
	f := newFakeAgbot(t, e.dir)
	a, err := NewAgent(s.bin, e.dir, "node1", e.agbot, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	a.Config.AgbotCA = f.ca
	a.Config.AgbotFingerprint = ""
	if err := a.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.roots = append(s.roots, a.Config.SecretsRoot, a.Config.ESSDir())
	s.mu.Unlock()
	t.Cleanup(func() {
		if a.Proc() != nil {
			a.Stop()
		}
		RemoveContainersOf(e.ctx, s.docker, a.ID())
		a.UnmountRoots()
	})
	if err := a.Start(e.ctx); err != nil {
		t.Fatal(err)
	}

	// 1. Hostile local API requests: refused with the field named, nothing changes.
	for _, tc := range []struct {
		name, method, path, body, want string
		code                           int
	}{
		{"unknown field", "POST", "/node", `{"node":"n1","token":"t","tokn":"x"}`, `unknown field "tokn"`, 400},
		{"node with a slash", "POST", "/node", `{"node":"a/b","token":"t"}`, "node", 400},
		{"empty token", "POST", "/node", `{"node":"n1","token":""}`, "token", 400},
		{"control character in token", "POST", "/node", `{"node":"n1","token":"a\u0000b"}`, "token", 400},
		{"bad constraint", "POST", "/node", `{"node":"n1","token":"t","policy":{"properties":[],"constraints":["zone =="]}}`, "constraints", 400},
		{"duplicate property", "POST", "/node", `{"node":"n1","token":"t","policy":{"properties":[{"name":"a","value":1},{"name":"a","value":2}]}}`, "listed twice", 400},
		{"other org", "POST", "/node", `{"org":"other","node":"n1","token":"t"}`, "configured for org", 400},
		{"not JSON", "POST", "/node", `{"node":`, "body", 400},
		{"too large", "POST", "/node", `{"node":"` + strings.Repeat("x", 2<<20) + `"}`, "1 MiB", 400},
		{"unregister when not registered", "DELETE", "/node", ``, "not registered", 404},
		{"unknown agreement", "GET", "/agreement/nope", ``, "not found", 404},
	} {
		code, raw, err := a.Local(tc.method, tc.path, []byte(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var answer struct {
			Error string `json:"error"`
		}
		body := raw
		if json.Unmarshal([]byte(raw), &answer) == nil && answer.Error != "" {
			body = answer.Error
		}
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: got %d %s, want %d naming %q", tc.name, code, strings.TrimSpace(body), tc.code, tc.want)
		}
	}
	if st, err := a.Status(); err != nil || st.Registered {
		t.Fatalf("after hostile requests: registered %v, %v", st.Registered, err)
	}

	// 2. An agent told to expect another agbot key refuses to register, and keeps nothing.
	pinned, err := NewAgent(s.bin, e.dir, "pinned", e.agbot, f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	pinned.Config.AgbotCA, pinned.Config.AgbotFingerprint = f.ca, e.agbot.Fingerprint // the real agbot's, not the fake's
	if err := pinned.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.roots = append(s.roots, pinned.Config.SecretsRoot)
	s.mu.Unlock()
	t.Cleanup(func() {
		if pinned.Proc() != nil {
			pinned.Stop()
		}
		pinned.UnmountRoots() // the stores and the ESS API's tmpfs
	})
	if err := pinned.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pinned.Hzn(e.ctx, "register", "-n", "node2:tok2"); err == nil || !strings.Contains(err.Error(), "--agbot-fingerprint") {
		t.Errorf("register with an unexpected agbot key: %v, want a refusal naming --agbot-fingerprint", err)
	}
	if _, err := os.Stat(filepath.Join(pinned.Config.StateDir, "registration.json")); err == nil {
		t.Error("a refused registration was remembered")
	}
	if err := pinned.Stop(); err != nil {
		t.Error(err)
	}

	// 3. Register with the fake agbot (its key pinned at registration).
	e.register(a, "node1", "tok1")
	node := org + "/node1"
	svc := protocol.Service{Org: org, URL: "reader", Version: "1.0.0", Arch: arch.Node(), Deployment: protocol.Deployment{
		Services: map[string]protocol.Container{"main": {Image: s.image, Secrets: map[string]protocol.SecretDecl{
			"db_password": {}, "api_token": {Format: "value_only"}}}}}}
	v1, tok := s.canaries.Next("hostile-db-v1"), s.canaries.Next("hostile-token")
	proposal := func(id string, seq uint64, svc protocol.Service, secrets map[string]protocol.SecretValue) *protocol.Proposal {
		return &protocol.Proposal{Meta: protocol.NewMeta(protocol.TypeProposal, id, f.id, node, seq), Service: svc, Secrets: secrets}
	}
	good := map[string]protocol.SecretValue{"db_password": {Key: "db", Value: v1}, "api_token": {Key: "tok", Value: tok}}

	// 4. Messages that must not open: each refused with a log line, no reply, nothing made.
	evilKeys, _ := protocol.GenerateKeys()
	otherNode, _ := protocol.GenerateKeys()
	f.mu.Lock()
	nodeKeys, _ := f.ep.Peers.PeerKeys(node)
	f.mu.Unlock()
	forged := &protocol.Endpoint{ID: f.id, Keys: evilKeys, Peers: protocol.StaticKeyRing{node: nodeKeys}}
	misaddressed := &protocol.Endpoint{ID: f.id, Keys: f.keys, Peers: protocol.StaticKeyRing{node: otherNode.Public()}}
	sealWith := func(ep *protocol.Endpoint, m protocol.Message) []byte {
		env, err := ep.Seal(m)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	huge := svc
	huge.Deployment = protocol.Deployment{Services: map[string]protocol.Container{"main": {Image: s.image,
		Environment: []string{"PAD=" + strings.Repeat("p", 1<<20)}, Secrets: svc.Deployment.Services["main"].Secrets}}}
	hugeBody, err := protocol.Encode(proposal("ag-huge", 1, huge, good))
	if err != nil {
		t.Fatal(err)
	}
	hugeEnv := f.forge(protocol.TypeProposal, node, hugeBody)
	refused := []struct {
		name, agreement string
		env             []byte
	}{
		{"forged signature", "ag-forged", sealWith(forged, proposal("ag-forged", 1, svc, good))},
		{"sealed to another node", "ag-misaddressed", sealWith(misaddressed, proposal("ag-misaddressed", 1, svc, good))},
		{"malformed JSON", "ag-malformed", []byte(`{"header": {"v": 1, "type": "proposal"`)},
		{"not an envelope", "ag-garbage", []byte(strings.Repeat("\x00\xff", 100))},
		{"oversize", "ag-huge", hugeEnv},
	}
	for _, r := range refused {
		f.push(r.agreement, "proposal", 1, r.env)
	}
	// Secret names a container must not get, in a correctly sealed proposal: Open validates.
	for _, bad := range []string{"../etc/passwd", "etc", ".hidden"} {
		bsvc := svc
		bsvc.Deployment = protocol.Deployment{Services: map[string]protocol.Container{"main": {Image: s.image,
			Secrets: map[string]protocol.SecretDecl{bad: {}}}}}
		body, err := protocol.Encode(proposal("ag-badname", 1, bsvc, map[string]protocol.SecretValue{bad: {Key: "k", Value: v1}}))
		if err != nil {
			t.Fatal(err)
		}
		f.push("ag-badname", "proposal", 1, f.forge(protocol.TypeProposal, node, body))
	}
	// A proposal the node can not run (another architecture): declined with the reason.
	other := svc
	other.Arch = "s390x"
	if arch.Node() == "s390x" {
		other.Arch = "riscv64"
	}
	f.push("ag-arch", "proposal", 1, f.seal(proposal("ag-arch", 1, other, good)))
	rep, err := f.reply("ag-arch", 1, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if pr, ok := rep.(*protocol.ProposalReply); !ok || pr.Status != protocol.StatusDeclined || !strings.Contains(pr.Reason, "arch") {
		t.Errorf("proposal for another arch: %+v, want declined naming the arch", rep)
	}
	for _, want := range []string{"forged", "wrong recipient", "malformed", "too large"} {
		logHas(t, a.LogPath, 10*time.Second, "refused a message that does not open", want)
	}
	logHas(t, a.LogPath, 10*time.Second, "refused a message that does not open", "secret")
	if n := f.replyCount(); n != 1 {
		t.Errorf("%d replies to refused messages, want only the arch decline", n)
	}
	if list, _ := a.Agreements(); len(list) != 0 {
		t.Errorf("hostile messages made %d agreements", len(list))
	}
	if cs, _ := ContainersOf(e.ctx, s.docker, a.ID()); len(cs) != 0 {
		t.Errorf("hostile messages made %d containers", len(cs))
	}

	// 5. The agent still works: a good proposal is accepted and its secrets delivered.
	// Forged by hand like the bad-name ones above: proof that those were refused for their
	// names, not for a flaw in the forging.
	goodBody, err := protocol.Encode(proposal("ag-good", 1, svc, good))
	if err != nil {
		t.Fatal(err)
	}
	goodEnv := f.forge(protocol.TypeProposal, node, goodBody)
	f.push("ag-good", "proposal", 1, goodEnv)
	if rep, err := f.reply("ag-good", 1, time.Minute); err != nil {
		t.Fatal(err)
	} else if pr := rep.(*protocol.ProposalReply); pr.Status != protocol.StatusAccepted {
		t.Fatalf("good proposal: %s %s", pr.Status, pr.Reason)
	}
	e.agbot = nil // not used past here
	in, err := a.ActiveAgreement(e.ctx, "reader", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c := in.Containers[0].ContainerID
	e.wantFiles(c, map[string]string{"db_password": file("db", v1, ""), "api_token": file("tok", tok, "value_only")})

	// 6. Replays and bad updates change nothing.
	v2 := s.canaries.Next("hostile-db-v2")
	update := func(id string, seq uint64, name string, v string) *protocol.Update {
		return &protocol.Update{Meta: protocol.NewMeta(protocol.TypeUpdate, id, f.id, node, seq),
			Secrets: map[string]protocol.ChangedSecret{name: {SecretValue: protocol.SecretValue{Key: "db", Value: v}, Reason: protocol.ReasonValueUpdated}}}
	}
	upd2 := f.seal(update("ag-good", 2, "db_password", v2))
	f.push("ag-good", "update", 2, upd2)
	if rep, err := f.reply("ag-good", 2, 30*time.Second); err != nil {
		t.Fatal(err)
	} else if ur := rep.(*protocol.UpdateReply); ur.Status != protocol.StatusApplied {
		t.Fatalf("good update: %s %s", ur.Status, ur.Reason)
	}
	e.wantFiles(c, map[string]string{"db_password": file("db", v2, "")})
	before := e.startInfo(c)
	stale := s.canaries.Next("hostile-stale")
	f.push("ag-good", "proposal", 1, goodEnv)                                                // replayed proposal
	f.push("ag-good", "update", 2, upd2)                                                     // replayed update
	f.push("ag-good", "update", 2, f.seal(update("ag-good", 2, "db_password", stale)))       // same seq, other value
	f.push("ag-unknown", "update", 3, f.seal(update("ag-unknown", 3, "db_password", stale))) // unknown agreement
	f.push("ag-good", "update", 4, f.seal(update("ag-good", 4, "not_declared", stale)))      // undeclared secret
	if rep, err := f.reply("ag-unknown", 3, 30*time.Second); err != nil {
		t.Fatal(err)
	} else if ur := rep.(*protocol.UpdateReply); ur.Status != protocol.StatusRefused {
		t.Errorf("update for an unknown agreement: %s, want refused", ur.Status)
	}
	if rep, err := f.reply("ag-good", 4, 30*time.Second); err != nil {
		t.Fatal(err)
	} else if ur := rep.(*protocol.UpdateReply); ur.Status != protocol.StatusRefused {
		t.Errorf("update naming an undeclared secret: %s, want refused", ur.Status)
	}
	time.Sleep(500 * time.Millisecond)
	e.wantFiles(c, map[string]string{"db_password": file("db", v2, ""), "api_token": file("tok", tok, "value_only")})
	if after := e.startInfo(c); after != before {
		t.Errorf("replays disturbed the container: %s -> %s", before, after)
	}
	if list, _ := a.Agreements(); len(list) != 1 {
		t.Errorf("%d agreements after replays, want 1", len(list))
	}
	// The replayed proposal of a running agreement is acknowledged as accepted (it was), never
	// declined: a decline would make an agbot drop an agreement the node runs.
	f.mu.Lock()
	var proposalReplies []string
	for _, m := range f.replies {
		if pr, ok := m.(*protocol.ProposalReply); ok && pr.Agreement == "ag-good" {
			proposalReplies = append(proposalReplies, string(pr.Status))
		}
	}
	f.mu.Unlock()
	if strings.Join(proposalReplies, ",") != "accepted,accepted" {
		t.Errorf("replies to the proposal and its replay: %v, want accepted twice", proposalReplies)
	}
	if st, err := a.Status(); err != nil || !st.Registered || st.Agreements.Total != 1 {
		t.Fatalf("the agent after hostile messages: %+v %v", st, err)
	}
	s.scanProcesses(t)
	s.scanContainers(t, e.ctx, a.ID())

	// 7. A cancel ends it cleanly.
	f.push("ag-good", "cancel", 5, f.seal(&protocol.Cancel{Meta: protocol.NewMeta(protocol.TypeCancel, "ag-good", f.id, node, 5), Reason: "test"}))
	if _, err := f.reply("ag-good", 5, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, false)
}

// forge signs and encrypts message bytes the way protocol.Endpoint.Seal does, but without
// validating them first (Seal refuses to send what Open would refuse), as a hostile agbot
// would. It mirrors protocol/envelope.go (sealRaw, signInput, hpkeInfo, signDomain); the test
// forges the good proposal with it too, so a drift shows as that proposal failing.
func (f *fakeAgbot) forge(typ protocol.MessageType, to string, body []byte) []byte {
	f.t.Helper()
	f.mu.Lock()
	nodePub, err := f.ep.Peers.PeerKeys(to)
	f.mu.Unlock()
	if err != nil {
		f.t.Fatal(err)
	}
	raw, err := f.keys.MarshalBinary()
	if err != nil {
		f.t.Fatal(err)
	}
	var kf struct {
		Seed []byte `json:"ed25519Seed"`
	}
	if err := json.Unmarshal(raw, &kf); err != nil {
		f.t.Fatal(err)
	}
	sign := ed25519.NewKeyFromSeed(kf.Seed)
	// The hybrid KEM, as the agbot seals for a node that has it: a classic envelope between two
	// hybrid parties is refused as a downgrade before anything else is looked at.
	hdr, err := json.Marshal(protocol.Header{Version: protocol.ProtocolVersion, Type: typ, From: f.id, To: to,
		SenderKey: protocol.KeyID(f.keys.Public().Signing), RecipientKey: protocol.KeyID(nodePub.MLKEM768X25519),
		KEM: protocol.KEMMLKEM768X25519, AEAD: protocol.AEADChaCha20Poly1305})
	if err != nil {
		f.t.Fatal(err)
	}
	in := []byte("anax-agent signature v1\x00")
	in = binary.BigEndian.AppendUint32(in, uint32(len(hdr)))
	in = append(append(in, hdr...), body...)
	pt := append(ed25519.Sign(sign, in), body...)
	pub, err := hpke.MLKEM768X25519().NewPublicKey(nodePub.MLKEM768X25519)
	if err != nil {
		f.t.Fatal(err)
	}
	enc, sender, err := hpke.NewSender(pub, hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("anax-agent envelope v1"))
	if err != nil {
		f.t.Fatal(err)
	}
	ct, err := sender.Seal(hdr, pt)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := json.Marshal(protocol.Envelope{Header: hdr, Enc: enc, Ciphertext: ct})
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}
