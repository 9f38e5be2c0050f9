package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/leakscan"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// The suite builds the binaries once, runs its scenarios in parallel (each with its own agbot,
// agents, state dirs, sockets and container-label ids, on one Docker engine), then scans
// everything the run left for the secret values it used.
//
//	go test ./test/e2e/ -run 'TestE2E' -v          (root, Docker; OpenBao from test/openbao.sh)
//	go test ./test/e2e/ -run 'TestE2E/scenarios/hostile'

type suite struct {
	dir    string
	bin    *Binaries
	docker *client.Client
	image  string // FROM scratch, reader, USER app (1000:1000)

	canaries *leakscan.Canaries

	mu    sync.Mutex
	roots []string // agents' secrets roots (tmpfs: not scanned as disk)
}

var (
	suiteOnce sync.Once
	theSuite  *suite
	suiteErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theSuite != nil {
		if err := theSuite.remove(); err != nil && code == 0 {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// getSuite prepares the suite once: root, Docker, binaries, image.
func getSuite(t testing.TB) *suite {
	t.Helper()
	testenv.RequireRoot(t)
	dockertest.Client(t) // skips (fails in CI) without an engine
	suiteOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		s := &suite{canaries: leakscan.New("e2e")}
		if s.dir, suiteErr = os.MkdirTemp("", "anax-e2e-"); suiteErr != nil {
			return
		}
		theSuite = s
		if s.bin, suiteErr = Build(ctx, filepath.Join(s.dir, "bin")); suiteErr != nil {
			return
		}
		if s.docker, suiteErr = Docker(ctx); suiteErr != nil {
			return
		}
		// A name of this run's own: the tag is a content hash, so two runs on one engine (a
		// developer's beside CI's) would otherwise share it, and the first to finish would
		// remove the image under the other.
		s.image, suiteErr = BuildImage(ctx, s.docker, s.bin.Reader, Image{Name: "anax-e2e-reader-" + s.canaries.RunID(), User: "app",
			Files: map[string][]byte{
				"etc/passwd": []byte("root:x:0:0:root:/:/prog\napp:x:1000:1000:app:/:/prog\n"),
				"etc/group":  []byte("root:x:0:\napp:x:1000:\n"),
			}})
	})
	if suiteErr != nil {
		t.Fatalf("e2e suite set-up: %v", suiteErr)
	}
	return theSuite
}

// remove deletes what the whole run made (after the leak scan read it). A mount a scenario
// left under the run's directory beyond the secrets roots (an ESS tmpfs, say) is an error:
// the agent or a scenario's clean-up forgot it; it is detached all the same.
func (s *suite) remove() error {
	s.mu.Lock()
	roots := append([]string(nil), s.roots...)
	s.mu.Unlock()
	for _, r := range roots {
		_ = UnmountAll(r)
	}
	var leftErr error
	if left, err := MountsUnder(s.dir); err == nil && len(left) > 0 {
		leftErr = fmt.Errorf("mounts left under %s after every scenario's clean-up: %v", s.dir, left)
		for i := len(left) - 1; i >= 0; i-- { // deepest first
			_ = UnmountAll(left[i])
		}
	}
	if s.docker != nil && s.image != "" {
		_ = RemoveImage(context.Background(), s.docker, s.image)
	}
	if os.Getenv("E2E_KEEP") == "" {
		os.RemoveAll(s.dir)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: kept %s\n", s.dir)
	}
	return leftErr
}

// TestE2E runs the scenarios in parallel, then scans for leaks once they are all done.
func TestE2E(t *testing.T) {
	s := getSuite(t)
	t.Run("scenarios", func(t *testing.T) {
		t.Run("delivery/embedded", func(t *testing.T) { t.Parallel(); testDelivery(t, s, false) })
		t.Run("delivery/openbao", func(t *testing.T) { t.Parallel(); testDelivery(t, s, true) })
		t.Run("vault-direct-writes", func(t *testing.T) { t.Parallel(); testVaultDirect(t, s) })
		t.Run("restart-and-reboot", func(t *testing.T) { t.Parallel(); testRestartAndReboot(t, s) })
		t.Run("agbot-away", func(t *testing.T) { t.Parallel(); testAgbotAway(t, s) })
		t.Run("hostile", func(t *testing.T) { t.Parallel(); testHostile(t, s) })
		t.Run("daemon", func(t *testing.T) { t.Parallel(); testDaemon(t, s) })
		t.Run("rotation-under-unit", func(t *testing.T) { t.Parallel(); testRotationUnderUnit(t, s) })
		t.Run("ess-api", func(t *testing.T) { t.Parallel(); testESS(t, s) })
		t.Run("rekey", func(t *testing.T) { t.Parallel(); testRekey(t, s) })
		t.Run("anax-formats", func(t *testing.T) { t.Parallel(); testAnaxFormats(t, s) })
		t.Run("ha-failover", func(t *testing.T) { t.Parallel(); testHAFailover(t, s) })
	})
	t.Run("leak-scan", func(t *testing.T) { testLeakScan(t, s) })
}

// testLeakScan reads every file the run left (agbot and agent logs, state dirs, agbot data
// dirs, configs; container logs and docker inspect were scanned while the scenarios ran) and
// every process's argv and environment for the secret values the scenarios used. The
// secrets roots are tmpfs and must hold no store by now.
func testLeakScan(t *testing.T, s *suite) {
	s.mu.Lock()
	roots := append([]string(nil), s.roots...)
	s.mu.Unlock()
	for _, r := range roots {
		if entries, _ := storeEntries(r); len(entries) > 0 {
			t.Errorf("secrets root %s still holds stores %v", r, entries)
		}
	}
	leakscan.Check(t, s.canaries, leakscan.Scan{Root: s.dir, Skip: append(roots, s.bin.Dir), MinFiles: 10})
}

func storeEntries(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "stores"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out, err
}

// scanProcesses fails the test for any canary in a process's argv or environment now.
func (s *suite) scanProcesses(t testing.TB) {
	t.Helper()
	leakscan.CheckProcs(t, s.canaries)
}

// scanContainers reads docker inspect and the container log of every container of agentIDs.
func (s *suite) scanContainers(t testing.TB, ctx context.Context, agentIDs ...string) {
	t.Helper()
	for _, id := range agentIDs {
		cs, err := ContainersOf(ctx, s.docker, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			leakscan.CheckContainers(t, ctx, s.docker, s.canaries, c.ID)
		}
	}
}

// env is one scenario: an agbot and its agents under their own directory.
type env struct {
	t     testing.TB
	s     *suite
	ctx   context.Context
	dir   string
	agbot *Agbot
}

const org = "e2eorg"

// newEnv starts an agbot for a scenario (vault nil: embedded manager).
func (s *suite) newEnv(t testing.TB, name string, vault *Vault) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	t.Cleanup(cancel)
	dir := filepath.Join(s.dir, strings.ReplaceAll(name, "/", "-"))
	b, err := NewAgbot(ctx, s.bin, dir, org, "admin", "admin-pw", vault)
	if err != nil {
		t.Fatal(err)
	}
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
	return &env{t: t, s: s, ctx: ctx, dir: dir, agbot: b}
}

