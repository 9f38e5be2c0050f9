package agbot_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// childEnv makes the test binary run `agbot` with its arguments instead of the tests: the
// fleet test's agbots are processes of their own, which it can kill with SIGKILL.
const childEnv = "AGBOT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(agbot.Main(os.Args[1:], os.Stdout, os.Stderr, nil))
	}
	os.Exit(m.Run())
}

// fleetTTL is the fleet test's lease TTL: the README's takeover bound is 4/3 of it.
const fleetTTL = 2 * time.Second

// testFleetFailover: two agbot processes on one real PostgreSQL, behind a balancer that sends
// each connection to the next agbot that accepts it, serve three simulated nodes (the
// protocol as an agent speaks it: long-poll, open, acknowledge). A stream of secret updates
// runs; after the fourth acknowledged write the serving agbot is killed with SIGKILL. Every
// node ends with the last acknowledged value, which the manager still holds, and the standby
// took the lease within the documented bound. (test/e2e's ha-failover does the same with
// real agents and containers.)
func testFleetFailover(t *testing.T, pg *postgrestest.Server) {
	db := agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dirA, Org: org, Admin: "admin", Password: "adminpw", Hash: access.CheapParams, DB: db}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", dirA, dirB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	pwFile := filepath.Join(t.TempDir(), "db-password")
	os.WriteFile(pwFile, []byte(pg.Password), 0o600)
	a := startChild(t, dirA, db.URL, pwFile)
	waitUp(t, dirA, a.addr)
	b := startChild(t, dirB, db.URL, pwFile)
	waitUp(t, dirB, b.addr)
	lb := newLB(t, a.addr, b.addr)
	h := fleetHarness(t, dirA, "https://"+lb.addr)

	h.people()
	putSecret(h, admin, "db", "fleet-v0")
	putSecret(h, admin, "api_token", "fleet-tok")
	h.mustDo(admin, "POST", "/org/myorg/services", service, 201, nil)
	h.mustDo(admin, "PUT", "/org/myorg/business/policies/pol", policy("purpose == edge"), 201, nil)
	var nodes []*fleetNode
	for i := range 3 {
		id := fmt.Sprintf("fnode%d", i)
		h.mustDo(admin, "PUT", "/org/myorg/nodes/"+id, map[string]any{"token": id + "tok"}, 201, nil)
		n := &fleetNode{simNode: h.node(id, id+"tok")}
		n.register("amd64", map[string]any{"purpose": "edge"}, "")
		nodes = append(nodes, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { n.run(ctx) })
	}
	var last string
	for i := 1; i <= 10; i++ {
		last = fmt.Sprintf("fleet-v%d", i)
		writeUntilAcked(t, h, "db", last)
		if i == 4 {
			killed := time.Now()
			a.cmd.Process.Signal(syscall.SIGKILL)
			a.cmd.Wait()
			took := waitLeader(t, pg, db.URL, b.addr)
			t.Logf("standby holds the lease %s after SIGKILL (bound 4/3 of %s)", took.Sub(killed).Round(time.Millisecond), fleetTTL)
			if d := took.Sub(killed); d > fleetTTL*4/3+time.Second { // a second of scheduling on a shared machine
				t.Errorf("takeover took %s, more than the documented %s", d, fleetTTL*4/3)
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, n := range nodes {
		for n.value() != last && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := n.value(); got != last {
			t.Errorf("node %s holds %q, want the last acknowledged %q", n.id, got, last)
		}
	}
	cancel()
	wg.Wait()
	var got api.SecretBody
	h.mustDo(admin, "GET", "/org/myorg/secrets/db", nil, 200, &got)
	if got.Value != last {
		t.Errorf("the manager holds %q, want %q", got.Value, last)
	}
	if lb.count(b.addr) == 0 {
		t.Error("no connection reached the second agbot")
	}
}

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, dir, url, pwFile string) *child {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dir, "--listen", addr, "--db", url,
		"--db-password-file", pwFile, "--lease-ttl", fleetTTL.String())
	cmd.Env = append(os.Environ(), childEnv+"=1")
	logf, err := os.Create(filepath.Join(filepath.Dir(dir), filepath.Base(dir)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			raw, _ := os.ReadFile(logf.Name())
			t.Logf("--- %s ---\n%s", logf.Name(), raw)
		}
	})
	return &child{cmd: cmd, addr: addr}
}

