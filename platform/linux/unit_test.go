package linux

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// unitSettings returns the unit's Key=Value lines, by key.
func unitSettings(t *testing.T) map[string][]string {
	t.Helper()
	s, err := UnitSettings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestUnitPrivileges(t *testing.T) {
	p, err := ReadUnitPrivileges()
	if err != nil {
		t.Fatal(err)
	}
	if !p.NoNewPrivs {
		t.Error("the unit does not set NoNewPrivileges")
	}
	args := strings.Join(p.SetprivArgs(), " ")
	for _, want := range []string{"--bounding-set=-all,+sys_admin,", "+chown", "--inh-caps=-all", "--no-new-privs", " --"} {
		if !strings.Contains(args, want) {
			t.Errorf("setpriv args %q lack %q", args, want)
		}
	}
	for _, c := range p.Capabilities {
		if c == "CAP_SYS_PTRACE" {
			t.Error("the unit grants CAP_SYS_PTRACE: the agent reads containers' mounts by PID and must not need it")
		}
	}
}

func TestUnitKeepsHostMountNamespace(t *testing.T) {
	s := unitSettings(t)
	// Each of these gives the service its own mount namespace, which would hide the agent's
	// mounts from dockerd (design §4).
	for _, key := range []string{
		"PrivateMounts", "PrivateTmp", "PrivateDevices", "ProtectSystem", "ProtectHome",
		"ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem", "BindPaths",
		"BindReadOnlyPaths", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectHostname", "ProtectClock", "ProtectProc", "ProcSubset",
		"PrivateUsers", "PrivateNetwork", "NetworkNamespacePath", "MountFlags", "RootDirectory", "RootImage",
	} {
		if v, ok := s[key]; ok {
			t.Errorf("unit sets %s=%v, which gives the agent its own mount namespace", key, v)
		}
	}
	want := map[string]string{
		"Type": "notify", "NoNewPrivileges": "yes", "LimitCORE": "0", "UMask": "0077",
		"RuntimeDirectoryPreserve": "yes", "KillMode": "mixed",
	}
	for k, v := range want {
		if got := s[k]; len(got) != 1 || got[0] != v {
			t.Errorf("unit %s = %v, want %q", k, got, v)
		}
	}
	caps := strings.Join(s["CapabilityBoundingSet"], " ")
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_CHOWN"} {
		if !strings.Contains(caps, c) {
			t.Errorf("CapabilityBoundingSet %q lacks %s, needed for mounts and chown", caps, c)
		}
	}
	if after := strings.Join(s["After"], " "); !strings.Contains(after, "docker.service") {
		t.Errorf("After=%q, want it to order after docker.service", after)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit, with ExecStart pointed at a real
// executable because verify checks that the binary exists.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Skip(t, "systemd-analyze not installed (Debian package systemd)")
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.Replace(UnitFile, "/usr/local/bin/anax-agent", exe, 1)
	path := filepath.Join(dir, "anax-agent.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	// docker.service may not be installed where this runs; verify only the unit's own syntax.
	cmd := exec.Command(analyze, "verify", "--man=no", "--recursive-errors=no", path)
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "docker.service") || strings.Contains(line, "network-online.target") {
			continue
		}
		problems = append(problems, line)
	}
	if len(problems) > 0 {
		t.Errorf("systemd-analyze verify reports:\n%s", strings.Join(problems, "\n"))
	}
	if err != nil && len(problems) == 0 {
		t.Logf("systemd-analyze exited with %v over dependencies only:\n%s", err, out)
	}
}
