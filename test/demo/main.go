// Command demo is `make demo`: an agbot (embedded secrets manager) and an agent on loopback
// under a temporary directory, a FROM-scratch container reading its secrets, a live update, a
// node-specific override and its fallback, and a clean unregister, each step one line with its
// timing. Ctrl-C or any failure cleans up everything it started. It needs Linux, root and a
// Docker engine (make demo runs test/prepare.sh docker first).
//
//	go run ./test/demo [-bin DIR] [-keep]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/test/e2e"
)

const (
	org      = "demo"
	node     = "edge1"
	token    = "edge1-token"
	service  = "secret-reader"
	policy   = "reader-policy"
	dbSecret = "db-password"
	apiToken = "api-token"
)

func main() {
	binDir := flag.String("bin", "", "use agbot, anax-agent and hzn from DIR (make build) instead of building them")
	keep := flag.Bool("keep", false, "keep the temporary directory (logs) after the demo")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: run as root (the agent mounts tmpfs stores and talks to dockerd): sudo make demo")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: os.Stdout, start: time.Now(), binDir: *binDir}
	err := d.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(d.out, "\ninterrupted")
		}
		fmt.Fprintf(d.out, "\nFAILED: %v\n", err)
		d.dumpLogs()
	}
	d.cleanup(*keep && err == nil)
	if err != nil {
		os.Exit(1)
	}
	fmt.Fprintf(d.out, "\ndemo done in %s\n", dur(time.Since(d.start)))
}

type demo struct {
	out    io.Writer
	start  time.Time
	binDir string
	step   int
	dir    string
	bin    *e2e.Binaries
	docker *client.Client
	agbot  *e2e.Agbot
	agent  *e2e.Agent
	image  string
	cont   string // the service container id
}

// say prints one step: number, text, and how long it took.
func (d *demo) say(since time.Time, format string, args ...any) {
	d.step++
	line := fmt.Sprintf(format, args...)
	fmt.Fprintf(d.out, "%2d. %-72s %6s\n", d.step, line, dur(time.Since(since)))
}

// detail prints an indented line under a step.
func (d *demo) detail(format string, args ...any) { fmt.Fprintf(d.out, "      "+format+"\n", args...) }

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// run is the demo, step by step; each step prints what it did and how long it took.
func (d *demo) run(ctx context.Context) error {
	var err error
	d.dir, err = os.MkdirTemp("", "anax-demo-")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "anax-agent demo: agbot + agent on loopback, a container reading its secrets (work dir %s)\n\n", d.dir)
	for _, step := range []func(context.Context) error{d.setUp, d.declare, d.register, d.showContainer, d.rotate, d.unregister} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

// setUp builds the programs, finds Docker, starts the agbot and the agent and builds the image.
func (d *demo) setUp(ctx context.Context) error {
	var err error
	t := time.Now()
	if d.binDir != "" {
		d.bin, err = e2e.Prebuilt(ctx, d.binDir, filepath.Join(d.dir, "bin"))
	} else {
		d.bin, err = e2e.Build(ctx, filepath.Join(d.dir, "bin"))
	}
	if err != nil {
		return err
	}
	d.say(t, "built agbot, anax-agent, hzn and the reader program")

	// 2. Docker.
	t = time.Now()
	if d.docker, err = e2e.Docker(ctx); err != nil {
		return err
	}
	ver, err := d.docker.ServerVersion(ctx)
	if err != nil {
		return err
	}
	d.say(t, "Docker engine %s answers", ver.Version)

	// 3. Agbot.
	t = time.Now()
	if d.agbot, err = e2e.NewAgbot(ctx, d.bin, d.dir, org, "admin", "admin-pw", nil); err != nil {
		return err
	}
	if err := d.agbot.Start(ctx); err != nil {
		return err
	}
	d.say(t, "agbot serving %s, embedded secrets manager", d.agbot.URL)
	d.detail("org %q, admin \"admin\", signing key %s", org, d.agbot.Fingerprint)

	// 4. Agent.
	t = time.Now()
	if d.agent, err = e2e.NewAgent(d.bin, d.dir, "agent", d.agbot, ""); err != nil {
		return err
	}
	if err := d.agent.Start(ctx); err != nil {
		return err
	}
	st, err := d.agent.Status()
	if err != nil {
		return err
	}
	d.say(t, "agent running, local API %s", rel(d.dir, d.agent.Config.APISocket))
	f := st.Secretfs.Features
	d.detail("secretfs mode %s (kernel %s: MOVE_MOUNT_BENEATH %s, tmpfs noswap %s)", st.Secretfs.Mode, f.Kernel, yes(f.MoveMountBeneath), yes(f.TmpfsNoswap))

	// 5. Image.
	t = time.Now()
	d.image, err = e2e.BuildImage(ctx, d.docker, d.bin.Reader, e2e.Image{Name: "anax-demo-reader", User: "app",
		Files: map[string][]byte{
			"etc/passwd": []byte("root:x:0:0:root:/:/prog\napp:x:1000:1000:app:/:/prog\n"),
			"etc/group":  []byte("root:x:0:\napp:x:1000:\n"),
		}})
	if err != nil {
		return err
	}
	d.say(t, "image %s built (FROM scratch, USER app)", d.image)
	return nil
}

