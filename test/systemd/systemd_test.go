package systemd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
	"github.com/edge-secrets/anax-agent/test/packaging"
	"github.com/edge-secrets/anax-agent/test/reliability"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

const unit = "anax-agent.service"

// node is the booted machine with the agent installed from its .deb, an agbot on the host,
// and the service's container started by the agent under the unit.
type node struct {
	t     *testing.T
	ctx   context.Context
	m     *Machine
	s     *reliability.Scenario
	c     *leakscan.Canaries
	ctr   string // the service's container in the inner dockerd
	last  string // the value of db last written
	token string // the value of token
}

// service is the program of the service's image: started without arguments it logs, once,
// the size of each secret file it finds (never a byte of content) and waits; "cat FILE..."
// prints the files as JSON, like the e2e reader (e2e.Cat).
const service = `package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "cat" {
		out := map[string]string{}
		for _, f := range os.Args[2:] {
			b, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			out[f] = string(b)
		}
		json.NewEncoder(os.Stdout).Encode(out)
		return
	}
	for _, f := range []string{"/db_password", "/api_token"} {
		if fi, err := os.Stat(f); err != nil {
			fmt.Printf("start %s missing\n", f)
		} else {
			fmt.Printf("start %s %d bytes\n", f, fi.Size())
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
`

// TestAgentUnderSystemd installs anax-agent from the project's .deb in a Debian root file
// system booted with systemd as PID 1, and checks the unit as shipped: nothing starts before
// it is configured; systemctl start returns once the agent is READY; systemctl status shows
// its STATUS line; a secret update reaches a container the agent started under the unit's
// exact capability bounding set; the watchdog restarts a hung (SIGSTOPped) agent and
// Restart=on-failure a killed one, both with the containers untouched and their secrets still
// served; systemctl reload reloads in place.
func TestAgentUnderSystemd(t *testing.T) {
	n := boot(t)
	n.install()
	n.startConfigured()
	n.serviceRuns()
	t.Run("capabilities", n.checkCapabilities)
	t.Run("watchdog restarts a hung agent", func(t *testing.T) {
		n.restartedAfter(t, "SIGSTOP", "Watchdog timeout", 2*time.Minute)
	})
	t.Run("kill -9 restarts the agent", func(t *testing.T) {
		n.restartedAfter(t, "SIGKILL", "status=9/KILL", time.Minute)
	})
	t.Run("reload", n.reload)
	t.Run("upgrade", n.upgrade)
	t.Run("reboot", n.reboot)
	t.Run("no value leaked", n.noLeaks)
	t.Run("unregister leaves nothing", n.unregister)
}

func boot(t *testing.T) *node {
	t.Helper()
	testenv.RequireRoot(t)
	host := dockertest.Client(t)
	root, err := e2e.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	tarball, ok, err := RootFS(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		testenv.Skip(t, "no Debian root file system for systemd: run test/prepare.sh systemd (make test does)")
	}
	ref, err := ImportImage(ctx, host, tarball)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	share := filepath.Join(dir, "share")
	for _, d := range []string{share, filepath.Join(dir, "docker")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}[runtime.GOARCH]
	debs, err := packaging.Build(ctx, root, filepath.Join(dir, "pkg"), []string{arch}, []string{"deb"})
	if err != nil {
		t.Fatal(err)
	}
	deb, err := packaging.Find(debs, "anax-agent", arch, "deb")
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFile(deb, filepath.Join(share, "anax-agent.deb")); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("anax-systemd-%d", os.Getpid())
	m, err := Boot(ctx, host, ref, name, share, filepath.Join(dir, "docker"))
	if m != nil {
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := m.Run(context.Background(), "journalctl", "--no-pager", "-n", "80", "-u", unit)
				t.Logf("journal of %s:\n%s", unit, out)
			}
			if err := m.Close(context.Background()); err != nil {
				t.Errorf("removing the systemd container: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("booting systemd: %v", err)
	}
	bin, err := reliability.BuildBinaries(ctx, "", filepath.Join(dir, "bin"))
	if err != nil {
		t.Fatal(err)
	}
	image := dockertest.BuildImage(t, m.Inner, dockertest.Image{Name: "anax-systemd-service", Program: service, User: "1000:1000"})
	s, err := reliability.NewScenario(ctx, bin, m.Inner, image, filepath.Join(dir, "agbot"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("agbot: %v", err)
		}
	})
	if err := copyFile(s.Agbot.CA, filepath.Join(share, "agbot-ca.pem")); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, ctx: ctx, m: m, s: s, c: leakscan.New("systemd")}
	n.relay(root, share)
	return n
}

