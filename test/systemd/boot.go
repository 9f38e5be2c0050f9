// Package systemd boots a real systemd as PID 1 in a container whose root file system is built
// from Debian's packages (systemd, dbus, docker.io; test/prepare.sh systemd caches it), installs
// anax-agent there from the project's .deb, and checks the unit under that systemd. dockerd runs
// inside the same container: the agent and dockerd must share a mount namespace.
//
// Only tests import it.
package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/test/e2e"
)

// RootFS returns the cached root file system tarball's path, which carries a hash of its
// recipe, as test/prepare.sh names it; ok is false when it was not built yet.
func RootFS(ctx context.Context, root string) (path string, ok bool, err error) {
	out, err := exec.CommandContext(ctx, filepath.Join(root, "test", "prepare.sh"), "systemd-path").Output()
	if err != nil {
		return "", false, fmt.Errorf("test/prepare.sh systemd-path: %w", err)
	}
	path = strings.TrimSpace(string(out))
	fi, err := os.Stat(path)
	return path, err == nil && fi.Mode().IsRegular() && fi.Size() > 0, nil
}

// ImportImage imports the root file system into the engine once (by its hash) and returns the
// image's reference.
func ImportImage(ctx context.Context, cli *client.Client, tarball string) (string, error) {
	key := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(tarball), "systemd-rootfs-"), ".tar")
	ref := "anax-systemd-rootfs:" + key
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	}
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: f, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{"ENV container=docker", `CMD ["/lib/systemd/systemd"]`},
	})
	if err != nil {
		return "", fmt.Errorf("import %s: %w", tarball, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	if strings.Contains(buf.String(), `"error"`) {
		return "", fmt.Errorf("import %s: %s", tarball, buf.String())
	}
	return ref, nil
}

// Machine is the booted container.
type Machine struct {
	ID    string
	Pid   int            // the container's init (systemd) on the host
	Share string         // host directory mounted at /share
	Host  *client.Client // the engine the container runs in
	Inner *client.Client // the dockerd inside, through /proc/<pid>/root/run/docker.sock
}

// Boot starts systemd in a container of ref: all capabilities this process has (a container
// runtime refuses to add one outside its own bounding set, so --privileged is not used),
// seccomp and AppArmor off, its own cgroup namespace with a fresh cgroup mount that systemd
// fills, a network namespace with only loopback (the inner dockerd has no bridge: one with
// --bridge=none in the host's namespace would delete the host's docker0; the agent reaches the
// agbot through Relay), share mounted at /share and dockerd's data on dataDir (overlay2 cannot
// stack on overlay).
func Boot(ctx context.Context, cli *client.Client, ref, name, share, dataDir string) (*Machine, error) {
	drop, err := missingCaps()
	if err != nil {
		return nil, err
	}
	// The empty /sys/fs/cgroup below lets systemd mount its own (rw) v1 hierarchies in the
	// container's cgroup namespace. On a cgroup v2 host it would need a different set-up
	// (--privileged, which mounts cgroup2 rw), not written yet: say so instead of half-booting.
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return nil, err
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("this host uses cgroup v2 only; the systemd test boots its machine on cgroup v1 hosts (as CI's): %w", errors.ErrUnsupported)
	}
	// systemd halts on SIGRTMIN+3: docker stop is a clean shutdown of the machine.
	stopTimeout := 90
	cfg := &container.Config{Image: ref, StopSignal: "SIGRTMIN+3", StopTimeout: &stopTimeout,
		Labels: map[string]string{"org.edge-secrets.anax-agent.test": "true"}}
	host := &container.HostConfig{
		CapAdd:       []string{"ALL"},
		CapDrop:      drop,
		SecurityOpt:  []string{"seccomp=unconfined", "apparmor=unconfined"},
		CgroupnsMode: container.CgroupnsModePrivate,
		NetworkMode:  "none",
		Tmpfs:        map[string]string{"/run": "", "/run/lock": "", "/sys/fs/cgroup": "", "/tmp": ""},
		Binds:        []string{share + ":/share", dataDir + ":/var/lib/docker"},
	}
	resp, err := cli.ContainerCreate(ctx, cfg, host, &network.NetworkingConfig{}, nil, name)
	if err != nil {
		return nil, err
	}
	m := &Machine{ID: resp.ID, Share: share, Host: cli}
	return m, m.start(ctx)
}