// declare creates the user and node, publishes the service and the deployment policy, and
// stores the org secrets.
func (d *demo) declare(ctx context.Context) error {
	t := time.Now()
	admin := d.agbot.Admin
	if _, err := d.agbot.Hzn(ctx, admin, "exchange", "user", "create", "alice", "alice-pw"); err != nil {
		return err
	}
	if _, err := d.agbot.Hzn(ctx, "alice:alice-pw", "exchange", "node", "create", "-n", node+":"+token); err != nil {
		return err
	}
	d.say(t, "user alice created; she creates node %q with its token", node)

	t = time.Now()
	svc := map[string]any{"org": org, "url": service, "version": "1.0.0", "arch": arch.Node(),
		"deployment": map[string]any{"services": map[string]any{"reader": map[string]any{
			"image": d.image,
			"secrets": map[string]any{
				"db_password": map[string]any{"description": "database password"},
				"api_token":   map[string]any{"description": "API token", "format": "value_only"},
			}}}}}
	if err := d.publish(ctx, "service.json", svc, "exchange", "service", "publish", "-f"); err != nil {
		return err
	}
	d.say(t, "service %s published, declaring db_password and api_token", service)

	t = time.Now()
	pol := map[string]any{
		"service":     map[string]any{"name": service, "org": org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"purpose == demo"},
		"secretBinding": []any{map[string]any{
			"serviceOrgid": org, "serviceUrl": service, "serviceArch": "*", "serviceVersionRange": "[0.0.0,INFINITY)",
			"enableNodeLevelSecrets": true,
			"secrets":                []any{map[string]string{"db_password": dbSecret}, map[string]string{"api_token": apiToken}},
		}},
	}
	if err := d.publish(ctx, "policy.json", pol, "exchange", "deployment", "addpolicy", policy, "-f"); err != nil {
		return err
	}
	d.say(t, "deployment policy binds db_password -> %s, api_token -> %s", dbSecret, apiToken)

	t = time.Now()
	// Values go on stdin (-f -), never on a command line where ps would show them.
	if _, err := d.agbot.HznStdin(ctx, admin, "pw-one", "sm", "secret", "add", "--secretKey", "db", "-f", "-", dbSecret); err != nil {
		return err
	}
	if _, err := d.agbot.HznStdin(ctx, admin, "tok-one", "sm", "secret", "add", "--secretKey", "token", "-f", "-", apiToken); err != nil {
		return err
	}
	d.say(t, "org secrets %s and %s stored", dbSecret, apiToken)
	return nil
}

// register registers the node with its policy.
func (d *demo) register(ctx context.Context) error {
	t := time.Now()
	nodePolicy := filepath.Join(d.dir, "node-policy.json")
	if err := writeJSON(nodePolicy, map[string]any{"properties": []any{map[string]any{"name": "purpose", "value": "demo"}}, "constraints": []string{}}); err != nil {
		return err
	}
	if _, err := d.agent.Hzn(ctx, "register", "-n", node+":"+token, "--policy", nodePolicy); err != nil {
		return err
	}
	d.say(t, "hzn register -n %s:*** --policy node-policy.json", node)
	return nil
}

