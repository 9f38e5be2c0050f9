package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/test/leakscan"
	"github.com/edge-secrets/anax-agent/test/openbaotest"
)

// single sets up one agent with one "reader" service whose db_password (json) and api_token
// (value_only) come from org secrets db and token, registered and running.
func single(t testing.TB, e *env, agbotURL, label string) (a *Agent, agreementID, container, db1, token string) {
	t.Helper()
	admin := e.agbot.Admin
	e.hzn(admin, "exchange", "node", "create", "-n", "node1:tok1")
	e.publishService("reader", map[string]string{"db_password": "", "api_token": "value_only"})
	e.addPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, true)
	db1, token = e.s.canaries.Next(label+"-db-v1"), e.s.canaries.Next(label+"-token")
	e.putSecret(admin, "db", "dbkey", db1, "")
	e.putSecret(admin, "token", "tokkey", token, "")
	a = e.agent("node1", agbotURL)
	e.register(a, "node1", "tok1")
	agreementID, container = e.active(a, "reader")
	e.wantFiles(container, map[string]string{"db_password": file("dbkey", db1, ""), "api_token": file("tokkey", token, "value_only")})
	return a, agreementID, container, db1, token
}

// testRestartAndReboot: an agent restart (SIGTERM, then kill -9) leaves running containers
// undisturbed and updates keep arriving; a node reboot (the tmpfs gone, the agent started
// again) is repaired by a resync that brings the current values, including one that changed
// while the agent was down.
func testRestartAndReboot(t *testing.T, s *suite) {
	e := s.newEnv(t, "restart", nil)
	a, agID, c, db1, _ := single(t, e, "", "restart")
	before := e.startInfo(c)

	// 1. Restart under a continuous read.
	hammer := StartHammer(e.ctx, s.docker, c, 4*time.Second, "/db_password", "/open-horizon-secrets/db_password", "/api_token")
	time.Sleep(500 * time.Millisecond)
	if err := a.Stop(); err != nil {
		t.Fatalf("agent did not stop cleanly: %v", err)
	}
	if err := a.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	h, err := hammer()
	if err != nil {
		t.Fatal(err)
	}
	if h.Errors != 0 || h.Empty != 0 || h.Reads < 100 {
		t.Errorf("reads across the agent restart: %d reads, %d errors (%s), %d empty", h.Reads, h.Errors, h.FirstError, h.Empty)
	}
	if got := h.Contents["/db_password"]; len(got) != 1 || got[0] != file("dbkey", db1, "") {
		t.Errorf("/db_password across the restart: %d distinct contents", len(got))
	}
	if after := e.startInfo(c); after != before {
		t.Errorf("the container was disturbed by the agent restart: %s -> %s", before, after)
	}
	logHas(t, a.LogPath, 10*time.Second, "agreement intact", agID)
	db2 := s.canaries.Next("restart-db-v2")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db2, "")
	e.waitFile(c, "/db_password", file("dbkey", db2, ""), 30*time.Second)

	// 2. kill -9, start again: intact.
	a.Kill()
	if err := a.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	if after := e.startInfo(c); after != before {
		t.Errorf("the container was disturbed by kill -9 of the agent: %s -> %s", before, after)
	}
	db3 := s.canaries.Next("restart-db-v3")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db3, "")
	e.waitFile(c, "/db_password", file("dbkey", db3, ""), 30*time.Second)
	e.scanLive(a)

	// 3. Reboot: the agent stops, the tmpfs is gone (every mount below the secrets root), the
	// value changes meanwhile; the agent starts, finds the stores lost, asks for a resync and
	// runs the service again with the current values.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.UnmountRoots(); err != nil {
		t.Fatal(err)
	}
	if m, _ := MountsUnder(a.Config.SecretsRoot); len(m) != 0 {
		t.Fatalf("mounts left after the simulated reboot: %v", m)
	}
	db4 := s.canaries.Next("restart-db-v4")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db4, "")
	if err := a.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 20*time.Second, "asked the agbot for current values (resync)", agID)
	in, err := a.ActiveAgreement(e.ctx, "reader", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != agID {
		t.Fatalf("after the reboot the agreement is %s, want %s", in.ID, agID)
	}
	c2 := in.Containers[0].ContainerID
	e.waitFile(c2, "/db_password", file("dbkey", db4, ""), 30*time.Second)
	e.wantFiles(c2, map[string]string{"db_password": file("dbkey", db4, "")})
	if st, _ := a.Status(); st.Agreements.ByPhase[agreement.PhaseActive] != 1 {
		t.Errorf("status after the resync: %+v", st.Agreements)
	}
	// Updates reach the rebuilt stores live.
	db5 := s.canaries.Next("restart-db-v5")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db5, "")
	e.waitFile(c2, "/db_password", file("dbkey", db5, ""), 30*time.Second)
	e.scanLive(a)
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
}