// Reboot shuts the machine down cleanly (systemd stops the agent, then dockerd, which stops
// its containers) and boots it again: /run is a new tmpfs, so the secret stores are gone,
// while /var/lib (the agent's state, dockerd's containers) is kept, as on a real reboot.
func (m *Machine) Reboot(ctx context.Context) error {
	if m.Inner != nil {
		m.Inner.Close()
		m.Inner = nil
	}
	if err := m.Host.ContainerStop(ctx, m.ID, container.StopOptions{}); err != nil {
		return fmt.Errorf("shutting the machine down: %w", err)
	}
	return m.start(ctx)
}

// start starts the container and waits for systemd and the inner dockerd.
func (m *Machine) start(ctx context.Context) error {
	cli := m.Host
	if err := cli.ContainerStart(ctx, m.ID, container.StartOptions{}); err != nil {
		return err
	}
	insp, err := cli.ContainerInspect(ctx, m.ID)
	if err != nil {
		return err
	}
	m.Pid = insp.State.Pid
	// The system is up when systemd says so (degraded counts: a unit that does not fit in a
	// container must not hide the agent's own result), then the inner dockerd answers.
	err = e2e.Eventually(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		out, _ := m.Run(ctx, "systemctl", "is-system-running")
		if s := strings.TrimSpace(string(out)); s != "running" && s != "degraded" {
			return fmt.Errorf("systemctl is-system-running: %q", s)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.Inner, err = client.NewClientWithOpts(client.WithHost(fmt.Sprintf("unix:///proc/%d/root/run/docker.sock", m.Pid)),
		client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	return e2e.Eventually(ctx, 2*time.Minute, 500*time.Millisecond, func() error {
		_, err := m.Inner.Ping(ctx)
		return err
	})
}

// Relay carries connections on the unix socket sock (in the share, for the relay program in
// the machine) to the TCP address target, until ctx ends.
func Relay(ctx context.Context, sock, target string) error {
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var d net.Dialer
				up, err := d.DialContext(ctx, "tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); done <- struct{}{} }()
				go func() { io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return nil
}

// Run runs a command in the container and returns its standard output.
func (m *Machine) Run(ctx context.Context, cmd ...string) ([]byte, error) {
	return e2e.Exec(ctx, m.Host, m.ID, cmd...)
}

// Show returns a property of a unit (systemctl show -p NAME --value).
func (m *Machine) Show(ctx context.Context, unit, prop string) (string, error) {
	out, err := m.Run(ctx, "systemctl", "show", "-p", prop, "--value", unit)
	return strings.TrimSpace(string(out)), err
}

// MainPID is the unit's main process in the container's PID namespace (0: none).
func (m *Machine) MainPID(ctx context.Context, unit string) (int, error) {
	v, err := m.Show(ctx, unit, "MainPID")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// Close removes the container (the inner dockerd and its containers die with it).
func (m *Machine) Close(ctx context.Context) error {
	if m.Inner != nil {
		m.Inner.Close()
	}
	return m.Host.ContainerRemove(ctx, m.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
}

// capNames are the capabilities by bit number, as Docker names them.
var capNames = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
	"SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
	"MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
	"CHECKPOINT_RESTORE"}

// missingCaps names the capabilities outside this process's bounding set (when the tests run
// in a container themselves, e.g. without CAP_SYS_RESOURCE).
func missingCaps() ([]string, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			bnd, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, err
			}
			var drop []string
			for bit, name := range capNames {
				if bnd&(1<<bit) == 0 {
					drop = append(drop, name)
				}
			}
			return drop, nil
		}
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}
