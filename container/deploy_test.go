package container

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/dockertest"
)

func planWorker(t *testing.T, opts Options) *Worker {
	t.Helper()
	opts.AgentID = "agent-test"
	w, err := New(fakeEngine{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func deployInstance(s Spec, allowPriv bool) Instance {
	s.Name, s.Image = "web", "example/web:1"
	return Instance{InstanceID: "agr", Service: Service{Org: "o", URL: "u", Version: "1.0.0"},
		Containers: []Spec{s}, AllowPrivileged: allowPriv}
}

// TestDeploymentRefusals: what a node refuses of a deployment, with the field named and
// ErrPolicy, before the engine is asked for anything (the fake engine would panic).
func TestDeploymentRefusals(t *testing.T) {
	secretsRoot := t.TempDir()
	link := filepath.Join(t.TempDir(), "innocent")
	if err := os.Symlink("/proc", link); err != nil {
		t.Fatal(err)
	}
	w := planWorker(t, Options{ProtectedPaths: []string{secretsRoot}})
	bind := func(src string) Spec {
		return Spec{Binds: []protocol.Bind{{Source: src, Target: "/data"}}}
	}
	for _, tc := range []struct {
		name  string
		spec  Spec
		priv  bool
		want  string
		isErr error
	}{
		{"privileged", Spec{Privileged: true}, false, "privileged: this node's policy does not set openhorizon.allowPrivileged", ErrPolicy},
		{"host network", Spec{HostNetwork: true}, false, "network host", ErrPolicy},
		{"devices", Spec{Devices: []protocol.Device{{Host: "/dev/mem", Container: "/dev/mem", Perms: "rwm"}}}, false, "devices (/dev/mem)", ErrPolicy},
		{"device outside /dev", Spec{Devices: []protocol.Device{{Host: "/etc/shadow", Container: "/x", Perms: "r"}}}, true, "under /dev/", ErrInvalid},
		{"capability", Spec{CapAdd: []string{"SYS_ADMIN"}}, false, "allowPrivileged", ErrPolicy},
		{"bind secrets root", bind(secretsRoot), true, "reaches " + secretsRoot, ErrPolicy},
		{"bind under secrets root", bind(secretsRoot + "/store1/files"), true, "reaches " + secretsRoot, ErrPolicy},
		{"bind above secrets root", bind(filepath.Dir(secretsRoot)), true, "reaches " + secretsRoot, ErrPolicy},
		{"bind root", bind("/"), true, "host's root", ErrPolicy},
		{"bind proc", bind("/proc"), true, "reaches /proc", ErrPolicy},
		{"bind proc child", bind("/proc/1/root"), true, "reaches /proc", ErrPolicy},
		{"bind sys", bind("/sys/fs/cgroup"), true, "reaches /sys", ErrPolicy},
		{"bind symlink to proc", bind(link), true, "reaches /proc", ErrPolicy},
		{"bind docker socket", bind("/var/run/docker.sock"), true, "engine's socket", ErrPolicy},
		{"bind run dir", bind("/run"), true, "reaches /run/docker.sock", ErrPolicy},
		{"bind over secret view", Spec{Binds: []protocol.Bind{{Source: "/tmp", Target: "/open-horizon-secrets/x"}}}, true, "mounts the service's secrets", ErrPolicy},
		{"tmpfs over secret view", Spec{Tmpfs: map[string]string{DirViewTarget: ""}}, true, "mounts the service's secrets", ErrPolicy},
		{"cpus", Spec{CPUs: 5000}, true, "max_cpus", ErrInvalid},
		{"host port 80", Spec{Ports: []protocol.Port{{HostPort: 80, ContainerPort: 8080, Proto: "tcp"}}}, false, "host port 80", ErrPolicy},
		{"bind /etc", bind("/etc"), false, "reaches /etc: a host system directory", ErrPolicy},
		{"bind /root/.ssh", bind("/root/.ssh"), false, "reaches /root", ErrPolicy},
		{"bind /dev", bind("/dev"), false, "reaches /dev", ErrPolicy},
		{"bind /var", bind("/var"), false, "reaches /var/lib", ErrPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.plan(deployInstance(tc.spec, tc.priv))
			if !errors.Is(err, tc.isErr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("plan error = %v, want %v naming %q", err, tc.isErr, tc.want)
			}
		})
	}
}

// TestDeploymentApplied: each allowed field reaches the engine's configuration, and the
// instance's env (user input, HZN_*) wins over the deployment's environment.
func TestDeploymentApplied(t *testing.T) {
	w := planWorker(t, Options{ProtectedPaths: []string{"/run/anax-agent/secrets"}, AllowDockerSocket: true})
	spec := Spec{
		Env:        map[string]string{"A": "deployment", "HZN_ORGANIZATION": "forged"},
		Entrypoint: []string{"/bin/sh", "-c"},
		Binds:      []protocol.Bind{{Source: "/tmp", Target: "/hosttmp", ReadOnly: true}, {Source: "vol1", Target: "/v", Volume: true}, {Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		Tmpfs:      map[string]string{"/app": "size=1m"},
		Ports:      []protocol.Port{{HostPort: 5200, ContainerPort: 6414, Proto: "tcp"}, {ContainerPort: 53, Proto: "udp", HostIP: "127.0.0.1"}},
		CPUs:       1.5,
		LogDriver:  "json-file",
		Privileged: true, HostNetwork: true,
		Devices: []protocol.Device{{Host: "/dev/null", Container: "/dev/nothing", Perms: "r"}},
	}
	inst := deployInstance(spec, true)
	inst.Env = map[string]string{"HZN_ORGANIZATION": "org1", "VAR1": "bp_string"}
	plans, err := w.plan(inst)
	if err != nil {
		t.Fatal(err)
	}
	cfg, host := plans[0].cfg, plans[0].host
	env := strings.Join(cfg.Env, "\n")
	for _, want := range []string{"A=deployment", "HZN_ORGANIZATION=org1", "VAR1=bp_string"} {
		if !strings.Contains(env, want) {
			t.Errorf("env %q lacks %s", cfg.Env, want)
		}
	}
	if strings.Contains(env, "forged") {
		t.Errorf("the deployment replaced a platform variable: %q", cfg.Env)
	}
	if len(cfg.Entrypoint) != 2 || host.NanoCPUs != 1_500_000_000 || host.LogConfig.Type != "json-file" ||
		!host.Privileged || host.CapDrop != nil || host.NetworkMode != "host" || host.Tmpfs["/app"] != "size=1m" {
		t.Errorf("config = %+v, host = %+v", cfg, host)
	}
	if len(host.Mounts) != 3 || host.Mounts[0].Source != "/tmp" || !host.Mounts[0].ReadOnly || host.Mounts[1].Type != "volume" {
		t.Errorf("mounts = %+v", host.Mounts)
	}
	// A named volume is the service's own: another service naming it gets another volume.
	other := VolumeName(Service{Org: "other", URL: "u"}, "vol1")
	if v := host.Mounts[1].Source; v != VolumeName(inst.Service, "vol1") || v == other || !strings.HasSuffix(v, "-vol1") {
		t.Errorf("volume %q: want the service's own (other service: %q)", v, other)
	}
	if len(host.Resources.Devices) != 1 || host.Resources.Devices[0].CgroupPermissions != "r" {
		t.Errorf("devices = %+v", host.Resources.Devices)
	}
	if b := host.PortBindings["6414/tcp"]; len(b) != 1 || b[0].HostPort != "5200" {
		t.Errorf("ports = %+v", host.PortBindings)
	}
	if b := host.PortBindings["53/udp"]; len(b) != 1 || b[0].HostPort != "" || b[0].HostIP != "127.0.0.1" {
		t.Errorf("ports = %+v", host.PortBindings)
	}
	if len(host.SecurityOpt) == 0 || host.PidsLimit == nil {
		t.Errorf("privileged lost the hardening: %+v", host)
	}
}

// TestDeploymentOnEngine: the deployment fields and the instance's HZN_* variables as a real
// engine runs them: env of the service's process, a read-only bind, a tmpfs, an entrypoint,
// a published port, a CPU limit and a log driver; the agreement's two containers share a
// network of their own under their names, removed with the agreement.
func TestDeploymentOnEngine(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "f"), []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	inst := Instance{InstanceID: "agr-deploy", Service: testService,
		Env: map[string]string{"HZN_AGREEMENTID": "agr-deploy", "HZN_ORGANIZATION": "org1", "HZN_DEVICE_ID": "node1", "var1": "bp_string"},
		Containers: []Spec{{
			Name: "web", Image: ref, Entrypoint: []string{"/prog"}, Command: []string{"serve"},
			Env:   map[string]string{"HZN_DEVICE_ID": "forged", "MODE": "x"},
			Binds: []protocol.Bind{{Source: hostDir, Target: "/hostdata", ReadOnly: true}},
			Tmpfs: map[string]string{"/scratch": "size=1m"},
			Ports: []protocol.Port{{ContainerPort: 8080, Proto: "tcp", HostIP: "127.0.0.1"}},
			CPUs:  0.5, LogDriver: "json-file",
		}, {Name: "sidecar", Image: ref}}}
	got, err := h.Start(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	id := got[0].ID
	waitLog(t, cli, id, "ready")
	environ, code := execIn(t, cli, id, "", "cat", "/proc/1/environ")
	if code != 0 {
		t.Fatalf("cat /proc/1/environ: %q", environ)
	}
	for _, want := range []string{"HZN_AGREEMENTID=agr-deploy", "HZN_ORGANIZATION=org1", "HZN_DEVICE_ID=node1", "var1=bp_string", "MODE=x"} {
		if !strings.Contains(environ, want+"\x00") {
			t.Errorf("the service's environment lacks %s", want)
		}
	}
	if strings.Contains(environ, "forged") {
		t.Error("the deployment's environment replaced HZN_DEVICE_ID")
	}
	if out, code := execIn(t, cli, id, "", "cat", "/hostdata/f"); code != 0 || out != "from the host" {
		t.Errorf("bind: cat = %q (%d)", out, code)
	}
	if out, code := execIn(t, cli, id, "", "create", "/hostdata/new"); code == 0 {
		t.Errorf("read-only bind is writable: %q", out)
	}
	if out, code := execIn(t, cli, id, "", "create", "/scratch/x"); code != 0 {
		t.Errorf("tmpfs: %q (%d)", out, code)
	}
	ins := inspect(t, cli, id)
	if ins.HostConfig.NanoCPUs != 500_000_000 || ins.HostConfig.LogConfig.Type != "json-file" {
		t.Errorf("NanoCPUs %d, log driver %q", ins.HostConfig.NanoCPUs, ins.HostConfig.LogConfig.Type)
	}
	if b := ins.HostConfig.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("port bindings = %+v", ins.HostConfig.PortBindings)
	}
	if len(ins.Config.Entrypoint) != 1 || ins.Config.Entrypoint[0] != "/prog" {
		t.Errorf("entrypoint = %q", ins.Config.Entrypoint)
	}
	checkHardened(t, ins.HostConfig, nil, 0)
	for i, name := range []string{"web", "sidecar"} {
		nets := inspect(t, cli, got[i].ID).NetworkSettings.Networks
		ep := nets[NetworkName("agr-deploy")]
		if ep == nil || !slices.Contains(ep.Aliases, name) || len(nets) != 1 {
			t.Errorf("%s: networks = %+v, want only the agreement's, with alias %s", name, nets, name)
		}
	}
	if err := h.Stop(ctx, "agr-deploy"); err != nil {
		t.Fatal(err)
	}
	if nets, err := h.agreementNetworks(ctx, "agr-deploy"); err != nil || len(nets) != 0 {
		t.Errorf("after Stop the agreement's network is left: %v %v", nets, err)
	}
}

// A lone container stays on the engine's default network: an agreement network would take
// one of the engine's few address pools for nothing.
func TestLoneContainerNoNetwork(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	if _, err := h.Start(ctx, Instance{InstanceID: "agr-lone", Service: testService, Containers: []Spec{{Name: "web", Image: ref}}}); err != nil {
		t.Fatal(err)
	}
	if n := h.rec.n("NetworkCreate"); n != 0 {
		t.Errorf("%d networks created for one container, want 0", n)
	}
	if err := h.Stop(ctx, "agr-lone"); err != nil {
		t.Fatal(err)
	}
}
