// Package e2e runs the real agbot, anax-agent and hzn binaries built from this repository
// against the real Docker engine, with the embedded secrets manager and with a real OpenBao.
// Its non-test files are the harness the suite and the demo (test/demo) share: build the
// binaries and the FROM-scratch reader image, start and stop agbots and agents as processes,
// run hzn as a user would, exec the reader inside service containers, cut the network between
// a node and its agbot, and clean up after a run. It needs Linux, root and a Docker engine.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
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
	"time"

	"github.com/edge-secrets/anax-agent/agent"
	"github.com/edge-secrets/anax-agent/agreement"
	linuxp "github.com/edge-secrets/anax-agent/platform/linux"
)

// Binaries are the programs a run uses, built once from this repository.
type Binaries struct {
	Dir    string
	Agbot  string
	Agent  string
	Hzn    string
	Reader string // static, for the images
}

// ModuleRoot returns the repository's root directory.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the anax-agent module")
	}
	return filepath.Dir(mod), nil
}

// Build compiles agbot, anax-agent, hzn and the reader into dir.
func Build(ctx context.Context, dir string) (*Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b := &Binaries{Dir: dir, Agbot: filepath.Join(dir, "agbot"), Agent: filepath.Join(dir, "anax-agent"),
		Hzn: filepath.Join(dir, "hzn"), Reader: filepath.Join(dir, "reader")}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+"/", "./cmd/agbot", "./cmd/anax-agent", "./cmd/hzn")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return b, buildReader(ctx, root, b.Reader)
}

// Prebuilt uses agbot, anax-agent and hzn from binDir (make build) and builds only the reader
// into dir.
func Prebuilt(ctx context.Context, binDir, dir string) (*Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	b := &Binaries{Dir: abs, Agbot: filepath.Join(abs, "agbot"), Agent: filepath.Join(abs, "anax-agent"),
		Hzn: filepath.Join(abs, "hzn"), Reader: filepath.Join(dir, "reader")}
	for _, p := range []string{b.Agbot, b.Agent, b.Hzn} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w (run make build)", err)
		}
	}
	return b, buildReader(ctx, root, b.Reader)
}

func buildReader(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./test/e2e/reader")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build reader: %v\n%s", err, out)
	}
	return nil
}

// Proc is a started program whose output goes to a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

func startProc(name, logPath string, env []string, bin string, args ...string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = logf, logf, env
	// The program dies with the test or demo that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM and waits; after timeout it kills. It returns the exit error of a
// process that did not stop cleanly.
func (p *Proc) Stop(timeout time.Duration) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.Name, timeout)
	}
}

// Kill kills the process at once (SIGKILL) and waits.
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// baseEnv is the environment of every program started: just enough to run.
func baseEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Permanent wraps an error that Eventually must not retry (the process it waits for died).
type Permanent struct{ Err error }

func (p Permanent) Error() string { return p.Err.Error() }
func (p Permanent) Unwrap() error { return p.Err }

