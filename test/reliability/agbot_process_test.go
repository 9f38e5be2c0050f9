package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
)

// TestAgbotProcessHardened: the agbot process, like the agent, runs with core dumps off
// (RLIMIT_CORE 0), not dumpable (PR_SET_DUMPABLE 0, so no ptrace or /proc/<pid>/mem by other
// users and no core) and umask 077 (issue 12, item 6).
func TestAgbotProcessHardened(t *testing.T) {
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := e2e.NewAgbot(ctx, bin, t.TempDir(), "myorg", "admin", "adminpw", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Start it with core dumps allowed (inherited), so "no core dumps" is the agbot's doing.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 1 << 20, Max: max(old.Max, 1<<20)}); err != nil {
		t.Fatal(err)
	}
	err = b.Start(ctx)
	syscall.Setrlimit(syscall.RLIMIT_CORE, &old)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	pid := b.Proc().Pid()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(b.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"umask 077", string(status), "Umask:\t0077"},
		{"no core dumps", line(string(limits), "Max core file size"), " 0 "},
		{"says it is not dumpable", string(log), "dumpable=false"},
		{"not dumpable, seen by the kernel", nobodyAgbot(t, bin.Agbot), "owner 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.text, tc.want) {
				t.Errorf("want %q in %q", tc.want, line(tc.text, strings.Fields(tc.want)[0]))
			}
		})
	}
}

// nobodyAgbot runs `agbot init` and `agbot serve` as uid 65534 and reports the owner of
// /proc/<pid>/status: the kernel shows a process that is not dumpable as owned by root, so
// this observes PR_SET_DUMPABLE 0 from outside ("owner 0"), where the agbot's own report can
// not be trusted.
func nobodyAgbot(t *testing.T, agbot string) string {
	const nobody = 65534
	dir, err := os.MkdirTemp("", "agbot-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	raw, err := os.ReadFile(agbot)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agbot")
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) *exec.Cmd {
		c := exec.Command(bin, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return c
	}
	data := filepath.Join(dir, "data")
	if out, err := run("init", "--data-dir", data, "--org", "o", "--admin", "a:pw").CombinedOutput(); err != nil {
		t.Fatalf("agbot init as nobody: %v: %s", err, out)
	}
	serve := run("serve", "--data-dir", data, "--listen", "127.0.0.1:0")
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { serve.Process.Kill(); serve.Wait() }()
	// The hardening is the first thing serve does; give the process up to 10 s to get there.
	for range 500 {
		if fi, err := os.Stat(fmt.Sprintf("/proc/%d/status", serve.Process.Pid)); err == nil {
			if st := fi.Sys().(*syscall.Stat_t); st.Uid == 0 {
				return "owner 0"
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Sprintf("owner %d (dumpable)", nobody)
}

func line(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, prefix) {
			return l
		}
	}
	return ""
}
