// The two-agbot failover scenario with real agents and containers: two agbot processes on
// one real PostgreSQL behind a balancer, three agents, a stream of writes through hzn and a
// SIGKILL of the serving agbot in the middle (README: Several agbots on one database). It
// runs in TestE2E's scenarios; alone:
//
//	CI=true go test -count=1 -v -run 'TestE2E/scenarios/ha-failover' ./test/e2e/
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// haLeaseTTL is the lease TTL of the failover scenario; the README's bound for a takeover
// is 4/3 of it (the lease expires at most one TTL after the dead agbot's last renewal and
// the standby tries every third of it).
const haLeaseTTL = 3 * time.Second

// testHAFailover: two agbots on one real PostgreSQL serve three agents through a TCP
// balancer (each connection to the next agbot that accepts: a node's long-poll lands on
// either, the standby forwards). A stream of secret updates runs; in its middle the serving
// agbot is killed with SIGKILL. The other takes the lease within the documented bound, every
// agent converges to the last acknowledged value, and the manager still holds it (no
// acknowledged update lost); the containers were never restarted.
func testHAFailover(t *testing.T, s *suite) {
	pg := postgrestest.Start(t)
	dbURL := pg.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(cancel)
	dir := filepath.Join(s.dir, "ha")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db := []string{"--db", dbURL, "--db-password-file", pg.PasswordFile(t, dir)}
	first, err := NewAgbotArgs(ctx, s.bin, filepath.Join(dir, "a"), org, "admin", "admin-pw", nil, db)
	if err != nil {
		t.Fatal(err)
	}
	second := copyAgbot(t, first, filepath.Join(dir, "b"))
	for _, b := range []*Agbot{first, second} { // the first takes the lease, the second stands by
		b.ServeArgs = append(append([]string(nil), db...), "--lease-ttl", haLeaseTTL.String())
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if b.Proc() != nil {
				if err := b.Stop(); err != nil {
					t.Errorf("agbot: %v", err)
				}
			}
		})
	}
	lb, err := newBalancer(first.Addr, second.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	front := *first
	front.URL = "https://" + lb.Addr
	e := &env{t: t, s: s, ctx: ctx, dir: dir, agbot: &front}

	agents, containers := haFleet(e, 3)
	before := map[string]string{}
	for _, c := range containers {
		before[c] = e.startInfo(c)
	}
	acked := haStream(e, 12, 4, func() {
		t.Logf("killing the serving agbot (pid %d); connections so far: %v", first.Proc().Pid(), lb.Counts())
		if lb.Counts()[second.Addr] == 0 {
			t.Error("no connection reached the standby before the kill: forwarding untested")
		}
		killed := time.Now()
		first.Proc().Kill()
		first.proc = nil
		took := haTakeover(e, pg, dbURL, second)
		t.Logf("the standby holds the lease %s after the kill (bound: 4/3 of the %s TTL)", took.Sub(killed).Round(time.Millisecond), haLeaseTTL)
		if d := took.Sub(killed); d > haLeaseTTL*4/3+time.Second { // a second for scheduling on a shared machine
			t.Errorf("takeover took %s, more than the documented %s", d, haLeaseTTL*4/3)
		}
	})
	want := file("dbkey", acked, "")
	for _, c := range containers {
		e.waitFile(c, "/db_password", want, time.Minute)
		if after := e.startInfo(c); after != before[c] {
			t.Errorf("container %.12s restarted: %s -> %s", c, before[c], after)
		}
	}
	var got map[string]any
	if code, err := front.Do(org+"/"+front.Admin, "GET", "/org/"+org+"/secrets/db", nil, &got); err != nil || code != 200 || got["value"] != acked {
		t.Errorf("the manager holds %s (%d, %v), want the last acknowledged value %s", e.s.canaries.Describe(fmt.Sprint(got["value"])), code, err, e.s.canaries.Describe(acked))
	}
	e.scanLive(agents...)
	for _, a := range agents {
		if _, err := a.Hzn(ctx, "unregister", "-f"); err != nil {
			t.Fatal(err)
		}
		e.wantClean(a, true)
	}
}

