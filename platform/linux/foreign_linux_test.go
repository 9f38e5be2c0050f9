package linux

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// childEnv tells the re-executed test binary that it is the scanner without CAP_SYS_PTRACE.
const childEnv = "ANAX_FOREIGN_MOUNTS_CHILD"

// TestForeignMountsWithoutPtrace scans, as the agent's systemd unit runs it (root without
// CAP_SYS_PTRACE, no new privileges), for a mount that exists only in the mount namespace of a
// process owned by another uid. /proc/<pid>/ns/mnt of such a process can not be read then; the
// scan must still list its mounts (before the fix it skipped the namespace and said nothing).
func TestForeignMountsWithoutPtrace(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skip(t, tool+" (util-linux) not found")
		}
	}
	marker := fmt.Sprintf("anax-foreign-%d", time.Now().UnixNano())
	target := t.TempDir()
	// A namespace of its own, a tmpfs only it has, then uid 65534 for the rest of its life.
	sleeper := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		"mount -t tmpfs "+marker+" "+target+" && echo ready && exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 120")
	out, err := sleeper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sleeper.Stderr = os.Stderr
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("sleeper: %q %v", line, err)
	}
	// Wait until the exec to uid 65534 happened.
	for i := 0; ; i++ {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", sleeper.Process.Pid))
		if strings.Contains(string(st), "Uid:\t65534") {
			break
		}
		if i > 200 {
			t.Fatal("sleeper never became uid 65534")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The test binary again (TestMain sees childEnv and only scans), without CAP_SYS_PTRACE.
	child := exec.Command("setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-all", "--no-new-privs", "--", os.Args[0])
	child.Env = append(os.Environ(), childEnv+"="+marker)
	res, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(res), childFound) {
		t.Fatalf("scan without CAP_SYS_PTRACE: %v\n%s", err, res)
	}
	t.Logf("%s", res)
}

const childFound = "found the other uid's namespace"

func TestMain(m *testing.M) {
	if marker := os.Getenv(childEnv); marker != "" {
		msg, err := scanFor(marker)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(msg)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// scanFor is the scanner's half of TestForeignMountsWithoutPtrace, in a process without
// CAP_SYS_PTRACE.
func scanFor(marker string) (string, error) {
	caps := ""
	st, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "CapEff:") {
			caps = strings.TrimSpace(strings.TrimPrefix(l, "CapEff:"))
		}
	}
	self, err := MountNS("self")
	if err != nil {
		return "", err
	}
	mounts, err := ForeignMounts(self)
	if err != nil {
		return "", fmt.Errorf("ForeignMounts (CapEff %s): %w", caps, err)
	}
	for _, m := range mounts {
		if m.Source == marker {
			return fmt.Sprintf("%s (CapEff %s, CAP_SYS_PTRACE is bit 19)", childFound, caps), nil
		}
	}
	return "", fmt.Errorf("the scan (CapEff %s) missed the namespace of another uid's process: no mount with source %s among %d", caps, marker, len(mounts))
}