// relay makes the agbot's loopback address reach the host's agbot from inside the machine:
// the relay program as a unit of the machine (it survives the reboot) to a unix socket in the
// share, and from there this process to the agbot.
func (n *node) relay(root, share string) {
	t := n.t
	cmd := exec.CommandContext(n.ctx, "go", "build", "-trimpath", "-o", filepath.Join(share, "relay"), "./test/systemd/relay")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build relay: %v\n%s", err, out)
	}
	if err := Relay(n.ctx, filepath.Join(share, "agbot.sock"), n.s.Agbot.Addr); err != nil {
		t.Fatal(err)
	}
	unitFile := fmt.Sprintf("[Unit]\nDescription=test relay to the agbot\nBefore=%s\n[Service]\nExecStart=/share/relay %s /share/agbot.sock\nRestart=always\n[Install]\nWantedBy=multi-user.target\n", unit, n.s.Agbot.Addr)
	script := fmt.Sprintf("printf '%%s' '%s' >/etc/systemd/system/anax-test-relay.service && systemctl enable --now anax-test-relay.service", unitFile)
	if out, err := n.m.Run(n.ctx, "sh", "-c", script); err != nil {
		t.Fatalf("starting the relay in the machine: %v\n%s", err, out)
	}
}

// install installs the .deb with dpkg: the unit is in place and neither enabled nor started,
// since the default config names no agbot.
func (n *node) install() {
	t := n.t
	if out, err := n.m.Run(n.ctx, "dpkg", "-i", "/share/anax-agent.deb"); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	unitFile, err := n.m.Run(n.ctx, "cat", "/usr/lib/systemd/system/"+unit)
	if err != nil || string(unitFile) != linux.UnitFile {
		t.Errorf("installed unit differs from platform/linux/anax-agent.service (%v)", err)
	}
	for prop, want := range map[string]string{"UnitFileState": "disabled", "ActiveState": "inactive"} {
		if got, err := n.m.Show(n.ctx, unit, prop); err != nil || got != want {
			t.Errorf("after installing with the default config, %s = %q (%v), want %q", prop, got, err, want)
		}
	}
}

// startConfigured writes a config naming the agbot and starts the unit: systemctl start
// returns only once the agent sent READY, so its API answers at once, and its STATUS line
// shows in systemctl status.
func (n *node) startConfigured() {
	t := n.t
	metrics, err := e2e.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := json.Marshal(map[string]string{"agbot_url": n.s.Agbot.URL, "agbot_ca": "/etc/anax-agent/agbot-ca.pem",
		"org": reliability.Org, "metrics_listen": metrics, "log_level": "info"})
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("install -m 0600 /share/agbot-ca.pem /etc/anax-agent/agbot-ca.pem && printf '%%s' '%s' >/etc/anax-agent/config.json", cfg)
	if out, err := n.m.Run(n.ctx, "sh", "-c", script); err != nil {
		t.Fatalf("writing the config: %v\n%s", err, out)
	}
	if out, err := n.m.Run(n.ctx, "systemctl", "enable", "--now", unit); err != nil {
		t.Fatalf("systemctl enable --now: %v\n%s", err, out)
	}
	// No retry: the start job finished, so READY=1 came, after the agent's API listens.
	if out, err := n.m.Run(n.ctx, "hzn", "agent", "status"); err != nil {
		t.Fatalf("right after systemctl start the agent's API does not answer: %v\n%s", err, out)
	}
	if got, _ := n.m.Show(n.ctx, unit, "ActiveState"); got != "active" {
		t.Fatalf("ActiveState %q after systemctl start, want active", got)
	}
	status, _ := n.m.Run(n.ctx, "systemctl", "status", "--no-pager", unit)
	text, _ := n.m.Show(n.ctx, unit, "StatusText")
	if text == "" || !strings.Contains(string(status), `Status: "`+text+`"`) {
		t.Errorf("systemctl status shows no STATUS line of the agent (StatusText %q):\n%s", text, status)
	}
}

