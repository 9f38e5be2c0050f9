package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agent"
)

// notifySocket is a systemd NOTIFY_SOCKET: a unixgram socket that records what it receives.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	got  []string
}

func newNotifySocket(t *testing.T, dir string) *notifySocket {
	n := &notifySocket{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n.conn = conn
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// wait waits for a datagram holding want.
func (n *notifySocket) wait(t *testing.T, want string, timeout time.Duration) string {
	t.Helper()
	var found string
	err := Eventually(t.Context(), timeout, 20*time.Millisecond, func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, g := range n.got {
			if strings.Contains(g, want) {
				found = g
				return nil
			}
		}
		return fmt.Errorf("no %q among %d notifications", want, len(n.got))
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// testDaemon runs the agent as systemd would (NOTIFY_SOCKET, WATCHDOG_USEC, INVOCATION_ID) and
// checks: READY, STATUS and WATCHDOG notifications; JSON logs; core dumps off and umask 077;
// a config change applied without a restart (log level, poll wait), an invalid one refused;
// SIGHUP reload; the store guard repairing changes the agent did not make; the metrics.
func testDaemon(t *testing.T, s *suite) {
	e := s.newEnv(t, "daemon", nil)
	admin := e.agbot.Admin
	e.hzn(admin, "exchange", "node", "create", "-n", "node1:tok1")
	e.publishService("reader", map[string]string{"db_password": "", "api_token": "value_only"})
	e.addPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, true)
	db1, tok := s.canaries.Next("daemon-db-v1"), s.canaries.Next("daemon-token")
	e.putSecret(admin, "db", "dbkey", db1, "")
	e.putSecret(admin, "token", "tokkey", tok, "")

	a, err := NewAgent(s.bin, e.dir, "node1", e.agbot, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := newNotifySocket(t, a.Dir)
	a.Env = []string{"NOTIFY_SOCKET=" + ns.path, "WATCHDOG_USEC=1000000", "INVOCATION_ID=0123456789abcdef0123456789abcdef"}
	s.mu.Lock()
	s.roots = append(s.roots, a.Config.SecretsRoot)
	s.mu.Unlock()
	t.Cleanup(func() {
		if a.Proc() != nil {
			a.Stop()
		}
		RemoveContainersOf(e.ctx, s.docker, a.ID())
		a.UnmountRoots() // the stores and the ESS API's tmpfs
	})
	if err := a.Start(e.ctx); err != nil {
		t.Fatal(err)
	}
	pid := a.Proc().Pid()

	// 1. systemd: READY with a status line, watchdog pings (every half of WatchdogSec).
	ready := ns.wait(t, "READY=1", 10*time.Second)
	if !strings.Contains(ready, "STATUS=not registered") {
		t.Errorf("READY without a status line: %q", ready)
	}
	ns.wait(t, "WATCHDOG=1", 5*time.Second)

	// 2. Logs are JSON under systemd, one object per line.
	logHas(t, a.LogPath, 5*time.Second, `"msg":"anax-agent ready"`)
	raw, _ := os.ReadFile(a.LogPath)
	for i, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line %d is not JSON: %.80s", i+1, line)
		}
	}

	// 3. Core dumps off, umask 077.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Umask:\t0077") {
		t.Errorf("agent umask: %s", grepLine(string(status), "Umask"))
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if l := grepLine(string(limits), "Max core file size"); !strings.Contains(l, " 0 ") {
		t.Errorf("core file limit: %q", l)
	}
	if st, err := a.Status(); err != nil || st.CoreDumps {
		t.Errorf("status says core dumps %v (%v), want off", st.CoreDumps, err)
	}
	var sst syscall.Stat_t
	if err := syscall.Stat(a.Config.APISocket, &sst); err != nil || sst.Mode&0o777 != 0o600 {
		t.Errorf("api socket mode %#o (%v), want 0600", sst.Mode&0o777, err)
	}

	// A second agent with the same state dir and secrets root stops at once, touching nothing.
	twin := *a
	twin.Name, twin.Env = "twin", nil
	twin.Config.APISocket = filepath.Join(a.Dir, "twin.sock")
	twin.Config.MetricsListen = ""
	twin.ConfigPath, twin.LogPath = filepath.Join(a.Dir, "twin.json"), filepath.Join(a.Dir, "twin.log")
	if err := twin.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	if err := twin.Start(e.ctx); err == nil || !strings.Contains(err.Error(), "exited") {
		twin.Stop()
		t.Fatalf("a second agent on the same state dir: %v, want it to exit", err)
	}
	logHas(t, twin.LogPath, 5*time.Second, "in use by another agent")
	if _, err := a.Status(); err != nil {
		t.Fatalf("the first agent after its twin tried: %v", err)
	}

	// 4. Register; the status line follows.
	e.register(a, "node1", "tok1")
	_, c := e.active(a, "reader")
	ns.wait(t, "STATUS=node "+org+"/node1: 1 agreements, agbot connected", 10*time.Second)
	for _, f := range []string{"registration.json", "node-keys.json", "agreements.db"} {
		fi, err := os.Stat(filepath.Join(a.Config.StateDir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("state file %s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}

	// 5. Reload from the file, no restart: log level and poll wait change.
	a.Config.LogLevel = "debug"
	a.Config.PollWait = agent.Duration(7 * time.Second)
	if err := a.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 10*time.Second, "configuration reloaded", `"log_level":"DEBUG"`)
	if st, _ := a.Status(); st.LogLevel != "DEBUG" || st.PollWait != "7s" {
		t.Errorf("after reload: level %s, poll wait %s", st.LogLevel, st.PollWait)
	}
	// An invalid file changes nothing.
	if err := os.WriteFile(a.ConfigPath, []byte(`{"log_level": "loud"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 10*time.Second, "configuration not reloaded", "log_level")
	if st, _ := a.Status(); st.LogLevel != "DEBUG" {
		t.Errorf("an invalid config changed the level to %s", st.LogLevel)
	}
	// SIGHUP reloads too.
	a.Config.LogLevel = "info"
	raw, _ = json.Marshal(a.Config)
	if err := os.WriteFile(a.ConfigPath+".new", raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(a.ConfigPath+".new", a.ConfigPath); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(pid, syscall.SIGHUP)
	if err := Eventually(e.ctx, 10*time.Second, 50*time.Millisecond, func() error {
		if st, _ := a.Status(); st.LogLevel != "INFO" {
			return fmt.Errorf("level %s", st.LogLevel)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if a.Proc().Pid() != pid {
		t.Fatal("the agent restarted")
	}

	// 6. Changes the agent did not make are repaired, with a log line.
	store := filepath.Join(a.Config.SecretsRoot, "stores")
	entries, err := os.ReadDir(store)
	if err != nil || len(entries) != 1 {
		t.Fatalf("stores: %v %v", entries, err)
	}
	versions := filepath.Join(store, entries[0].Name(), "v", "db_password")
	if err := os.Chmod(newest(t, versions), 0o644); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 10*time.Second, "secret store changed by someone other than the agent", "mode 0644")
	e.waitFile(c, "/db_password", file("dbkey", db1, ""), 20*time.Second)
	if err := Eventually(e.ctx, 20*time.Second, 50*time.Millisecond, func() error {
		st, err := Stat(e.ctx, s.docker, c, "/db_password")
		if err != nil {
			return err
		}
		if st["/db_password"].Mode != "0400" {
			return fmt.Errorf("mode %s", st["/db_password"].Mode)
		}
		return nil
	}); err != nil {
		t.Errorf("mode not repaired: %v", err)
	}
	// Content overwritten behind the agent's back: the agbot's current value comes back.
	if err := os.WriteFile(newest(t, versions), []byte(`{"key":"dbkey","value":"tampered"}`), 0o400); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 10*time.Second, "secret store changed by someone other than the agent", "content changed")
	e.waitFile(c, "/db_password", file("dbkey", db1, ""), 20*time.Second)
	logHas(t, a.LogPath, 20*time.Second, "secret store repaired from the agbot's current values")
	// An entry added to the directory view is removed.
	view := filepath.Join(store, entries[0].Name(), "view", "intruder")
	if err := os.WriteFile(view, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	logHas(t, a.LogPath, 10*time.Second, "intruder", "appeared")
	if err := Eventually(e.ctx, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := os.Stat(view); err == nil {
			return fmt.Errorf("%s still there", view)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// 7. An update after all this, and the metrics.
	db2 := s.canaries.Next("daemon-db-v2")
	e.putSecret(admin, "db", "dbkey", db2, "")
	e.waitFile(c, "/db_password", file("dbkey", db2, ""), 20*time.Second)
	for name, min := range map[string]float64{
		"anax_agent_agreements":                                        1,
		`anax_agent_secretfs_mode{mode="mount-swap"}`:                  1,
		"anax_agent_secret_swaps_total":                                1,
		"anax_agent_update_apply_seconds_count":                        1,
		`anax_agent_failures_total{op="repair"}`:                       1,
		`anax_agent_messages_total{result="accepted",type="proposal"}`: 1,
	} {
		if strings.Contains(name, "mount-swap") {
			if st, _ := a.Status(); st.Secretfs.Mode != "mount-swap" {
				name = `anax_agent_secretfs_mode{mode="` + string(st.Secretfs.Mode) + `"}`
			}
		}
		v, err := a.Metric(name)
		if err != nil || v < min {
			t.Errorf("metric %s = %v (%v), want at least %v", name, v, err, min)
		}
	}
	e.scanLive(a)
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		t.Logf("agent with one agreement: %s", strings.Join(strings.Fields(grepLine(string(st), "VmRSS")), " "))
	}

	// 8. A clean stop says so to systemd.
	if err := a.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	ns.wait(t, "STOPPING=1", 5*time.Second)
}

// newest is the highest-numbered version file in dir (secretfs: v/<name>/<gen>).
func newest(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	best, bestN := "", -1
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > bestN {
			best, bestN = e.Name(), n
		}
	}
	if best == "" {
		t.Fatalf("no version in %s", dir)
	}
	return filepath.Join(dir, best)
}

func grepLine(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}
