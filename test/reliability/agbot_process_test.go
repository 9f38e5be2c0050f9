package reliability

import (
	"context"
	"fmt"
	"os"
	"strings"
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
	if err := b.Start(ctx); err != nil {
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
		{"not dumpable", string(log), "dumpable=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tc.text, tc.want) {
				t.Errorf("want %q in %q", tc.want, line(tc.text, strings.Fields(tc.want)[0]))
			}
		})
	}
}

func line(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, prefix) {
			return l
		}
	}
	return ""
}