// showContainer waits for the agreement and shows the secrets from inside its container.
func (d *demo) showContainer(ctx context.Context) error {
	t := time.Now()
	in, err := d.agent.ActiveAgreement(ctx, service, 3*time.Minute)
	if err != nil {
		return err
	}
	d.cont = in.Containers[0].ContainerID
	d.say(t, "agreement accepted, container %s running", shortID(in.Containers[0].ContainerID))
	if err := d.show(ctx, "/db_password", "/api_token"); err != nil {
		return err
	}
	stats, err := e2e.Stat(ctx, d.docker, d.cont, "/db_password", "/api_token", "/open-horizon-secrets/db_password")
	if err != nil {
		return err
	}
	s := stats["/db_password"]
	d.detail("owner %d:%d, mode %s, read-only; the same files under /open-horizon-secrets/", s.UID, s.GID, s.Mode)
	return nil
}

// rotate updates the org secret, adds a node-specific one and removes it, each watched from
// inside the container, and checks the container never restarted.
func (d *demo) rotate(ctx context.Context) error {
	admin := d.agbot.Admin
	started, restarts, err := d.startInfo(ctx)
	if err != nil {
		return err
	}
	if err := d.change(ctx, "/db_password", "org secret "+dbSecret+" updated", func() error {
		_, err := d.agbot.HznStdin(ctx, admin, "pw-two", "sm", "secret", "add", "-O", "--secretKey", "db", "-f", "-", dbSecret)
		return err
	}); err != nil {
		return err
	}
	if err := d.change(ctx, "/db_password", "node-specific node/"+node+"/"+dbSecret+" added: it wins", func() error {
		_, err := d.agbot.HznStdin(ctx, admin, "pw-for-edge1-only", "sm", "secret", "add", "-n", node, "--secretKey", "db", "-f", "-", dbSecret)
		return err
	}); err != nil {
		return err
	}
	if err := d.change(ctx, "/db_password", "node-specific secret removed: back to the org secret", func() error {
		_, err := d.agbot.Hzn(ctx, admin, "sm", "secret", "remove", "-f", "-n", node, dbSecret)
		return err
	}); err != nil {
		return err
	}
	started2, restarts2, err := d.startInfo(ctx)
	if err != nil {
		return err
	}
	if started2 != started || restarts2 != restarts {
		return fmt.Errorf("the container restarted (started %s -> %s, restarts %d -> %d)", started, started2, restarts, restarts2)
	}
	d.detail("the container never restarted (started %s, restart count %d)", started[:19], restarts)
	return nil
}

// unregister ends the agreement and checks the node is clean.
func (d *demo) unregister(ctx context.Context) error {
	t := time.Now()
	if _, err := d.agent.Hzn(ctx, "unregister", "-f"); err != nil {
		return err
	}
	if err := d.clean(ctx); err != nil {
		return err
	}
	d.say(t, "hzn unregister -f: agreement cancelled, secrets wiped")
	d.detail("node clean: no container of this agent, no store, no mount below the secrets root")
	return nil
}

func (d *demo) change(ctx context.Context, file, what string, write func() error) error {
	wait, err := e2e.Watch(ctx, d.docker, d.cont, file, time.Minute)
	if err != nil {
		return err
	}
	before := d.applied()
	t := time.Now()
	if err := write(); err != nil {
		return err
	}
	c, err := wait()
	if err != nil {
		return err
	}
	seen := time.Unix(0, c.SeenAt)
	d.say(t, "%s", what)
	apply := ""
	// The agent records the apply time just after the swap the container already saw.
	var after histogram
	_ = e2e.Eventually(ctx, 2*time.Second, 5*time.Millisecond, func() error {
		if after = d.applied(); after.count <= before.count {
			return errors.New("not yet")
		}
		return nil
	})
	if after.count > before.count {
		apply = fmt.Sprintf("; the agent applied it in %s", dur(time.Duration((after.sum-before.sum)/float64(after.count-before.count)*float64(time.Second))))
	}
	d.detail("%s -> %s", file, strings.TrimSpace(c.Content))
	d.detail("seen in the running container %s after the write%s", dur(seen.Sub(t)), apply)
	d.detail("(%d reads while waiting, %d of them empty or torn)", c.Reads, c.Bad)
	return nil
}

type histogram struct {
	count int
	sum   float64
}