// Eventually calls f until it returns nil or timeout passes, and returns its last error. A
// Permanent error ends the wait at once.
func Eventually(ctx context.Context, timeout, every time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var perm Permanent
		if errors.As(err, &perm) {
			return perm.Err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// Vault points an agbot at a Vault or OpenBao server.
type Vault struct {
	Addr      string
	TokenFile string
}

// Agbot is an agbot process with its data directory.
type Agbot struct {
	Bin         *Binaries
	Dir         string // data dir
	Addr        string // 127.0.0.1:port, kept across restarts
	URL         string
	CA          string // its TLS certificate (PEM)
	Fingerprint string
	Org         string
	Admin       string // "user:password" of the org admin
	Vault       *Vault
	LogPath     string
	ServeArgs   []string // extra `agbot serve` flags, from the next Start
	proc        *Proc
	http        *http.Client
}

// NewAgbot initialises an agbot data directory under dir for org with its admin.
func NewAgbot(ctx context.Context, bin *Binaries, dir, org, admin, password string, vault *Vault) (*Agbot, error) {
	return NewAgbotArgs(ctx, bin, dir, org, admin, password, vault, nil)
}

// NewAgbotArgs is NewAgbot with more `agbot init` flags (e.g. --db).
func NewAgbotArgs(ctx context.Context, bin *Binaries, dir, org, admin, password string, vault *Vault, initArgs []string) (*Agbot, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	b := &Agbot{Bin: bin, Dir: filepath.Join(dir, "agbot"), Org: org, Admin: admin + ":" + password, Vault: vault,
		LogPath: filepath.Join(dir, "agbot.log")}
	args := append([]string{"init", "--data-dir", b.Dir, "--org", org, "--admin", admin + ":" + password}, initArgs...)
	out, err := exec.CommandContext(ctx, bin.Agbot, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("agbot init: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if fp, ok := strings.CutPrefix(line, "signing key fingerprint: "); ok {
			b.Fingerprint = strings.TrimSpace(fp)
		}
	}
	if b.Fingerprint == "" {
		return nil, fmt.Errorf("agbot init printed no fingerprint: %s", out)
	}
	b.CA = filepath.Join(b.Dir, "tls", "ca.pem") // the CA alone: the leaf is CA:FALSE
	pem, err := os.ReadFile(b.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	b.http = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	if b.Addr, err = FreeAddr(); err != nil {
		return nil, err
	}
	b.URL = "https://" + b.Addr
	return b, nil
}

// Start serves the agbot and waits until it answers.
func (b *Agbot) Start(ctx context.Context) error {
	args := []string{"serve", "--data-dir", b.Dir, "--listen", b.Addr}
	if b.Vault != nil {
		args = append(args, "--secrets-manager", "vault", "--vault-addr", b.Vault.Addr, "--vault-token-file", b.Vault.TokenFile, "--vault-poll", "500ms")
	}
	args = append(args, b.ServeArgs...)
	p, err := startProc("agbot", b.LogPath, baseEnv(), b.Bin.Agbot, args...)
	if err != nil {
		return err
	}
	b.proc = p
	return Eventually(ctx, 20*time.Second, 50*time.Millisecond, func() error {
		if done, err := p.Exited(); done {
			return Permanent{fmt.Errorf("agbot exited: %v (log %s)", err, b.LogPath)}
		}
		code, err := b.Do("", "GET", "/agbot", nil, nil)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET /agbot: %d", code)
		}
		return err
	})
}

// Stop stops the agbot (SIGTERM).
func (b *Agbot) Stop() error {
	err := b.proc.Stop(20 * time.Second)
	b.proc = nil
	return err
}

// Proc is the running agbot process (nil when stopped).
func (b *Agbot) Proc() *Proc { return b.proc }

// Env is the environment hzn needs to talk to this agbot as auth ("user:password").
func (b *Agbot) Env(auth string) []string {
	return append(baseEnv(), "HZN_AGBOT_URL="+b.URL, "HZN_AGBOT_CA="+b.CA, "HZN_ORG_ID="+b.Org, "HZN_EXCHANGE_USER_AUTH="+auth)
}

// Hzn runs hzn against the agbot as auth and returns its stdout; stderr is in the error.
func (b *Agbot) Hzn(ctx context.Context, auth string, args ...string) (string, error) {
	return runHzn(ctx, b.Bin.Hzn, b.Env(auth), nil, args...)
}

// HznStdin runs hzn against the agbot with stdin, e.g. a secret value for `-f -`, so that it
// never appears on a command line.
func (b *Agbot) HznStdin(ctx context.Context, auth, stdin string, args ...string) (string, error) {
	return runHzn(ctx, b.Bin.Hzn, b.Env(auth), strings.NewReader(stdin), args...)
}

func runHzn(ctx context.Context, bin string, env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("hzn %s: %v: %s", strings.Join(redactArgs(args), " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// redactArgs keeps secret values given on a command line out of error messages.
func redactArgs(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if i == 0 {
			continue
		}
		switch out[i-1] {
		case "--secretDetail":
			out[i] = "<redacted>"
		case "-n", "-u": // NODE:TOKEN, USER:PASSWORD
			if name, _, ok := strings.Cut(out[i], ":"); ok {
				out[i] = name + ":<redacted>"
			}
		}
	}
	return out
}

// Do calls the agbot's API directly with Basic auth "org/user:password" ("" for none).
func (b *Agbot) Do(auth, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.URL+path, rd)
	if err != nil {
		return 0, err
	}
	if auth != "" {
		u, p, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, p)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

// Agent is an anax-agent process with its own state dir, secrets root, socket and
// container-label id, so that several run on one machine.
type Agent struct {
	Bin        *Binaries
	Name       string
	Dir        string
	Config     agent.Config
	ConfigPath string
	LogPath    string
	// Env is added to the process environment (e.g. NOTIFY_SOCKET for the systemd test).
	Env []string
	// Wrap runs before the agent's own argv, e.g. UnitWrap's setpriv command line.
	Wrap []string
	// StartTimeout bounds Start's wait for the local API (0: 60 s).
	StartTimeout time.Duration
	proc         *Proc
}

// UnitWrap is the setpriv(1) command line that gives the agent exactly the privileges of its
// systemd unit (capability bounding set, NoNewPrivileges), read from the unit file itself.
func UnitWrap() ([]string, error) {
	p, err := linuxp.ReadUnitPrivileges()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		return nil, fmt.Errorf("setpriv (util-linux): %w", err)
	}
	return p.SetprivArgs(), nil
}

// NewAgent lays out an agent under dir/name and writes its config file. agbotURL may be a
// proxy in front of the agbot.
func NewAgent(bin *Binaries, dir, name string, b *Agbot, agbotURL string) (*Agent, error) {
	var err error
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	if agbotURL == "" {
		agbotURL = b.URL
	}
	cfg := agent.Defaults()
	cfg.AgbotURL, cfg.AgbotCA, cfg.AgbotFingerprint, cfg.Org = agbotURL, b.CA, b.Fingerprint, b.Org
	cfg.StateDir = filepath.Join(d, "state")
	cfg.SecretsRoot = filepath.Join(d, "secrets")
	cfg.APISocket = filepath.Join(d, "api.sock")
	if cfg.MetricsListen, err = FreeAddr(); err != nil {
		return nil, err
	}
	cfg.PollWait = agent.Duration(20 * time.Second)
	cfg.BackoffMax = agent.Duration(time.Second)
	// The test images run as 1000:1000, a real account on many hosts (and in CI images): the
	// suites test delivery, whatever the host's passwd says; container's tests cover the refusal.
	cfg.AllowHostUIDs = "1000"
	a := &Agent{Bin: bin, Name: name, Dir: d, Config: cfg, ConfigPath: filepath.Join(d, "config.json"), LogPath: filepath.Join(d, "agent.log")}
	return a, a.WriteConfig()
}

// WriteConfig writes a.Config to the config file (the agent reloads it while it runs).
func (a *Agent) WriteConfig() error {
	raw, err := json.MarshalIndent(a.Config, "", "  ")
	if err != nil {
		return err
	}
	tmp := a.ConfigPath + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, a.ConfigPath)
}

// ID is the agent's container-label id.
func (a *Agent) ID() string { return agent.AgentID(a.Config.StateDir) }

// Start runs the agent and waits until its local API answers.
func (a *Agent) Start(ctx context.Context) error {
	argv := append(append([]string(nil), a.Wrap...), a.Bin.Agent, "--config", a.ConfigPath)
	p, err := startProc("anax-agent "+a.Name, a.LogPath, append(baseEnv(), a.Env...), argv[0], argv[1:]...)
	if err != nil {
		return err
	}
	a.proc = p
	timeout := a.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return Eventually(ctx, timeout, 20*time.Millisecond, func() error {
		if done, err := p.Exited(); done {
			return Permanent{fmt.Errorf("agent %s exited: %v (log %s)", a.Name, err, a.LogPath)}
		}
		_, err := a.Status()
		return err
	})
}

// Stop stops the agent with SIGTERM and reports an unclean exit.
func (a *Agent) Stop() error {
	err := a.proc.Stop(60 * time.Second)
	a.proc = nil
	return err
}

// UnmountRoots detaches the agent's tmpfs roots: the secret stores and the ESS API's files.
func (a *Agent) UnmountRoots() error {
	return errors.Join(UnmountAll(a.Config.SecretsRoot), UnmountAll(a.Config.ESSDir()))
}

// Kill kills the agent (SIGKILL).
func (a *Agent) Kill() {
	a.proc.Kill()
	a.proc = nil
}

// Proc is the running agent process (nil when stopped).
func (a *Agent) Proc() *Proc { return a.proc }

// HznEnv is the environment hzn needs to reach this agent.
func (a *Agent) HznEnv() []string { return append(baseEnv(), "HZN_AGENT_SOCKET="+a.Config.APISocket) }

// Hzn runs hzn against the local agent and returns its stdout.
func (a *Agent) Hzn(ctx context.Context, args ...string) (string, error) {
	return runHzn(ctx, a.Bin.Hzn, a.HznEnv(), nil, args...)
}

// HznStdin runs hzn with stdin (for the unregister prompt).
func (a *Agent) HznStdin(ctx context.Context, stdin string, args ...string) (string, error) {
	return runHzn(ctx, a.Bin.Hzn, a.HznEnv(), strings.NewReader(stdin), args...)
}

func (a *Agent) local(method, path string, body, out any) (int, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.Config.APISocket)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://agent"+path, rd)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

// Local calls the agent's local API directly (for hostile requests); it returns the status
// and the body.
func (a *Agent) Local(method, path string, body []byte) (int, string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.Config.APISocket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://agent"+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw), err
}

// Metric reads one sample of the agent's Prometheus metrics by its full name (with labels as
// written, e.g. `anax_agent_failures_total{op="repair"}`).
func (a *Agent) Metric(name string) (float64, error) {
	resp, err := http.Get("http://" + a.Config.MetricsListen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("metric %s not exported", name)
}

// Status reads GET /status.
func (a *Agent) Status() (agent.Status, error) {
	var st agent.Status
	_, err := a.local("GET", "/status", nil, &st)
	return st, err
}

// Agreements reads GET /agreement.
func (a *Agent) Agreements() ([]agreement.Info, error) {
	var list []agreement.Info
	_, err := a.local("GET", "/agreement", nil, &list)
	return list, err
}

// ActiveAgreement waits until an agreement for service url is active with running
// containers, and returns it.
func (a *Agent) ActiveAgreement(ctx context.Context, url string, timeout time.Duration) (agreement.Info, error) {
	var found agreement.Info
	err := Eventually(ctx, timeout, 100*time.Millisecond, func() error {
		list, err := a.Agreements()
		if err != nil {
			return err
		}
		for _, in := range list {
			if in.Service.URL != url {
				continue
			}
			if in.Phase != agreement.PhaseActive {
				return fmt.Errorf("agreement %s for %s is %s (%s)", in.ID, url, in.Phase, in.Note)
			}
			for _, c := range in.Containers {
				if c.ContainerID == "" {
					return fmt.Errorf("agreement %s: container %s not started", in.ID, c.Name)
				}
			}
			found = in
			return nil
		}
		return fmt.Errorf("no agreement for %s on %s yet", url, a.Name)
	})
	return found, err
}

// Proxy is a TCP relay between a node and its agbot that can be cut, to play a network
// partition (the agbot away from the node's point of view while it keeps running).
type Proxy struct {
	Addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]bool
	closed bool
}

// NewProxy relays 127.0.0.1:<free port> to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.relay(c)
	}
}

func (p *Proxy) relay(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = true
	p.mu.Unlock()
	splice(c, up)
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// splice copies both ways between c and up until either side ends, then closes both.
func splice(c, up net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
}

// Cut drops every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.ln.Close()
}
