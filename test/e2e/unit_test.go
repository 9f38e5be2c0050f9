package e2e

import (
	"fmt"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	linuxp "github.com/edge-secrets/anax-agent/platform/linux"
)

// testRotationUnderUnit runs the agent as its systemd unit does (the unit file's capability
// bounding set and NoNewPrivileges, through setpriv) with a container running as uid 1000, and
// rotates a secret: three updates, a node-specific secret and its removal, each read through
// /<name> and the directory view while a reader hammers both, and again after the grace, when
// a version nobody was proven to use would have been zeroed (issue 11: the file stayed stale,
// then read empty for good). Then unregister cleans everything.
func testRotationUnderUnit(t *testing.T, s *suite) {
	wrap, err := UnitWrap()
	if err != nil {
		t.Fatalf("the unit's privileges: %v", err)
	}
	e := s.newEnv(t, "rotation-under-unit", nil)
	admin := e.agbot.Admin
	e.hzn(admin, "exchange", "user", "create", "bob", "bob-pw")
	e.hzn(bob, "exchange", "node", "create", "-n", "nodeU:tokU")
	e.publishService("rotor", map[string]string{"service_token": ""})
	e.addPolicy("rotor", "rotor", map[string]string{"service_token": "svc-token"}, true)

	name := "rotation-under-unit"
	vals := []string{s.canaries.Next(name + "-v1"), s.canaries.Next(name + "-v2"), s.canaries.Next(name + "-v3"), s.canaries.Next(name + "-v4")}
	nodeVal := s.canaries.Next(name + "-node")
	e.putSecret(admin, "svc-token", "tok", vals[0], "")

	a := e.agentWrapped("nodeU", "", wrap)
	checkUnitPrivileges(t, a.Proc().Pid())
	e.register(a, "nodeU", "tokU")
	agID, c := e.active(a, "rotor")
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mi), agID) {
		t.Errorf("the host's mountinfo (world-readable) names agreement %s (%v)", agID, err)
	}
	e.wantFiles(c, map[string]string{"service_token": file("tok", vals[0], "")})
	before := e.startInfo(c)
	e.wantMountOptions(c, "/service_token", "/open-horizon-secrets")

	allowed := []string{file("tok", nodeVal, "")}
	for _, v := range vals {
		allowed = append(allowed, file("tok", v, ""))
	}
	hammer := StartHammer(e.ctx, s.docker, c, 8*time.Second, "/service_token", "/open-horizon-secrets/service_token")
	time.Sleep(300 * time.Millisecond)
	see := func(what, value string) {
		t.Helper()
		want := file("tok", value, "")
		e.waitFile(c, "/service_token", want, 30*time.Second)
		e.waitFile(c, "/open-horizon-secrets/service_token", want, 5*time.Second)
		t.Logf("%s: seen through /service_token and the directory view", what)
	}
	for i := 1; i < len(vals); i++ {
		e.putSecret(admin, "svc-token", "tok", vals[i], "")
		see(fmt.Sprintf("rotation %d", i), vals[i])
	}
	e.putSecret(admin, "svc-token", "tok", nodeVal, "nodeU")
	see("node-specific secret added", nodeVal)
	e.hzn(admin, "sm", "secret", "remove", "-f", "-n", "nodeU", "svc-token")
	see("node-specific secret removed", vals[len(vals)-1])

	h, err := hammer()
	if err != nil {
		t.Fatal(err)
	}
	if h.Errors != 0 || h.Empty != 0 || h.Reads < 100 {
		t.Errorf("continuous read during the rotations: %d reads, %d errors (%s), %d empty", h.Reads, h.Errors, h.FirstError, h.Empty)
	}
	for f, contents := range h.Contents {
		for _, got := range contents {
			if !slices.Contains(allowed, got) {
				t.Errorf("%s read a torn or foreign content %s", f, s.canaries.Describe(got))
			}
		}
	}
	// The grace (1 s) has passed several times over: what a container started with and could
	// not be proven unused must still be there, holding the current value.
	time.Sleep(2500 * time.Millisecond)
	e.wantFiles(c, map[string]string{"service_token": file("tok", vals[len(vals)-1], "")})
	if after := e.startInfo(c); after != before {
		t.Errorf("the container restarted: %s -> %s", before, after)
	}
	if log, _ := os.ReadFile(a.LogPath); strings.Contains(string(log), "already removed") {
		t.Error("the agent removed a version a container still used (see its log)")
	}
	e.scanLive(a)
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
}

// checkUnitPrivileges checks that the agent process really runs with the unit's bounding set
// (and so without CAP_SYS_PTRACE) and no_new_privs.
func checkUnitPrivileges(t *testing.T, pid int) {
	t.Helper()
	p, err := linuxp.ReadUnitPrivileges()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, l := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	bnd, err := strconv.ParseUint(fields["CapBnd"], 16, 64)
	if err != nil {
		t.Fatalf("CapBnd %q: %v", fields["CapBnd"], err)
	}
	const capSysPtrace = 19
	if bnd&(1<<capSysPtrace) != 0 || bits.OnesCount64(bnd) != len(p.Capabilities) {
		t.Errorf("agent CapBnd %s: want exactly the unit's %d capabilities, without CAP_SYS_PTRACE", fields["CapBnd"], len(p.Capabilities))
	}
	if p.NoNewPrivs && fields["NoNewPrivs"] != "1" {
		t.Errorf("agent NoNewPrivs %q, want 1", fields["NoNewPrivs"])
	}
	if fields["CapEff"] != fields["CapBnd"] {
		t.Logf("agent CapEff %s, CapBnd %s", fields["CapEff"], fields["CapBnd"])
	}
}

// wantMountOptions checks, from inside a container, that its secret mounts are read-only (the
// README's promise of the container's copies; Docker's bind options can not add nosuid, nodev or
// noexec, which only the stores' own mounts carry).
func (e *env) wantMountOptions(container string, targets ...string) {
	e.t.Helper()
	got, err := Cat(e.ctx, e.s.docker, container, "/proc/self/mountinfo")
	if err != nil {
		e.t.Fatal(err)
	}
	opts := map[string]string{}
	for _, line := range strings.Split(got["/proc/self/mountinfo"], "\n") {
		if f := strings.Fields(line); len(f) > 5 {
			opts[f[4]] = f[5] // the top mount at a point comes last
		}
	}
	for _, target := range targets {
		o, ok := opts[target]
		if !ok {
			e.t.Errorf("%s is not a mount point in the container", target)
			continue
		}
		for _, want := range []string{"ro"} {
			if !slices.Contains(strings.Split(o, ","), want) {
				e.t.Errorf("%s is mounted %s in the container: not %s", target, o, want)
			}
		}
	}
}
