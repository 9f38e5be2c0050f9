package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/platform/arch"
)

// testESS deploys an anax-style service (a bash script with curl and jq, as
// open-horizon/examples' helloSecretWorld is written) from an anax-format service definition
// and pattern, and watches it greet the secret's value, then learn of an update through the
// ESS secrets API (GET /api/v1/secrets, GET /api/v1/secrets/{name}, POST ...?received=true)
// without a restart. The ESS credentials join the leak scan.
func testESS(t *testing.T, s *suite) {
	e := s.newEnv(t, "ess-api", nil)
	script, err := os.ReadFile("testdata/ess-service.sh")
	if err != nil {
		t.Fatal(err)
	}
	img, err := HostToolsImage(e.ctx, s.docker, "anax-e2e-ess-"+s.canaries.RunID(), "app", []string{"curl", "jq", "sleep"},
		map[string][]byte{"service.sh": script,
			"etc/passwd": []byte("root:x:0:0:root:/:/prog\napp:x:1000:1000:app:/:/prog\n"),
			"etc/group":  []byte("root:x:0:\napp:x:1000:\n")}, "service.sh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveImage(e.ctx, s.docker, img) })

	admin := e.agbot.Admin
	e.hzn(admin, "exchange", "user", "create", "bob", "bob-pw")
	e.hzn(bob, "exchange", "node", "create", "-n", "nodeE:tokE")
	nodeArch := arch.Node()
	e.hzn(admin, "exchange", "service", "publish", "-f", e.writeJSON("hello-secret.json", map[string]any{
		"org": org, "label": "hello-secret for " + nodeArch, "description": "a service that uses a secret",
		"documentation": "", "url": "hello-secret", "version": "1.0.0", "arch": nodeArch, "sharable": "multiple",
		"requiredServices": []any{}, "userInput": []any{},
		"deployment": map[string]any{"services": map[string]any{"hello-secret": map[string]any{
			"image": img, "command": []string{"/service.sh"},
			"secrets": map[string]any{"hw_who": map[string]any{"description": "The secret name of who we are greeting"}},
		}}},
	}))
	e.hzn(admin, "exchange", "pattern", "publish", "-p", "pattern-hello-secret", "-f", e.writeJSON("pattern.json", map[string]any{
		"label": "hello secret", "services": []any{map[string]any{"serviceUrl": "hello-secret", "serviceOrgid": org,
			"serviceArch": nodeArch, "serviceVersions": []any{map[string]any{"version": "1.0.0"}}}},
		"secretBinding": []any{map[string]any{"serviceOrgid": org, "serviceUrl": "hello-secret", "serviceArch": nodeArch,
			"serviceVersionRange": "[0.0.0,INFINITY)", "secrets": []any{map[string]string{"hw_who": "who"}}}},
	}))
	// The service prints whom it greets (as the example does): plain words, not canaries.
	e.putSecret(admin, "who", "name", "World", "")

	// The helloSecretWorld README's flow: register with the pattern and wait for the service
	// (-s, --serviceorg), then follow its log with hzn service log -f.
	a := e.agent("nodeE", "")
	if _, err := a.Hzn(e.ctx, "register", "-n", "nodeE:tokE", "-p", org+"/pattern-hello-secret",
		"-s", "hello-secret", "--serviceorg", org, "-t", "120"); err != nil {
		t.Fatal(err)
	}
	_, c := e.active(a, "hello-secret")
	follow := startServiceLog(t, a, "hello-secret")
	follow.want(t, "Hello World! (read from /open-horizon-secrets/hw_who)")
	e.waitLog(c, "Hello World! (read from /open-horizon-secrets/hw_who)")
	before := e.startInfo(c)
	e.addESSCanaries(a)

	e.putSecret(admin, "who", "name", "Universe", "")
	e.waitLog(c, "Hello Universe! (update of hw_who learnt through the ESS API and acknowledged)")
	follow.want(t, "Hello Universe! (update of hw_who learnt through the ESS API and acknowledged)")
	follow.stop()
	if after := e.startInfo(c); after != before {
		t.Errorf("the container restarted: %s -> %s", before, after)
	}
	logs := e.containerLog(c)
	if strings.Contains(logs, "Error") {
		t.Errorf("the service reported an error:\n%s", logs)
	}
	t.Logf("the service's output:\n%s", logs)
	for _, m := range []string{`anax_agent_ess_api_calls_total{code="201",op="ack"}`, `anax_agent_ess_api_calls_total{code="200",op="get"}`} {
		if v, err := a.Metric(m); err != nil || v < 1 {
			t.Errorf("%s = %v %v, want >= 1", m, v, err)
		}
	}
	e.scanLive(a)
	// The service calls curl every 0.2 s: read every process's argv and environment for a
	// second, so that its curl is caught whatever it holds (an ESS token in `-u ID:TOKEN`
	// would be readable by anyone on the host; the service passes it through a pipe).
	for end := time.Now().Add(time.Second); time.Now().Before(end) && !t.Failed(); {
		e.s.scanProcesses(t)
	}
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
	if entries, _ := os.ReadDir(a.Config.ESSDir()); len(entries) > 1 { // .ca stays
		t.Errorf("ESS files left after unregister: %d entries", len(entries))
	}
}

// addESSCanaries adds every ESS token the agent handed out to the leak scan.
func (e *env) addESSCanaries(a *Agent) {
	e.t.Helper()
	files, _ := filepath.Glob(filepath.Join(a.Config.ESSDir(), "*", "auth.json"))
	if len(files) == 0 {
		e.t.Fatal("no ESS credentials found")
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			e.t.Fatal(err)
		}
		var c struct{ Token string }
		if err := json.Unmarshal(raw, &c); err != nil {
			e.t.Fatal(err)
		}
		if err := e.s.canaries.Add("ess-token", c.Token); err != nil {
			e.t.Fatal(err)
		}
	}
}

// containerLog is a container's output so far.
func (e *env) containerLog(id string) string {
	e.t.Helper()
	rc, err := e.s.docker.ContainerLogs(e.ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		e.t.Fatal(err)
	}
	return out.String()
}

// waitLog waits until a container's output holds line.
func (e *env) waitLog(id, line string) {
	e.t.Helper()
	err := Eventually(e.ctx, 60*time.Second, 100*time.Millisecond, func() error {
		if logs := e.containerLog(id); !strings.Contains(logs, line) {
			return fmt.Errorf("no %q in the container's output:\n%s", line, logs)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// serviceLog is a running `hzn service log -f SERVICE`, read line by line.
type serviceLog struct {
	cmd   *exec.Cmd
	lines chan string
}

func startServiceLog(t *testing.T, a *Agent, service string) *serviceLog {
	t.Helper()
	cmd := exec.Command(a.Bin.Hzn, "service", "log", "-f", service)
	cmd.Env = a.HznEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &serviceLog{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		defer close(l.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
	}()
	t.Cleanup(l.stop)
	return l
}

// want waits for a line of the followed log that holds s.
func (l *serviceLog) want(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case line, ok := <-l.lines:
			if !ok {
				t.Fatalf("hzn service log -f ended before printing %q", s)
			}
			if strings.Contains(line, s) {
				return
			}
		case <-deadline:
			t.Fatalf("hzn service log -f did not print %q within a minute", s)
		}
	}
}

func (l *serviceLog) stop() {
	if l.cmd.Process != nil && l.cmd.ProcessState == nil {
		l.cmd.Process.Kill()
		l.cmd.Wait()
	}
}
