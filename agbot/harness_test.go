package agbot_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/protocol"
)

// managerFactory opens the secrets manager a suite runs against (nil: embedded).
type managerFactory func(t *testing.T) secrets.Manager

// harness is a real agbot serving HTTPS on loopback.
type harness struct {
	t       *testing.T
	dir     string
	mk      managerFactory
	sm      secrets.Manager
	srv     *agbot.Server
	url     string
	client  *http.Client
	done    chan error
	agbotID string
	keys    *protocol.PublicKeys
	// offlineAfter is passed to agbot.Options (zero: the default).
	offlineAfter time.Duration
	// metricsNames is agbot.Options.MetricsSecretNames.
	metricsNames bool
	db           agbot.DBOptions
}

// backendEnv is where a suite keeps secrets (mk, nil: embedded) and state (db, empty: bbolt).
type backendEnv struct {
	mk managerFactory
	db agbot.DBOptions
}

const org = "myorg"

func newHarness(t *testing.T, mk managerFactory) *harness {
	t.Helper()
	return newHarnessEnv(t, backendEnv{mk: mk})
}

func newHarnessEnv(t *testing.T, env backendEnv) *harness {
	t.Helper()
	dir := t.TempDir()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: org, Admin: "admin", Password: "adminpw", Hash: access.CheapParams, DB: env.db}); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: dir, mk: env.mk, db: env.db}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	t := h.t
	t.Helper()
	var sm secrets.Manager
	if h.mk != nil {
		sm = h.mk(t)
		h.sm = sm
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("AGBOT_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv, err := agbot.Open(agbot.Options{DataDir: h.dir, Secrets: sm, Log: log, Hash: access.CheapParams,
		Retry: 200 * time.Millisecond, MaxRetry: time.Second, OfflineAfter: h.offlineAfter, DB: h.db,
		MetricsSecretNames: h.metricsNames})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.srv, h.url, h.done = srv, "https://"+ln.Addr().String(), make(chan error, 1)
	go func() { h.done <- srv.Serve(ln) }()
	pem, err := os.ReadFile(filepath.Join(h.dir, agbot.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	h.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 90 * time.Second}
	var info api.AgbotInfo
	h.mustDo("", "GET", "/agbot", nil, 200, &info)
	h.agbotID, h.keys = info.ID, info.PublicKeys
}

func (h *harness) stop() {
	if h.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.t.Errorf("shutdown: %v", err)
	}
	if err := <-h.done; err != nil {
		h.t.Errorf("serve: %v", err)
	}
	if h.sm != nil {
		h.sm.Close()
	}
	h.srv = nil
}

func (h *harness) restart() {
	h.stop()
	h.start()
}

// do sends a request with Basic auth "org/id:password" (auth "" for none).
func (h *harness) do(auth, method, path string, body any) (int, []byte) {
	h.t.Helper()
	return h.doWith(nil, auth, method, path, body)
}

