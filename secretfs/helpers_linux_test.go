package secretfs

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

var allModes = []Mode{ModeMountSwap, ModeMountStack, ModeRestart}

// canary makes recognisable secret values, so leak scans can find them.
func canary(tag string, n int) []byte { return []byte(fmt.Sprintf("CANARY-secretfs-%s-%d", tag, n)) }

// logBuffer collects log output so tests can check that no value reaches a log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type env struct {
	t    testing.TB
	root string
	log  *logBuffer
}

// newEnv gives a test its own root (a tmpfs mounted by Open) and removes every mount and store
// afterwards, also the ones made by other FS instances on the same root.
func newEnv(t testing.TB) *env {
	t.Helper()
	testenv.RequireRoot(t)
	e := &env{t: t, root: filepath.Join(t.TempDir(), "secrets"), log: &logBuffer{}}
	t.Cleanup(func() {
		f, err := Open(Options{Root: e.root, Logger: slog.New(slog.NewTextHandler(e.log, nil))})
		if err == nil {
			stores, _ := f.Stores()
			for _, s := range stores {
				if err := f.Wipe(s.ID); err != nil {
					t.Errorf("cleanup: wipe %s: %v", s.ID, err)
				}
			}
			f.Close()
		}
		linux.UnmountAll(e.root)
		for _, v := range e.values() {
			if strings.Contains(e.log.String(), v) {
				t.Errorf("a secret value reached the log: %q", v)
			}
		}
	})
	return e
}

var (
	valuesMu sync.Mutex
	values   = map[testing.TB][]string{}
)

func (e *env) remember(v []byte) {
	valuesMu.Lock()
	defer valuesMu.Unlock()
	if len(v) >= 8 {
		values[e.t] = append(values[e.t], string(v))
	}
}

func (e *env) values() []string {
	valuesMu.Lock()
	defer valuesMu.Unlock()
	return values[e.t]
}

func (e *env) open(mode Mode) *FS {
	e.t.Helper()
	return e.openGrace(mode, 0)
}

// openGrace is open with a grace of its own (0: the default).
func (e *env) openGrace(mode Mode, grace time.Duration) *FS {
	e.t.Helper()
	f, err := Open(Options{Root: e.root, Mode: mode, Logger: slog.New(slog.NewTextHandler(e.log, nil)), grace: grace})
	if err != nil {
		e.t.Fatalf("Open(mode %q): %v", mode, err)
	}
	e.t.Cleanup(func() {
		checkPending(e.t, f, "at the end of the test") // what quiet passes rely on, in every mode
		f.Close()
	})
	return f
}

func (e *env) spec(id string, names ...string) Spec {
	s := Spec{ID: id, UID: 1000, GID: 1001}
	for i, n := range names {
		v := canary(id+"-"+n, 1)
		e.remember(v)
		format := FormatValueOnly
		if i%2 == 1 {
			format = FormatJSON
		}
		s.Secrets = append(s.Secrets, Secret{Name: n, Key: n + "-key", Value: v, Format: format})
	}
	return s
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func want(s Secret) string {
	b, err := content(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// nsReader is a process in its own mount namespace (a slave copy of ours, as runc makes) that
// bind-mounts a publish point at a path outside the root, as Docker does for /<name>. It is a
// light stand-in for a container in unit tests; container_linux_test.go uses real ones.
type nsReader struct {
	t      testing.TB
	pid    int
	target string
	cmd    *exec.Cmd
}

func startNSReader(t testing.TB, src string) *nsReader {
	t.Helper()
	return startReader(t, src, "")
}

// startLeanNSReader is startNSReader whose namespace then drops its copy of the secrets root,
// as a container's namespace never had one: its mount table stays small however many stores
// the node has (benchmarks of many stores read one).
func startLeanNSReader(t testing.TB, src, root string) *nsReader {
	t.Helper()
	return startReader(t, src, root)
}

func startReader(t testing.TB, src, dropRoot string) *nsReader {
	t.Helper()
	target := filepath.Join(t.TempDir(), "mnt-"+filepath.Base(src))
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	script := `mount --bind "$1" "$2" && echo ready && exec sleep 3600`
	if dropRoot != "" {
		script = `mount --bind "$1" "$2" && umount -l "$3" && echo ready && exec sleep 3600`
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "slave", "--",
		"sh", "-c", script, "sh", src, target, dropRoot)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	r := &nsReader{t: t, pid: cmd.Process.Pid, target: target, cmd: cmd}
	t.Cleanup(r.stop)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("namespace reader did not start: %q %v", line, err)
	}
	return r
}

func (r *nsReader) read() string {
	r.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", r.pid, r.target))
	if err != nil {
		r.t.Fatalf("read in namespace: %v", err)
	}
	return string(b)
}

func (r *nsReader) depth() int {
	r.t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", r.pid))
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	mounts, err := linux.ParseMountinfo(f)
	if err != nil {
		r.t.Fatal(err)
	}
	return len(linux.Stack(mounts, r.target))
}

func (r *nsReader) stop() {
	if r.cmd.Process != nil && r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

func testLogger(e *env) *slog.Logger { return slog.New(slog.NewTextHandler(e.log, nil)) }