func clientFor(t *testing.T, dir string) *http.Client {
	pem, err := os.ReadFile(filepath.Join(dir, agbot.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 30 * time.Second}
}

// waitUp waits until the agbot at addr answers GET /agbot (itself or through the leader).
func waitUp(t *testing.T, dir, addr string) {
	t.Helper()
	c := clientFor(t, dir)
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get("https://" + addr + "/agbot"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
	}
	t.Fatalf("agbot at %s never answered", addr)
}

func fleetHarness(t *testing.T, dir, url string) *harness {
	h := &harness{t: t, dir: dir, url: url, client: clientFor(t, dir)}
	var info api.AgbotInfo
	h.mustDo("", "GET", "/agbot", nil, 200, &info)
	h.agbotID, h.keys = info.ID, info.PublicKeys
	return h
}

// writeUntilAcked stores a secret value, retrying as a client does while the fleet fails
// over, until the agbot answers 201.
func writeUntilAcked(t *testing.T, h *harness, name, val string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key": "k-" + name, "value": val})
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("PUT", h.url+"/org/myorg/secrets/"+name, bytes.NewReader(body))
		u, p, _ := strings.Cut(admin, ":")
		req.SetBasicAuth(u, p)
		if resp, err := h.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 201 {
				return
			}
		}
	}
	t.Fatalf("write of %s never acknowledged", name)
}

// waitLeader waits until the agbot at addr holds the fleet's lease.
func waitLeader(t *testing.T, pg *postgrestest.Server, url, addr string) time.Time {
	t.Helper()
	st, err := openPool(pg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(20 * time.Millisecond) {
		var holder string
		err := st.QueryRow(context.Background(), "SELECT holder FROM leases WHERE name = 'fleet' AND expires > now()").Scan(&holder)
		if err == nil && strings.HasPrefix(holder, "https://"+addr+"#") {
			return time.Now()
		}
	}
	t.Fatal("the standby never took the lease")
	return time.Time{}
}

// fleetNode is a simulated node that long-polls, opens and acknowledges whatever comes,
// through failures (a dead agbot, a standby with no leader yet), and keeps the db value.
type fleetNode struct {
	*simNode
	mu  sync.Mutex
	val string
}

func (n *fleetNode) value() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.val
}

func (n *fleetNode) run(ctx context.Context) {
	for ctx.Err() == nil {
		msgs, err := n.tryPoll(ctx)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, m := range msgs {
			n.keep(m)
			n.tryAck(ctx, m)
		}
	}
}

func (n *fleetNode) keep(m protocol.Message) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch m := m.(type) {
	case *protocol.Proposal:
		n.val = m.Secrets["db_password"].Value
	case *protocol.Update:
		if s, ok := m.Secrets["db_password"]; ok {
			n.val = s.Value
		}
	}
}

func (n *fleetNode) tryPoll(ctx context.Context) ([]protocol.Message, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", n.h.url+"/org/myorg/nodes/"+n.id+"/msgs?wait=5&after="+utoa(n.after), nil)
	u, p, _ := strings.Cut(n.auth, ":")
	req.SetBasicAuth(u, p)
	resp, err := n.h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("poll: %d", resp.StatusCode)
	}
	var out api.Messages
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	var msgs []protocol.Message
	for _, m := range out.Messages {
		msg, err := n.ep.Open(m.Envelope)
		if err != nil {
			return nil, err
		}
		n.after = max(n.after, m.ID)
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

// tryAck answers m until an agbot takes the answer (204), or says it knows nothing of it.
func (n *fleetNode) tryAck(ctx context.Context, m protocol.Message) {
	var reply protocol.Message
	switch m.(type) {
	case *protocol.Proposal, *protocol.Update:
		reply = successReply(m, n.ep.ID, n.h.agbotID)
	default:
		return
	}
	env, err := n.ep.Seal(reply)
	if err != nil {
		return
	}
	for i := 0; i < 50 && ctx.Err() == nil; i++ {
		req, _ := http.NewRequestWithContext(ctx, "POST", n.h.url+"/org/myorg/nodes/"+n.id+"/msgs", bytes.NewReader(env))
		u, p, _ := strings.Cut(n.auth, ":")
		req.SetBasicAuth(u, p)
		if resp, err := n.h.client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lb sends each connection to the next target that accepts it.
type lb struct {
	addr    string
	mu      sync.Mutex
	next    int
	targets []string
	counts  map[string]int
}

func newLB(t *testing.T, targets ...string) *lb {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	b := &lb{addr: l.Addr().String(), targets: targets, counts: map[string]int{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go b.relay(c)
		}
	}()
	return b
}

func (b *lb) relay(c net.Conn) {
	defer c.Close()
	b.mu.Lock()
	start := b.next
	b.next++
	b.mu.Unlock()
	for i := range b.targets {
		t := b.targets[(start+i)%len(b.targets)]
		up, err := net.DialTimeout("tcp", t, time.Second)
		if err != nil {
			continue
		}
		defer up.Close()
		b.mu.Lock()
		b.counts[t]++
		b.mu.Unlock()
		done := make(chan struct{}, 2)
		go func() { io.Copy(up, c); done <- struct{}{} }()
		go func() { io.Copy(c, up); done <- struct{}{} }()
		<-done
		return
	}
}

func (b *lb) count(t string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[t]
}

func openPool(pg *postgrestest.Server, url string) (*pgxpool.Pool, error) {
	return pgxpool.New(context.Background(), url+"&password="+pg.Password)
}