// doWith is do with extra request headers.
func (h *harness) doWith(hdr http.Header, auth, method, path string, body any) (int, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if auth != "" {
		u, p, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, p)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (h *harness) mustDo(auth, method, path string, body any, want int, out any) {
	h.t.Helper()
	code, raw := h.do(auth, method, path, body)
	if code != want {
		h.t.Fatalf("%s %s as %q = %d %s, want %d", method, path, auth, code, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

const (
	admin = "myorg/admin:adminpw"
	bob   = "myorg/bob:bobpw"
	carol = "myorg/carol:carolpw"
)

// people creates bob and carol (users), node1 owned by bob, and org2 with its admin.
func (h *harness) people() {
	h.mustDo(admin, "POST", "/org/myorg/users/bob", map[string]any{"password": "bobpw"}, 201, nil)
	h.mustDo(admin, "POST", "/org/myorg/users/carol", map[string]any{"password": "carolpw"}, 201, nil)
	h.mustDo(bob, "PUT", "/org/myorg/nodes/node1", map[string]any{"token": "node1tok"}, 201, nil)
}

// simNode is an in-process node speaking the node endpoints over HTTPS.
type simNode struct {
	h     *harness
	id    string
	auth  string
	keys  *protocol.PrivateKeys
	ep    *protocol.Endpoint
	after uint64
}

func (h *harness) node(id, token string) *simNode {
	keys, err := protocol.GenerateKeys()
	if err != nil {
		h.t.Fatal(err)
	}
	n := &simNode{h: h, id: id, auth: org + "/" + id + ":" + token, keys: keys}
	n.ep = &protocol.Endpoint{ID: org + "/" + id, Keys: keys, Peers: protocol.StaticKeyRing{h.agbotID: h.keys}, Agreements: &protocol.AgreementKeyMap{}}
	return n
}

func (n *simNode) register(arch string, props map[string]any, pattern string) {
	n.h.t.Helper()
	var ps []map[string]any
	for k, v := range props {
		ps = append(ps, map[string]any{"name": k, "value": v})
	}
	pub := n.keys.Public()
	if n.ep.Agreements == nil { // a node of an older agent: no agreement keys
		pub.Features = nil
	}
	body := map[string]any{"publicKeys": pub, "arch": arch, "properties": ps, "pattern": pattern}
	var info api.AgbotInfo
	n.h.mustDo(n.auth, "PUT", "/org/myorg/nodes/"+n.id+"/registration", body, 200, &info)
	if info.Fingerprint != n.h.keys.Fingerprint() {
		n.h.t.Fatalf("registration answered fingerprint %s, want %s", info.Fingerprint, n.h.keys.Fingerprint())
	}
}

// poll long-polls once and opens every message.
func (n *simNode) poll(wait int) []protocol.Message {
	n.h.t.Helper()
	var out api.Messages
	n.h.mustDo(n.auth, "GET", "/org/myorg/nodes/"+n.id+"/msgs?wait="+itoa(wait)+"&after="+utoa(n.after), nil, 200, &out)
	var msgs []protocol.Message
	for _, m := range out.Messages {
		msg, err := n.ep.Open(m.Envelope)
		if err != nil {
			n.h.t.Fatalf("open %s %d: %v", m.Type, m.ID, err)
		}
		if m.ID > n.after {
			n.after = m.ID
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// next polls until a message arrives (the test's deadline bounds it).
func (n *simNode) next() protocol.Message {
	n.h.t.Helper()
	for range 20 {
		if msgs := n.poll(5); len(msgs) > 0 {
			if len(msgs) > 1 {
				n.h.t.Fatalf("got %d messages, want one: %v", len(msgs), types(msgs))
			}
			return msgs[0]
		}
	}
	n.h.t.Fatal("no message")
	return nil
}

func types(ms []protocol.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Head().Type))
	}
	return out
}

// successReply is the answer an agent gives when m went well (nil for a message that takes no
// answer): accepted for a proposal, applied for an update or a cancel.
func successReply(m protocol.Message, from, to string) protocol.Message {
	h := m.Head()
	meta := protocol.Meta{Version: protocol.ProtocolVersion, Agreement: h.Agreement, From: from, To: to, Seq: h.Seq, Time: time.Now()}
	switch m.(type) {
	case *protocol.Proposal:
		meta.Type = protocol.TypeProposalReply
		return &protocol.ProposalReply{Meta: meta, Status: protocol.StatusAccepted}
	case *protocol.Update:
		meta.Type = protocol.TypeUpdateReply
		return &protocol.UpdateReply{Meta: meta, Status: protocol.StatusApplied}
	case *protocol.Cancel:
		meta.Type = protocol.TypeCancelReply
		return &protocol.CancelReply{Meta: meta, Status: protocol.StatusApplied}
	}
	return nil
}

// ack answers m as an agent would.
func (n *simNode) ack(m protocol.Message) {
	n.h.t.Helper()
	reply := successReply(m, n.ep.ID, n.h.agbotID)
	if reply == nil {
		n.h.t.Fatalf("ack of %T", m)
	}
	env, err := n.ep.Wrap(reply)
	if err != nil {
		n.h.t.Fatal(err)
	}
	n.h.mustDo(n.auth, "POST", "/org/myorg/nodes/"+n.id+"/msgs", env, 204, nil)
}

func itoa(i int) string { return utoa(uint64(i)) }
func utoa(u uint64) string {
	b := []byte{}
	if u == 0 {
		return "0"
	}
	for u > 0 {
		b = append([]byte{byte('0' + u%10)}, b...)
		u /= 10
	}
	return string(b)
}
