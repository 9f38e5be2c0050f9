// Package openbaotest starts a real OpenBao dev server on 127.0.0.1 for tests (design §8) and
// enables KV v2 at Mount. The binary comes from $OPENBAO_BIN or from test/openbao.sh, which
// builds it once from the Go module proxy into a cache outside the repository.
//
// Without a binary a test is skipped with the reason, except with CI=true, where it fails.
// Only tests import this package.
package openbaotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/syncbuf"
	"github.com/edge-secrets/anax-agent/test/testenv"
	vault "github.com/hashicorp/vault/api"
)

// Mount is where Start enables KV v2: the agbot's default --vault-mount.
const Mount = "openhorizon"

// Server is a running OpenBao dev server. Its data lives in memory only.
type Server struct {
	Addr  string // http://127.0.0.1:<port>
	Token string // root token

	tb   testing.TB
	bin  string
	port string

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{} // closed when cmd has exited
}

// Start runs a dev server for the test, ready with KV v2 at Mount, and stops it at cleanup.
func Start(tb testing.TB) (addr, token string) {
	tb.Helper()
	s := StartServer(tb)
	return s.Addr, s.Token
}

// StartServer is Start giving the Server, for tests that stop and restart it.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary(tb)
	var b [16]byte
	rand.Read(b[:])
	s := &Server{tb: tb, bin: bin, Token: "test-root-" + hex.EncodeToString(b[:])}
	var err error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before bao binds it
		s.port, err = testenv.FreePort()
		if err != nil {
			break
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("openbao: %v", err)
	}
	s.Addr = "http://127.0.0.1:" + s.port
	tb.Cleanup(s.Stop)
	return s
}

// Stop kills the server (SIGTERM, then SIGKILL after 5 s) and waits for it. Idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Restart starts a fresh server on the same address with the same token after Stop, and
// enables Mount again. A dev server keeps nothing: the store starts empty.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the old socket may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.tb.Fatalf("openbao restart: %v", err)
}

// Client returns a root client for the server, for tests that write to it directly.
func (s *Server) Client() *vault.Client {
	s.tb.Helper()
	c, err := NewClient(s.Addr, s.Token)
	if err != nil {
		s.tb.Fatal(err)
	}
	return c
}

// NewClient returns a vault/api client for addr and token, ignoring VAULT_* and BAO_* variables.
func NewClient(addr, token string) (*vault.Client, error) {
	cfg := vault.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	c, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := "127.0.0.1:" + s.port
	// The root token goes in the environment, not argv; -dev-no-store-token keeps it out of
	// ~/.vault-token.
	cmd := exec.Command(s.bin, "server", "-dev", "-dev-no-store-token", "-dev-listen-address="+addr)
	cmd.Env = append(cleanEnv(), "BAO_DEV_ROOT_TOKEN_ID="+s.Token, "HOME="+s.tb.TempDir())
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.out, s.done = cmd, out, done

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := waitReady(ctx, "http://"+addr, s.Token, done)
	if err == nil {
		err = enableKV(ctx, "http://"+addr, s.Token)
	}
	if err != nil {
		cmd.Process.Kill()
		<-done
		s.cmd = nil
		return fmt.Errorf("%w\n--- openbao output (last lines) ---\n%s", err, out.Tail(30))
	}
	return nil
}

// waitReady polls sys/health until the server is initialised, unsealed and active.
func waitReady(ctx context.Context, addr, token string, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, addr+"/v1/sys/health", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("server exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("server not healthy: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func enableKV(ctx context.Context, addr, token string) error {
	c, err := NewClient(addr, token)
	if err != nil {
		return err
	}
	err = c.Sys().MountWithContext(ctx, Mount, &vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}})
	if err != nil {
		return fmt.Errorf("enabling KV v2 at %s: %w", Mount, err)
	}
	// A new KV v2 mount answers "upgrading" for a moment; its config answers once it is ready.
	for {
		if _, err := c.Logical().ReadWithContext(ctx, Mount+"/config"); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("KV v2 at %s not ready: %w", Mount, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanEnv drops the caller's Vault and OpenBao settings so they can not redirect the server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "BAO_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the bao binary: $OPENBAO_BIN, or what test/openbao.sh prints
// (building it the first time, which takes minutes). Without one it skips the test, or fails it
// when CI=true.
func Binary(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() { binPath, binErr = findBinary() })
	if binErr != nil {
		testenv.Skip(tb, fmt.Sprintf("no OpenBao server (%v); run test/openbao.sh or set OPENBAO_BIN", binErr))
	}
	return binPath
}

func findBinary() (string, error) {
	if p := os.Getenv("OPENBAO_BIN"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("OPENBAO_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	script, err := findScript()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(syncbuf.LastLines(stderr.String(), 10)))
	}
	p := strings.TrimSpace(stdout.String())
	if _, err := exec.LookPath(p); err != nil {
		return "", fmt.Errorf("%s printed %q: %w", script, p, err)
	}
	return p, nil
}

// findScript looks for test/openbao.sh above the working directory (go test runs in the
// package's directory), then beside this source file.
func findScript() (string, error) {
	var dirs []string
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			dirs = append(dirs, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		dirs = append(dirs, filepath.Join(filepath.Dir(file), "..", ".."))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "test", "openbao.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("test/openbao.sh not found above the working directory")
}
