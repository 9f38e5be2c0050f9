package agreement

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dcontainer "github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// realProgram is the service every real container runs as /prog: `serve` prints "ready" and
// "got N" per SIGHUP and exits on SIGTERM; `cat FILE` prints a file.
const realProgram = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "cat" {
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
		return
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	fmt.Println("ready")
	for s := range sigs {
		if s == syscall.SIGTERM {
			os.Exit(0)
		}
		fmt.Printf("got %d\n", s.(syscall.Signal))
	}
}
`

// realNode is an agent's node side on the real kernel and engine: secretfs under a root of
// its own, a container worker with an agent id of its own, and the manager.
type realNode struct {
	t      testing.TB
	cli    *client.Client
	image  string
	root   string
	state  string
	agent  string
	suffix string // makes agreement ids unique: container names are global in the engine
	mode   secretfs.Mode
	size   int64
	logs   *syncbuf.Buffer
	fs     *secretfs.FS
	worker *container.Worker
	m      *Manager
	ctx    context.Context
}

func newRealNode(t testing.TB, mode secretfs.Mode, storeSize int64) *realNode {
	t.Helper()
	testenv.RequireRoot(t)
	cli := dockertest.Client(t)
	b := make([]byte, 4)
	rand.Read(b)
	n := &realNode{
		t: t, cli: cli, mode: mode, size: storeSize, logs: &syncbuf.Buffer{}, ctx: context.Background(),
		image: dockertest.BuildImage(t, cli, dockertest.Image{Name: "anax-test-agreement", Program: realProgram,
			User: "1000:1000", Cmd: []string{"serve"}}),
		root:   filepath.Join(t.TempDir(), "secrets"),
		state:  filepath.Join(t.TempDir(), "state"),
		agent:  "test-agreement-" + hex.EncodeToString(b),
		suffix: hex.EncodeToString(b),
	}
	t.Cleanup(n.cleanup)
	n.open()
	return n
}

func (n *realNode) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open starts the node side (as the daemon does at start-up) and recovers.
func (n *realNode) open() []*protocol.Resync {
	n.t.Helper()
	var err error
	if n.fs, err = secretfs.Open(secretfs.Options{Root: n.root, Mode: n.mode, StoreSize: n.size, Logger: n.logger()}); err != nil {
		n.t.Fatalf("secretfs: %v", err)
	}
	if n.worker, err = container.NewFromEnv(container.Options{AllowHostUIDs: []int{1000}, AgentID: n.agent, StopTimeout: 2 * time.Second, Logger: n.logger()}); err != nil {
		n.t.Fatalf("container worker: %v", err)
	}
	if n.m, err = Open(Options{StateDir: n.state, Stores: n.fs, Runner: n.worker, Logger: n.logger()}); err != nil {
		n.t.Fatalf("manager: %v", err)
	}
	rs, err := n.m.Recover(n.ctx)
	if err != nil {
		n.t.Fatalf("Recover: %v", err)
	}
	return rs
}

// close stops the node side as a clean agent shutdown does; stores and containers stay.
func (n *realNode) close() {
	n.t.Helper()
	if n.m == nil {
		return
	}
	if err := n.m.Shutdown(n.ctx); err != nil {
		n.t.Error(err)
	}
	n.fs.Close()
	n.worker.Close()
	n.m = nil
}

func (n *realNode) cleanup() {
	n.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if w, err := container.NewFromEnv(container.Options{AllowHostUIDs: []int{1000}, AgentID: n.agent, StopTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		list, _ := w.List(ctx)
		for _, c := range list {
			w.Stop(ctx, c.InstanceID)
		}
		w.Close()
	}
	if fs, err := secretfs.Open(secretfs.Options{Root: n.root, Logger: n.logger()}); err == nil {
		stores, _ := fs.Stores()
		for _, s := range stores {
			fs.Wipe(s.ID)
		}
		fs.Close()
	}
	linux.UnmountAll(n.root)
	scanForCanaries(n.t, n.state, n.logs.String())
}

func (n *realNode) meta(t protocol.MessageType, id string, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: id, From: agbotID, To: nodeID, Seq: seq, Time: time.Now().UTC()}
}

// service: web (api_token with SIGHUP, db_password), worker (api_token, tls_cert raw), sidecar.
func (n *realNode) service() protocol.Service {
	s := testService()
	s.Arch = arch.Node()
	for name, c := range s.Deployment.Services {
		c.Image = n.image
		s.Deployment.Services[name] = c
	}
	return s
}

func (n *realNode) propose(id string, vals map[string]protocol.SecretValue) *protocol.ProposalReply {
	return n.m.Propose(n.ctx, &protocol.Proposal{Meta: n.meta(protocol.TypeProposal, id, 1), Service: n.service(), Secrets: vals})
}

func (n *realNode) update(id string, seq uint64, full bool, vals map[string]protocol.SecretValue) *protocol.UpdateReply {
	u := &protocol.Update{Meta: n.meta(protocol.TypeUpdate, id, seq), Full: full, Secrets: map[string]protocol.ChangedSecret{}}
	for name, v := range vals {
		u.Secrets[name] = protocol.ChangedSecret{SecretValue: v, Reason: protocol.ReasonValueUpdated}
	}
	return n.m.Update(n.ctx, u)
}

// containers returns the agreement's running containers by spec name, from the engine.
func (n *realNode) containers(id string) map[string]container.Container {
	n.t.Helper()
	list, err := n.worker.List(n.ctx)
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]container.Container{}
	for _, c := range list {
		if c.InstanceID == instanceID(id) {
			out[c.Spec] = c
		}
	}
	return out
}

// read returns what the container reads at path.
func (n *realNode) read(containerID, path string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	ex, err := n.cli.ContainerExecCreate(ctx, containerID, dcontainer.ExecOptions{Cmd: []string{"/prog", "cat", path}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		n.t.Fatalf("exec in %s: %v", containerID, err)
	}
	att, err := n.cli.ContainerExecAttach(ctx, ex.ID, dcontainer.ExecAttachOptions{})
	if err != nil {
		n.t.Fatalf("exec attach: %v", err)
	}
	defer att.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, att.Reader); err != nil {
		n.t.Fatal(err)
	}
	return out.String()
}

// wantInside checks what each container reads for each secret, at /<name> and in the directory
// view: the value tagged tags[name].
func (n *realNode) wantInside(id string, tags map[string]string) {
	n.t.Helper()
	cs := n.containers(id)
	for spec, decl := range n.service().Deployment.Services {
		for name, d := range decl.Secrets {
			tag, ok := tags[name]
			if !ok {
				continue
			}
			v := values(tag, name)[name]
			want := v.Value
			if d.FileFormat() == protocol.FormatJSON {
				b, _ := json.Marshal(v)
				want = string(b)
			}
			for _, p := range []string{"/" + name, container.DirViewTarget + "/" + name} {
				if got := n.read(cs[spec].ID, p); got != want {
					n.t.Errorf("container %s reads %s = %q, want %q", spec, p, got, want)
				}
			}
		}
	}
}

func (n *realNode) startedAt(id string) map[string]string {
	n.t.Helper()
	out := map[string]string{}
	for spec, c := range n.containers(id) {
		insp, err := n.cli.ContainerInspect(n.ctx, c.ID)
		if err != nil {
			n.t.Fatal(err)
		}
		out[spec] = c.ID + "@" + insp.State.StartedAt
		raw, _ := json.Marshal(insp)
		if strings.Contains(string(raw), canaryMark) {
			n.t.Errorf("docker inspect of %s shows a secret value", spec)
		}
	}
	return out
}

// mountsUnder counts the mounts below the secretfs root (the root's own tmpfs excluded).
func (n *realNode) mountsUnder() int {
	n.t.Helper()
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		n.t.Fatal(err)
	}
	c := 0
	for _, m := range mounts {
		if strings.HasPrefix(m.Mountpoint, n.root+"/") {
			c++
		}
	}
	return c
}

// The whole life cycle on the real kernel and engine: propose, live update, agent restart
// without disturbance, a reboot's resync, orphans, cancel.
func TestRealLifecycle(t *testing.T) {
	n := newRealNode(t, "", 0)
	if n.fs.Mode() == secretfs.ModeRestart {
		testenv.Skip(t, "secretfs chose restart mode here (no mount privilege): no live update to test")
	}
	id := "agr-real-" + n.suffix
	if rep := n.propose(id, values("1")); rep.Status != protocol.StatusAccepted {
		t.Fatalf("proposal: %s %q", rep.Status, rep.Reason)
	}
	all := func(tag string) map[string]string {
		return map[string]string{"api_token": tag, "db_password": tag, "tls_cert": tag}
	}
	n.wantInside(id, all("1"))
	started := n.startedAt(id)
	if len(started) != 3 {
		t.Fatalf("containers: %v, want 3", started)
	}

	t.Run("update swaps live, no restart, onUpdate signal", func(t *testing.T) {
		if rep := n.update(id, 2, false, values("2", "api_token", "tls_cert")); rep.Status != protocol.StatusApplied {
			t.Fatalf("update: %s %q", rep.Status, rep.Reason)
		}
		n.wantInside(id, map[string]string{"api_token": "2", "db_password": "1", "tls_cert": "2"})
		if got := n.startedAt(id); fmt.Sprint(got) != fmt.Sprint(started) {
			t.Errorf("containers restarted: %v, before %v", got, started)
		}
		waitFor(t, func() bool { return strings.Contains(n.containerLog(n.containers(id)["web"].ID), "got 1") }, "web to get SIGHUP")
		if strings.Contains(n.containerLog(n.containers(id)["worker"].ID), "got") {
			t.Errorf("worker was signalled; only web asks for it")
		}
	})

	t.Run("agent restart leaves everything running", func(t *testing.T) {
		n.close()
		if rs := n.open(); len(rs) != 0 {
			t.Errorf("resyncs after a clean restart: %+v", rs)
		}
		if got := n.startedAt(id); fmt.Sprint(got) != fmt.Sprint(started) {
			t.Errorf("containers disturbed: %v, before %v", got, started)
		}
		if rep := n.update(id, 3, false, values("3", "db_password")); rep.Status != protocol.StatusApplied {
			t.Fatalf("update after restart: %s %q", rep.Status, rep.Reason)
		}
		n.wantInside(id, map[string]string{"api_token": "2", "db_password": "3", "tls_cert": "2"})
	})

	t.Run("a container stopped by hand is restarted at start-up", func(t *testing.T) {
		web := n.containers(id)["web"]
		if err := n.cli.ContainerStop(n.ctx, web.ID, dcontainer.StopOptions{}); err != nil {
			t.Fatal(err)
		}
		n.close()
		n.open()
		c := n.containers(id)["web"]
		if c.ID != web.ID || c.State != "running" {
			t.Errorf("web = %s %s, want %s running", c.ID, c.State, web.ID)
		}
		n.wantInside(id, map[string]string{"api_token": "2", "db_password": "3"})
		started = n.startedAt(id)
	})

	t.Run("orphans are removed at start-up", func(t *testing.T) {
		st, err := n.fs.Create(secretfs.Spec{ID: "orphan-" + n.suffix + "-web", UID: 1000, GID: 1000,
			Secrets: []secretfs.Secret{{Name: "x", Value: []byte(canary("x", "orphan")), Format: secretfs.FormatValueOnly}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.worker.Start(n.ctx, container.Instance{InstanceID: "orphan-" + n.suffix, Service: container.Service{Org: "acme", URL: "gone", Version: "1.0.0"}, Containers: []container.Spec{
			{Name: "web", Image: n.image, Secrets: []container.Secret{{Name: "x"}}, Store: st}}}); err != nil {
			t.Fatal(err)
		}
		n.close()
		n.open()
		if len(n.containers("orphan-"+n.suffix)) != 0 {
			t.Errorf("orphan container left")
		}
		stores, _ := n.fs.Stores()
		for _, s := range stores {
			if s.ID == "orphan-"+n.suffix+"-web" {
				t.Errorf("orphan store left")
			}
		}
		if !strings.Contains(n.logs.String(), "belong to no agreement") {
			t.Errorf("no log line about the orphans")
		}
		if got := n.startedAt(id); fmt.Sprint(got) != fmt.Sprint(started) {
			t.Errorf("containers disturbed: %v, before %v", got, started)
		}
	})

	t.Run("reboot: resync restores the values and the containers", func(t *testing.T) {
		n.close()
		linux.UnmountAll(n.root) // what a reboot does to /run
		rs := n.open()
		if len(rs) != 1 || rs[0].Agreement != id || rs[0].Seq != 3 {
			t.Fatalf("resyncs = %+v, want one for %s at 3", rs, id)
		}
		if err := rs[0].Validate(protocol.Limits{}); err != nil {
			t.Errorf("resync does not validate: %v", err)
		}
		if cs := n.containers(id); len(cs) != 0 {
			t.Errorf("containers left running without their secrets: %v", cs)
		}
		info, _ := n.m.Agreement(id)
		if info.Phase != PhaseResync {
			t.Errorf("phase %s, want resync", info.Phase)
		}
		if rep := n.update(id, 4, true, values("4")); rep.Status != protocol.StatusApplied {
			t.Fatalf("resync answer: %s %q", rep.Status, rep.Reason)
		}
		n.wantInside(id, all("4"))
		started = n.startedAt(id)
	})

	t.Run("cancel leaves nothing", func(t *testing.T) {
		rep, err := n.m.Cancel(n.ctx, &protocol.Cancel{Meta: n.meta(protocol.TypeCancel, id, 5)})
		if err != nil || rep.Status != protocol.StatusApplied {
			t.Fatalf("cancel = %v, %v", rep, err)
		}
		if cs := n.containers(id); len(cs) != 0 {
			t.Errorf("containers left: %v", cs)
		}
		if stores, _ := n.fs.Stores(); len(stores) != 0 {
			t.Errorf("stores left: %d", len(stores))
		}
		if c := n.mountsUnder(); c != 0 {
			t.Errorf("%d mounts left under the secretfs root", c)
		}
		if infos, _ := n.m.Agreements(); len(infos) != 0 {
			t.Errorf("agreements left: %d", len(infos))
		}
	})
}

// A store that can not take the new value (tmpfs full) fails the update; the store already
// swapped is put back, so every container reads the old value.
func TestRealUpdateFailureKeepsOldValues(t *testing.T) {
	n := newRealNode(t, "", 64<<10)
	id := "agr-full-" + n.suffix
	vals := values("1")
	big := vals["tls_cert"]
	big.Value += strings.Repeat("x", 40<<10) // the worker store is nearly full
	vals["tls_cert"] = big
	if rep := n.propose(id, vals); rep.Status != protocol.StatusAccepted {
		t.Fatalf("proposal: %s %q", rep.Status, rep.Reason)
	}
	started := n.startedAt(id)
	upd := values("2", "api_token")
	tok := upd["api_token"]
	tok.Value += strings.Repeat("y", 30<<10) // fits in web's store, not in worker's
	upd["api_token"] = tok
	rep := n.update(id, 2, false, upd)
	if rep.Status != protocol.StatusFailed || !strings.Contains(rep.Reason, "every secret keeps its old value") {
		t.Fatalf("update = %s %q, want failed keeping old values", rep.Status, rep.Reason)
	}
	// The worker store failed after web's was swapped: web's was put back.
	if !strings.Contains(rep.Reason, `secret store "`+storeID(id, "worker")+`"`) {
		t.Errorf("reason %q does not name the worker store", rep.Reason)
	}
	n.wantInside(id, map[string]string{"api_token": "1", "db_password": "1"})
	if info, _ := n.m.Agreement(id); info.Sequence != 1 {
		t.Errorf("sequence %d, want 1", info.Sequence)
	}
	if got := n.startedAt(id); fmt.Sprint(got) != fmt.Sprint(started) {
		t.Errorf("containers restarted: %v, before %v", got, started)
	}
	// A value that fits goes through.
	if rep := n.update(id, 3, false, values("3", "api_token")); rep.Status != protocol.StatusApplied {
		t.Fatalf("update: %s %q", rep.Status, rep.Reason)
	}
	n.wantInside(id, map[string]string{"api_token": "3"})
}

// In restart mode (no mount privilege) an update restarts the containers that mount a changed
// secret, which then read the new value.
func TestRealRestartMode(t *testing.T) {
	n := newRealNode(t, secretfs.ModeRestart, 0)
	id := "agr-restart-" + n.suffix
	if rep := n.propose(id, values("1")); rep.Status != protocol.StatusAccepted {
		t.Fatalf("proposal: %s %q", rep.Status, rep.Reason)
	}
	before := n.startedAt(id)
	if rep := n.update(id, 2, false, values("2", "db_password")); rep.Status != protocol.StatusApplied {
		t.Fatalf("update: %s %q", rep.Status, rep.Reason)
	}
	after := n.startedAt(id)
	if after["web"] == before["web"] {
		t.Errorf("web was not restarted in restart mode")
	}
	if after["worker"] != before["worker"] || after["sidecar"] != before["sidecar"] {
		t.Errorf("containers without the changed secret were restarted")
	}
	n.wantInside(id, map[string]string{"db_password": "2", "api_token": "1"})
	if info, _ := n.m.Agreement(id); info.Mode != secretfs.ModeRestart {
		t.Errorf("mode %s", info.Mode)
	}
	if _, err := n.m.Cancel(n.ctx, &protocol.Cancel{Meta: n.meta(protocol.TypeCancel, id, 3)}); err != nil {
		t.Fatal(err)
	}
}

func (n *realNode) containerLog(id string) string {
	n.t.Helper()
	rc, err := n.cli.ContainerLogs(n.ctx, id, dcontainer.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		n.t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, rc)
	return out.String()
}

// waitFor polls cond; the deadline only bounds a hung test, it is not a timing assertion.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkUpdateReal measures one applied update end to end on the node: manager, secretfs
// swap in a running container's store, onUpdate bookkeeping with the engine, state fsync.
func BenchmarkUpdateReal(b *testing.B) {
	n := newRealNode(b, "", 0)
	id := "agr-bench-" + n.suffix
	if rep := n.propose(id, values("1")); rep.Status != protocol.StatusAccepted {
		b.Fatalf("proposal: %s %q", rep.Status, rep.Reason)
	}
	b.Logf("secretfs mode %s", n.fs.Mode())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rep := n.update(id, uint64(i+2), false, values(fmt.Sprint(i), "db_password")); rep.Status != protocol.StatusApplied {
			b.Fatalf("update: %s %q", rep.Status, rep.Reason)
		}
	}
	b.StopTimer()
	n.m.Cancel(n.ctx, &protocol.Cancel{Meta: n.meta(protocol.TypeCancel, id, uint64(b.N+2))})
}