// serviceRuns registers the node (hzn inside the machine) and waits for the service's
// container, started by the agent under the unit, to read its secret; then a full update.
func (n *node) serviceRuns() {
	t := n.t
	s := n.s
	steps := []func() error{
		func() error { return s.CreateNode("node1", "tok1") },
		func() error { return s.PutSecret("db", "dbkey", n.c.Next("db"), "") },
		func() error { n.token = n.c.Next("token"); return s.PutSecret("token", "tokkey", n.token, "") },
		func() error {
			return s.PublishService("reader", map[string]string{"db_password": "", "api_token": protocol.FormatValueOnly})
		},
		func() error {
			return s.AddPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, true)
		},
	}
	for _, f := range steps {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	pol := `{"properties":[{"name":"zone","value":"reliability"}],"constraints":[]}`
	if out, err := n.m.Run(n.ctx, "sh", "-c", "printf '%s' '"+pol+"' >/tmp/policy.json && hzn register -n node1:tok1 --policy /tmp/policy.json"); err != nil {
		t.Fatalf("hzn register: %v\n%s", err, out)
	}
	if err := n.findService(); err != nil {
		t.Fatal(err)
	}
	n.update(t, "the first update under the unit")
}

// findService waits for the service's container to run in the inner dockerd.
func (n *node) findService() error {
	return e2e.Eventually(n.ctx, 3*time.Minute, time.Second, func() error {
		list, err := n.m.Inner.ContainerList(n.ctx, container.ListOptions{})
		if err != nil {
			return err
		}
		for _, c := range list {
			if c.Image == n.s.Image {
				n.ctr = c.ID
				return nil
			}
		}
		return fmt.Errorf("no running service container among %d", len(list))
	})
}