// agent starts an agent (agbotURL "" for the agbot itself) and cleans up after it: stops it,
// removes its containers, unmounts its secrets root.
func (e *env) agent(name, agbotURL string) *Agent {
	e.t.Helper()
	return e.agentWrapped(name, agbotURL, nil)
}

// agentWrapped is agent with a command line before the agent's own (UnitWrap).
func (e *env) agentWrapped(name, agbotURL string, wrap []string) *Agent {
	e.t.Helper()
	a, err := NewAgent(e.s.bin, e.dir, name, e.agbot, agbotURL)
	if err != nil {
		e.t.Fatal(err)
	}
	a.Wrap = wrap
	e.s.mu.Lock()
	e.s.roots = append(e.s.roots, a.Config.SecretsRoot, a.Config.ESSDir())
	e.s.mu.Unlock()
	e.t.Cleanup(func() {
		if a.Proc() != nil {
			if err := a.Stop(); err != nil {
				e.t.Errorf("agent %s: %v", a.Name, err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = RemoveContainersOf(ctx, e.s.docker, a.ID())
		_ = a.UnmountRoots()
	})
	if err := a.Start(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return a
}

// hzn runs hzn against the agbot as auth ("user:password") and fails the test on error.
func (e *env) hzn(auth string, args ...string) string {
	e.t.Helper()
	out, err := e.agbot.Hzn(e.ctx, auth, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// putSecret stores a secret through hzn, the value on stdin (never on a command line).
func (e *env) putSecret(auth, name, key, value, node string) {
	e.t.Helper()
	args := []string{"sm", "secret", "add", "-O", "--secretKey", key, "-f", "-"}
	if node != "" {
		args = append(args, "-n", node)
	}
	args = append(args, name)
	if _, err := runHzn(e.ctx, e.s.bin.Hzn, e.agbot.Env(auth), strings.NewReader(value), args...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) writeJSON(name string, v any) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// serviceDef is a service of one container "main" running the reader, declaring secrets
// (name -> format: "" or "value_only").
func (e *env) serviceDef(url string, secrets map[string]string) map[string]any {
	decl := map[string]any{}
	for name, format := range secrets {
		d := map[string]any{"description": name}
		if format != "" {
			d["format"] = format
		}
		decl[name] = d
	}
	return map[string]any{"org": org, "url": url, "version": "1.0.0", "arch": arch.Node(),
		"deployment": map[string]any{"services": map[string]any{"main": map[string]any{"image": e.s.image, "secrets": decl}}}}
}

func (e *env) publishService(url string, secrets map[string]string) {
	e.t.Helper()
	e.hzn(e.agbot.Admin, "exchange", "service", "publish", "-f", e.writeJSON("service-"+url+".json", e.serviceDef(url, secrets)))
}

// addPolicy binds a service's secrets (service name -> manager name) for nodes with zone == e2e.
func (e *env) addPolicy(name, url string, bindings map[string]string, nodeLevel bool) {
	e.t.Helper()
	e.addPolicyAs(e.agbot.Admin, name, url, bindings, nodeLevel)
}

// addPolicyAs publishes the policy as auth (hzn's user:password), its owner: a policy binds
// only secrets its owner may read.
func (e *env) addPolicyAs(auth, name, url string, bindings map[string]string, nodeLevel bool) {
	e.t.Helper()
	var list []any
	for svc, mgr := range bindings {
		list = append(list, map[string]string{svc: mgr})
	}
	pol := map[string]any{
		"service":     map[string]any{"name": url, "org": org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"zone == e2e"},
		"secretBinding": []any{map[string]any{
			"serviceOrgid": org, "serviceUrl": url, "serviceArch": "*", "serviceVersionRange": "[0.0.0,INFINITY)",
			"enableNodeLevelSecrets": nodeLevel, "secrets": list,
		}},
	}
	e.hzn(auth, "exchange", "deployment", "addpolicy", "-f", e.writeJSON("policy-"+name+".json", pol), name)
}

// register registers an agent's node (zone e2e) with the node token.
func (e *env) register(a *Agent, node, token string) {
	e.t.Helper()
	pol := e.writeJSON("node-policy-"+node+".json", map[string]any{
		"properties": []any{map[string]any{"name": "zone", "value": "e2e"}}, "constraints": []string{}})
	if _, err := a.Hzn(e.ctx, "register", "-n", node+":"+token, "--policy", pol); err != nil {
		e.t.Fatal(err)
	}
}

// active waits for the agreement of service url on a and returns its one container id.
func (e *env) active(a *Agent, url string) (agreementID, containerID string) {
	e.t.Helper()
	in, err := a.ActiveAgreement(e.ctx, url, 2*time.Minute)
	if err != nil {
		e.t.Fatalf("%s: %v", a.Name, err)
	}
	return in.ID, in.Containers[0].ContainerID
}

// file is the content of a secret file: anax's JSON, or the raw value.
func file(key, value, format string) string {
	return string(protocol.SecretValue{Key: key, Value: value}.FileContent(protocol.SecretDecl{Format: format}))
}

// wantFiles checks files inside a container, both at /<name> and /open-horizon-secrets/<name>.
func (e *env) wantFiles(container string, want map[string]string) {
	e.t.Helper()
	var paths []string
	for name := range want {
		paths = append(paths, "/"+name, "/open-horizon-secrets/"+name)
	}
	got, err := Cat(e.ctx, e.s.docker, container, paths...)
	if err != nil {
		e.t.Fatal(err)
	}
	for name, w := range want {
		for _, p := range []string{"/" + name, "/open-horizon-secrets/" + name} {
			if got[p] != w {
				e.t.Errorf("container %.12s %s = %s, want %s", container, p, e.s.canaries.Describe(got[p]), e.s.canaries.Describe(w))
			}
		}
	}
}

// waitFile waits until a file inside a container holds want.
func (e *env) waitFile(container, path, want string, timeout time.Duration) {
	e.t.Helper()
	var last string
	err := Eventually(e.ctx, timeout, 50*time.Millisecond, func() error {
		got, err := Cat(e.ctx, e.s.docker, container, path)
		if err != nil {
			return err
		}
		if last = got[path]; last != want {
			return fmt.Errorf("%s is %s", path, e.s.canaries.Describe(last))
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("container %.12s: want %s: %v", container, e.s.canaries.Describe(want), err)
	}
}

// startInfo is when a container started and how often the engine restarted it.
func (e *env) startInfo(container string) string {
	e.t.Helper()
	insp, err := e.s.docker.ContainerInspect(e.ctx, container)
	if err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("started %s, restarts %d, running %v", insp.State.StartedAt, insp.RestartCount, insp.State.Running)
}

// wantClean checks that nothing of agent a's agreements is left: no container with its label,
// no store, no mount below its secrets root but the root, and (when unregistered) no
// registration or keys in its state dir.
func (e *env) wantClean(a *Agent, unregistered bool) {
	e.t.Helper()
	err := Eventually(e.ctx, 30*time.Second, 100*time.Millisecond, func() error {
		cs, err := ContainersOf(e.ctx, e.s.docker, a.ID())
		if err != nil {
			return err
		}
		if len(cs) > 0 {
			return fmt.Errorf("%d containers left", len(cs))
		}
		mounts, err := MountsUnder(a.Config.SecretsRoot)
		if err != nil {
			return err
		}
		for _, m := range mounts {
			if m != a.Config.SecretsRoot {
				return fmt.Errorf("mount left at %s", m)
			}
		}
		if entries, _ := storeEntries(a.Config.SecretsRoot); len(entries) > 0 {
			return fmt.Errorf("stores left: %v", entries)
		}
		for _, sub := range []string{"publish", "feed", "view"} {
			if entries, _ := os.ReadDir(filepath.Join(a.Config.SecretsRoot, sub)); len(entries) > 0 {
				return fmt.Errorf("%s/ not empty: %d entries", sub, len(entries))
			}
		}
		st, err := a.Status()
		if err != nil {
			return err
		}
		if st.Agreements.Total != 0 || st.Secretfs.Stores != 0 {
			return fmt.Errorf("status: %d agreements, %d stores", st.Agreements.Total, st.Secretfs.Stores)
		}
		if unregistered {
			if st.Registered {
				return fmt.Errorf("still registered")
			}
			for _, f := range []string{"registration.json", "node-keys.json"} {
				if _, err := os.Stat(filepath.Join(a.Config.StateDir, f)); err == nil {
					return fmt.Errorf("%s left in the state dir", f)
				}
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("agent %s not clean: %v", a.Name, err)
	}
}

// scanLive scans process argv/environ and the agents' containers while they run.
func (e *env) scanLive(agents ...*Agent) {
	e.t.Helper()
	e.s.scanProcesses(e.t)
	var ids []string
	for _, a := range agents {
		ids = append(ids, a.ID())
	}
	e.s.scanContainers(e.t, e.ctx, ids...)
}

// logHas waits until an agent's log has a line holding every one of parts.
func logHas(t testing.TB, path string, timeout time.Duration, parts ...string) string {
	t.Helper()
	var line string
	err := Eventually(context.Background(), timeout, 50*time.Millisecond, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n") {
			ok := true
			for _, p := range parts {
				if !strings.Contains(l, p) {
					ok = false
					break
				}
			}
			if ok {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no line with %q in %s", parts, path)
	})
	if err != nil {
		t.Fatal(err)
	}
	return line
}