// applied reads the agent's update-apply histogram (Prometheus metrics).
func (d *demo) applied() histogram {
	n, err1 := d.agent.Metric("anax_agent_update_apply_seconds_count")
	sum, err2 := d.agent.Metric("anax_agent_update_apply_seconds_sum")
	if err1 != nil || err2 != nil {
		return histogram{}
	}
	return histogram{count: int(n), sum: sum}
}

func (d *demo) show(ctx context.Context, files ...string) error {
	got, err := e2e.Cat(ctx, d.docker, d.cont, files...)
	if err != nil {
		return err
	}
	for _, f := range files {
		d.detail("%-14s -> %s", f, strings.TrimSpace(got[f]))
	}
	return nil
}

func (d *demo) startInfo(ctx context.Context) (string, int, error) {
	insp, err := d.docker.ContainerInspect(ctx, d.cont)
	if err != nil {
		return "", 0, err
	}
	return insp.State.StartedAt, insp.RestartCount, nil
}

func (d *demo) publish(ctx context.Context, name string, v any, args ...string) error {
	p := filepath.Join(d.dir, name)
	if err := writeJSON(p, v); err != nil {
		return err
	}
	_, err := d.agbot.Hzn(ctx, d.agbot.Admin, append(args, p)...)
	return err
}

// clean checks that nothing of the agreement is left on the node.
func (d *demo) clean(ctx context.Context) error {
	return e2e.Eventually(ctx, 30*time.Second, 100*time.Millisecond, func() error {
		cs, err := e2e.ContainersOf(ctx, d.docker, d.agent.ID())
		if err != nil {
			return err
		}
		if len(cs) > 0 {
			return fmt.Errorf("%d containers left", len(cs))
		}
		list, err := d.agent.Agreements()
		if err != nil {
			return err
		}
		if len(list) > 0 {
			return fmt.Errorf("%d agreements left", len(list))
		}
		st, err := d.agent.Status()
		if err != nil {
			return err
		}
		if st.Secretfs.Stores > 0 || st.Registered {
			return fmt.Errorf("stores %d, registered %v", st.Secretfs.Stores, st.Registered)
		}
		mounts, err := e2e.MountsUnder(d.agent.Config.SecretsRoot)
		if err != nil {
			return err
		}
		// The secrets root itself is the agent's own small tmpfs; every store is a mount below it.
		for _, m := range mounts {
			if m != d.agent.Config.SecretsRoot {
				return fmt.Errorf("mount left at %s", m)
			}
		}
		entries, _ := os.ReadDir(filepath.Join(d.agent.Config.SecretsRoot, "stores"))
		if len(entries) > 0 {
			return fmt.Errorf("%d store directories left", len(entries))
		}
		return nil
	})
}

// cleanup removes everything the demo started, whatever state it stopped in.
func (d *demo) cleanup(keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t := time.Now()
	var errs []error
	if d.agent != nil && d.agent.Proc() != nil {
		errs = append(errs, d.agent.Stop())
	}
	if d.agbot != nil && d.agbot.Proc() != nil {
		errs = append(errs, d.agbot.Stop())
	}
	if d.docker != nil && d.agent != nil {
		errs = append(errs, e2e.RemoveContainersOf(ctx, d.docker, d.agent.ID()))
	}
	if d.agent != nil {
		errs = append(errs, d.agent.UnmountRoots())
	}
	if d.docker != nil && d.image != "" {
		errs = append(errs, e2e.RemoveImage(ctx, d.docker, d.image))
	}
	if d.docker != nil {
		d.docker.Close()
	}
	if d.dir != "" && !keep {
		errs = append(errs, os.RemoveAll(d.dir))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(d.out, "clean up: %v\n", err)
		return
	}
	what := "agbot and agent stopped, image and work dir removed"
	if keep {
		what = "agbot and agent stopped, image removed; logs kept in " + d.dir
	}
	d.say(t, "clean up: %s", what)
}

// dumpLogs shows the tail of the logs after a failure.
func (d *demo) dumpLogs() {
	for _, p := range []string{filepath.Join(d.dir, "agbot.log"), filepath.Join(d.dir, "agent", "agent.log")} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(d.out, "\n--- %s (last lines)\n%s\n", p, strings.Join(lines, "\n"))
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r
	}
	return p
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