// testAgbotAway: the network between node and agbot is cut while a secret changes; the node
// keeps running on the last value, the agent keeps serving, and the pending update arrives
// once the agbot is reachable again. Then the agbot itself restarts with an update queued.
func testAgbotAway(t *testing.T, s *suite) {
	e := s.newEnv(t, "away", nil)
	proxy, err := NewProxy(e.agbot.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	a, _, c, db1, _ := single(t, e, "https://"+proxy.Addr, "away")
	before := e.startInfo(c)

	proxy.Cut()
	if err := Eventually(e.ctx, 30*time.Second, 50*time.Millisecond, func() error {
		st, err := a.Status()
		if err != nil {
			return err
		}
		if st.Agbot == nil || st.Agbot.Connected {
			return fmt.Errorf("agent still connected")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db2 := s.canaries.Next("away-db-v2")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db2, "")
	// A while away: several reconnect attempts.
	time.Sleep(3 * time.Second)
	e.wantFiles(c, map[string]string{"db_password": file("dbkey", db1, "")})
	st, err := a.Status()
	if err != nil {
		t.Fatalf("the agent stopped serving while the agbot was away: %v", err)
	}
	if st.Agbot.Failures < 2 {
		t.Errorf("while away: %d reconnect attempts, want several", st.Agbot.Failures)
	}
	wait, err := Watch(e.ctx, s.docker, c, "/db_password", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	proxy.Restore()
	ch, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Content != file("dbkey", db2, "") {
		t.Fatalf("after the agbot came back: %s", s.canaries.Describe(ch.Content))
	}
	t.Logf("pending update arrived %s after the network came back", time.Unix(0, ch.SeenAt).Sub(restored).Round(time.Millisecond))

	// The agbot restarts; an update made right after reaches the node.
	if err := e.agbot.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := e.agbot.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	db3 := s.canaries.Next("away-db-v3")
	e.putSecret(e.agbot.Admin, "db", "dbkey", db3, "")
	e.waitFile(c, "/db_password", file("dbkey", db3, ""), time.Minute)
	if after := e.startInfo(c); after != before {
		t.Errorf("the container restarted: %s -> %s", before, after)
	}
	e.scanLive(a)
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
}

// testVaultDirect: with OpenBao as the secrets manager, a value written straight into OpenBao
// (not through the agbot) is found by the agbot's poll and reaches the node; one written while
// the agbot is stopped arrives after it starts again.
func testVaultDirect(t *testing.T, s *suite) {
	srv := openbaotest.StartServer(t)
	tokenFile := filepath.Join(s.dir, "vault-direct-token")
	if err := os.WriteFile(tokenFile, []byte(srv.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	e := s.newEnv(t, "vault-direct", &Vault{Addr: srv.Addr, TokenFile: tokenFile})
	a, _, c, _, _ := single(t, e, "", "vault")
	write := func(v string) {
		t.Helper()
		_, err := srv.Client().KVv2(openbaotest.Mount).Put(context.Background(), org+"/db", map[string]any{"key": "dbkey", "value": v})
		if err != nil {
			t.Fatal(err)
		}
	}
	db2 := s.canaries.Next("vault-db-v2")
	write(db2)
	e.waitFile(c, "/db_password", file("dbkey", db2, ""), 30*time.Second)

	if err := e.agbot.Stop(); err != nil {
		t.Fatal(err)
	}
	db3 := s.canaries.Next("vault-db-v3")
	write(db3)
	if err := e.agbot.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.waitFile(c, "/db_password", file("dbkey", db3, ""), time.Minute)
	e.scanLive(a)
	b, err := os.ReadFile(e.agbot.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if found := leakscan.Find(b, s.canaries.All()); len(found) > 0 {
		t.Errorf("agbot log holds %v", found)
	}
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
}