// copyAgbot is a second agbot of first's fleet: a copy of its data dir (keys, certificate,
// secrets key) on an address of its own.
func copyAgbot(t *testing.T, first *Agbot, dir string) *Agbot {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := *first
	b.Dir, b.LogPath = filepath.Join(dir, "agbot"), filepath.Join(dir, "agbot.log")
	if out, err := exec.Command("cp", "-a", first.Dir, b.Dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	var err error
	if b.Addr, err = FreeAddr(); err != nil {
		t.Fatal(err)
	}
	b.URL = "https://" + b.Addr
	return &b
}

// haFleet publishes a service reading secret db and starts n agents running it.
func haFleet(e *env, n int) (agents []*Agent, containers []string) {
	e.t.Helper()
	admin := e.agbot.Admin
	e.publishService("reader", map[string]string{"db_password": ""})
	e.addPolicy("readers", "reader", map[string]string{"db_password": "db"}, false)
	e.putSecret(admin, "db", "dbkey", e.s.canaries.Next("ha-db-v0"), "")
	for i := range n {
		node := fmt.Sprintf("node%d", i)
		e.hzn(admin, "exchange", "node", "create", "-n", node+":tok"+node)
		a := e.agent(node, "")
		e.register(a, node, "tok"+node)
		_, c := e.active(a, "reader")
		agents, containers = append(agents, a), append(containers, c)
	}
	return agents, containers
}

// haStream writes n values of secret db through the balancer, one after the other, each
// retried until the agbot acknowledges it (a client's part while the fleet fails over), and
// calls kill after the killAt-th acknowledgement. It returns the last acknowledged value.
func haStream(e *env, n, killAt int, kill func()) string {
	e.t.Helper()
	var last string
	for i := 1; i <= n; i++ {
		v := e.s.canaries.Next(fmt.Sprintf("ha-db-v%d", i))
		args := []string{"sm", "secret", "add", "-O", "--secretKey", "dbkey", "-f", "-", "db"}
		err := Eventually(e.ctx, time.Minute, 200*time.Millisecond, func() error {
			_, err := runHzn(e.ctx, e.s.bin.Hzn, e.agbot.Env(e.agbot.Admin), strings.NewReader(v), args...)
			return err
		})
		if err != nil {
			e.t.Fatalf("update %d never acknowledged: %v", i, err)
		}
		last = v
		if i == killAt {
			kill()
		}
		time.Sleep(150 * time.Millisecond)
	}
	return last
}

// haTakeover waits until b holds the fleet's lease and returns when it was first seen.
func haTakeover(e *env, pg *postgrestest.Server, dbURL string, b *Agbot) time.Time {
	e.t.Helper()
	conn, err := pgx.Connect(e.ctx, dbURL+"&password="+pg.Password)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var at time.Time
	err = Eventually(e.ctx, time.Minute, 20*time.Millisecond, func() error {
		var holder string
		err := conn.QueryRow(e.ctx, "SELECT holder FROM leases WHERE name = 'fleet' AND expires > now()").Scan(&holder)
		if err == nil && strings.HasPrefix(holder, b.URL+"#") {
			at = time.Now()
			return nil
		}
		return fmt.Errorf("lease held by %q (%v)", holder, err)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return at
}

// balancer is a TCP load balancer in front of a fleet's agbots: each connection goes to the
// next agbot in turn that accepts it (a dead one refuses and is skipped), TLS passing through.
type balancer struct {
	Addr    string
	ln      net.Listener
	targets []string
	mu      sync.Mutex
	next    int
	counts  map[string]int
	conns   map[net.Conn]bool
}

func newBalancer(targets ...string) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{Addr: ln.Addr().String(), ln: ln, targets: targets, counts: map[string]int{}, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.relay(c)
		}
	}()
	return b, nil
}

func (b *balancer) relay(c net.Conn) {
	b.mu.Lock()
	start := b.next
	b.next++
	b.mu.Unlock()
	var up net.Conn
	for i := range b.targets {
		t := b.targets[(start+i)%len(b.targets)]
		var err error
		if up, err = net.DialTimeout("tcp", t, time.Second); err == nil {
			b.mu.Lock()
			b.counts[t]++
			b.mu.Unlock()
			break
		}
	}
	if up == nil {
		c.Close()
		return
	}
	b.mu.Lock()
	b.conns[c], b.conns[up] = true, true
	b.mu.Unlock()
	splice(c, up)
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.conns, up)
	b.mu.Unlock()
}

// Counts is how many connections each target took.
func (b *balancer) Counts() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for k, v := range b.counts {
		out[k] = v
	}
	return out
}

// Close stops accepting and drops every connection.
func (b *balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}