// update writes a new value and waits until the container reads it.
func (n *node) update(t *testing.T, what string) {
	t.Helper()
	v := n.c.Next("db")
	if err := n.s.PutSecret("db", "dbkey", v, ""); err != nil {
		t.Fatal(err)
	}
	n.last = v
	if err := waitRead(n.ctx, n.m.Inner, n.ctr, "/db_password", reliability.File("dbkey", v, "")); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func waitRead(ctx context.Context, cli *client.Client, ctr, path, want string) error {
	var last string
	err := e2e.Eventually(ctx, time.Minute, 100*time.Millisecond, func() error {
		got, err := e2e.Cat(ctx, cli, ctr, path)
		if err != nil {
			return err
		}
		if last = got[path]; last != want {
			return fmt.Errorf("%s reads %d bytes, not the value written", path, len(last))
		}
		return nil
	})
	return err
}

// checkCapabilities: the agent that served the update runs with exactly the unit's bounding
// set and no_new_privs.
func (n *node) checkCapabilities(t *testing.T) {
	pid, err := n.m.MainPID(n.ctx, unit)
	if err != nil || pid == 0 {
		t.Fatalf("MainPID %d: %v", pid, err)
	}
	status, err := n.m.Run(n.ctx, "cat", fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	p, err := linux.ReadUnitPrivileges()
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, c := range p.Capabilities {
		bit := -1
		for i, name := range capNames {
			if "CAP_"+name == c {
				bit = i
			}
		}
		if bit < 0 {
			t.Fatalf("unit capability %s unknown", c)
		}
		want |= 1 << bit
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	got, err := strconv.ParseUint(fields["CapBnd"], 16, 64)
	if err != nil || got != want {
		t.Errorf("agent CapBnd %s, want the unit's %016x (%v)", fields["CapBnd"], want, p.Capabilities)
	}
	if fields["NoNewPrivs"] != "1" {
		t.Errorf("agent NoNewPrivs %q, want 1", fields["NoNewPrivs"])
	}
}

// restartedAfter sends sig to the agent and waits for systemd to run a new one (journal line
// names why); the service container is the same, not restarted, still reads the current
// value, and the next update arrives.
func (n *node) restartedAfter(t *testing.T, sig, why string, timeout time.Duration) {
	before, err := n.m.MainPID(n.ctx, unit)
	if err != nil || before == 0 {
		t.Fatalf("MainPID %d: %v", before, err)
	}
	insp, err := n.m.Inner.ContainerInspect(n.ctx, n.ctr)
	if err != nil {
		t.Fatal(err)
	}
	startedAt := insp.State.StartedAt
	restarts, _ := n.m.Show(n.ctx, unit, "NRestarts")
	if out, err := n.m.Run(n.ctx, "kill", "-s", strings.TrimPrefix(sig, "SIG"), strconv.Itoa(before)); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	err = e2e.Eventually(n.ctx, timeout, 500*time.Millisecond, func() error {
		pid, err := n.m.MainPID(n.ctx, unit)
		if err != nil {
			return err
		}
		state, _ := n.m.Show(n.ctx, unit, "ActiveState")
		if pid == before || pid == 0 || state != "active" {
			return fmt.Errorf("MainPID %d (was %d), %s", pid, before, state)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %s systemd did not run the agent again: %v", sig, err)
	}
	if now, _ := n.m.Show(n.ctx, unit, "NRestarts"); now == restarts {
		t.Errorf("NRestarts still %s after %s", now, sig)
	}
	journal, _ := n.m.Run(n.ctx, "journalctl", "--no-pager", "-u", unit)
	if !strings.Contains(string(journal), why) {
		t.Errorf("the journal does not say %q after %s", why, sig)
	}
	insp, err = n.m.Inner.ContainerInspect(n.ctx, n.ctr)
	if err != nil || !insp.State.Running || insp.State.StartedAt != startedAt {
		t.Errorf("the service container was touched by the agent's restart: %v", err)
	}
	if err := waitRead(n.ctx, n.m.Inner, n.ctr, "/db_password", reliability.File("dbkey", n.last, "")); err != nil {
		t.Errorf("after %s the container no longer reads the current value: %v", sig, err)
	}
	n.update(t, "an update after "+sig)
}

// reload: systemctl reload (SIGHUP through ExecReload) reloads the configuration in the same
// process, which keeps serving.
func (n *node) reload(t *testing.T) {
	before, err := n.m.MainPID(n.ctx, unit)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := n.m.Run(n.ctx, "systemctl", "reload", unit); err != nil {
		t.Fatalf("systemctl reload: %v\n%s", err, out)
	}
	err = e2e.Eventually(n.ctx, 30*time.Second, 200*time.Millisecond, func() error {
		out, err := n.m.Run(n.ctx, "journalctl", "--no-pager", "-u", unit, fmt.Sprintf("_PID=%d", before))
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "SIGHUP: reloading the configuration") {
			return fmt.Errorf("no reload line from the agent %d yet", before)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := n.m.MainPID(n.ctx, unit); after != before {
		t.Errorf("reload replaced the agent (%d, was %d)", after, before)
	}
	n.update(t, "an update after the reload")
}

// noLeaks: no value written in the journal (every line the agent, dockerd and systemd logged),
// the agent's state directory, the container's configuration, or a process's argv or environ.
func (n *node) noLeaks(t *testing.T) {
	journal, err := n.m.Run(n.ctx, "journalctl", "--no-pager", "-o", "verbose")
	if err != nil {
		t.Fatal(err)
	}
	vals := n.c.All()
	if found := leakscan.Find(journal, vals); len(found) > 0 {
		t.Errorf("the journal holds %v", found)
	}
	state := fmt.Sprintf("/proc/%d/root/var/lib/anax-agent", n.m.Pid)
	leaks, _, files, err := leakscan.Files(state, nil, vals)
	if err != nil || files == 0 || len(leaks) > 0 {
		t.Errorf("state dir: %d files, leaks %v (%v)", files, leaks, err)
	}
	leakscan.CheckContainers(t, n.ctx, n.m.Inner, n.c, n.ctr)
	leakscan.CheckProcs(t, n.c)
}

// upgrade: installing the package over itself (what an upgrade runs: prerm upgrade, postinst
// configure OLD) keeps the operator's config, restarts the running agent, and leaves the
// service's container alone.
func (n *node) upgrade(t *testing.T) {
	before, err := n.m.MainPID(n.ctx, unit)
	if err != nil {
		t.Fatal(err)
	}
	insp, err := n.m.Inner.ContainerInspect(n.ctx, n.ctr)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := n.m.Run(n.ctx, "dpkg", "-i", "/share/anax-agent.deb"); err != nil {
		t.Fatalf("dpkg -i over the installed package: %v\n%s", err, out)
	}
	cfg, err := n.m.Run(n.ctx, "cat", "/etc/anax-agent/config.json")
	if err != nil || !strings.Contains(string(cfg), n.s.Agbot.URL) {
		t.Errorf("the upgrade replaced the operator's config (%v)", err)
	}
	after, _ := n.m.MainPID(n.ctx, unit)
	state, _ := n.m.Show(n.ctx, unit, "ActiveState")
	if after == before || after == 0 || state != "active" {
		t.Errorf("after the upgrade MainPID %d (was %d), %s: want a restarted, active agent", after, before, state)
	}
	now, err := n.m.Inner.ContainerInspect(n.ctx, n.ctr)
	if err != nil || !now.State.Running || now.State.StartedAt != insp.State.StartedAt {
		t.Errorf("the upgrade touched the service container: %v", err)
	}
	n.update(t, "an update after the upgrade")
}

// reboot: the machine shuts down and boots again while the value changes; the stores' tmpfs is
// gone and the state dir kept. dockerd boots first and must not run the service on missing or
// empty files; the agent, started by systemd, asks for a resync that restores every value, and
// the container runs again with them. Updates keep arriving.
func (n *node) reboot(t *testing.T) {
	before := n.ctr
	if err := n.m.Reboot(n.ctx); err != nil {
		t.Fatal(err)
	}
	// Changed while the machine boots (the agent is not up yet, or just started).
	v := n.c.Next("db")
	if err := n.s.PutSecret("db", "dbkey", v, ""); err != nil {
		t.Fatal(err)
	}
	n.last = v
	if err := n.findService(); err != nil {
		t.Fatalf("after the reboot the service does not run again: %v", err)
	}
	want := map[string]string{"/db_password": reliability.File("dbkey", v, ""), "/api_token": reliability.File("tokkey", n.token, protocol.FormatValueOnly)}
	for path, content := range want {
		if err := waitRead(n.ctx, n.m.Inner, n.ctr, path, content); err != nil {
			t.Errorf("after the reboot: %v", err)
		}
	}
	journal, _ := n.m.Run(n.ctx, "journalctl", "--no-pager", "-b", "-u", unit)
	if !strings.Contains(string(journal), "asked the agbot for current values (resync)") {
		t.Errorf("no resync in this boot's journal of the agent")
	}
	n.checkStarts(t, before)
	n.update(t, "an update after the reboot")
}

// checkStarts: since the boot, dockerd started no container but the service's current one
// (old, the one before the reboot, stays down: its stores are gone), and the service's log,
// one line per file at each start, shows every file present and non-empty.
func (n *node) checkStarts(t *testing.T, old string) {
	// dockerd's events go back to its start, this boot.
	msgs, errs := n.m.Inner.Events(n.ctx, events.ListOptions{Since: "0", Until: strconv.FormatInt(time.Now().Unix()+1, 10),
		Filters: filters.NewArgs(filters.Arg("type", "container"), filters.Arg("event", "start"))})
	seen := 0
	for done := false; !done; {
		select {
		case m, ok := <-msgs:
			if !ok {
				done = true
				break
			}
			seen++
			if m.Actor.ID != n.ctr {
				t.Errorf("dockerd started container %.12s after the reboot (the service's old one is %.12s, its current %.12s)", m.Actor.ID, old, n.ctr)
			}
		case err := <-errs:
			if err != nil && err != io.EOF {
				t.Fatalf("docker events: %v", err)
			}
			done = true
		}
	}
	if seen == 0 {
		t.Errorf("dockerd reports no container start since the boot, not even the service's")
	}
	rc, err := n.m.Inner.ContainerLogs(n.ctx, n.ctr, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out, errb strings.Builder
	if _, err := stdcopy.StdCopy(&out, &errb, rc); err != nil {
		t.Fatal(err)
	}
	starts := 0
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "start" {
			t.Errorf("service log line %q", line)
			continue
		}
		if f[1] == "/db_password" {
			starts++
		}
		if f[2] == "missing" || f[2] == "0" {
			t.Errorf("the service started with %s %s", f[1], f[2])
		}
	}
	if starts < 1 {
		t.Errorf("the service's log shows no start:\n%s", out.String())
	}
}

// unregister: hzn unregister cancels the agreement; no store mount, no container and no
// agreement are left on the machine.
func (n *node) unregister(t *testing.T) {
	roots := map[string]bool{"/run/anax-agent/secrets": true, "/run/anax-agent/ess": true}
	if out, err := n.m.Run(n.ctx, "hzn", "unregister", "-f"); err != nil {
		t.Fatalf("hzn unregister: %v\n%s", err, out)
	}
	err := e2e.Eventually(n.ctx, time.Minute, 500*time.Millisecond, func() error {
		list, err := n.m.Inner.ContainerList(n.ctx, container.ListOptions{All: true})
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return fmt.Errorf("%d containers left", len(list))
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", n.m.Pid))
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			// The roots themselves stay (the shared secrets root, the ESS tmpfs).
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], "/run/anax-agent/") && !roots[f[4]] {
				return fmt.Errorf("mount %s left", f[4])
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	out, err := n.m.Run(n.ctx, "hzn", "agreement", "list")
	if err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("agreements after unregister: %s (%v)", out, err)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
