package dockertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// Daemon is a private dockerd for one test: its own socket, data root, exec root and pid file
// under a temporary directory, its own network namespace, no bridge and no iptables rules, so
// a test may stop, restart or reconfigure it without touching the engine other tests share. The agent under test
// reaches it through DOCKER_HOST (Env).
type Daemon struct {
	Dir    string   // everything of this daemon lives below
	Host   string   // "unix:///.../docker.sock"
	Args   []string // extra dockerd flags, e.g. --userns-remap=default
	Client *client.Client

	cmd  *exec.Cmd
	done chan struct{}
}

// StartDaemon starts a private dockerd with extra flags and stops it, with every container it
// ran and every mount it left, at the test's end. It skips (fails in CI) without root or dockerd.
func StartDaemon(t testing.TB, args ...string) *Daemon {
	t.Helper()
	testenv.RequireRoot(t)
	if _, err := exec.LookPath("dockerd"); err != nil {
		testenv.Skip(t, "no dockerd (run test/prepare.sh docker)")
	}
	// Short: a unix socket path must fit in 108 bytes, and t.TempDir() names are long.
	dir, err := os.MkdirTemp("", "anax-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	// userns-remap: the remapped root must traverse it to reach its graph root.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Dir: dir, Host: "unix://" + filepath.Join(dir, "docker.sock"), Args: args}
	t.Cleanup(func() {
		if err := d.close(); err != nil {
			t.Errorf("private dockerd clean-up: %v", err)
		}
	})
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cli.NegotiateAPIVersion(ctx) // before goroutines share it (see container.negotiate)
	d.Client = cli
	return d
}

// Env is the environment entry that points a program at this daemon.
func (d *Daemon) Env() string { return "DOCKER_HOST=" + d.Host }

// Start starts dockerd and waits until it answers.
func (d *Daemon) Start() error {
	args := append([]string{
		"--host", d.Host,
		"--data-root", filepath.Join(d.Dir, "data"),
		"--exec-root", filepath.Join(d.Dir, "exec"),
		"--pidfile", filepath.Join(d.Dir, "docker.pid"),
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		// Its own containerd: the shared engine's must not see this one's containers.
		"--containerd-namespace", "anax-test", "--containerd-plugins-namespace", "anax-test-plugins",
	}, d.Args...)
	logf, err := os.OpenFile(filepath.Join(d.Dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("dockerd", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own network namespace: a dockerd with --bridge=none deletes the interface docker0 at
	// start-up, which in the host's namespace is the shared engine's bridge.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start dockerd: %w", err)
	}
	logf.Close()
	d.cmd, d.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(d.done) }()
	cli, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("private dockerd exited: %s", d.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("private dockerd does not answer after 90s (%v): %s", err, d.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Stop stops dockerd with SIGTERM (its containers stop with it) and waits for it to exit.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(2 * time.Minute):
		d.cmd.Process.Kill()
		<-d.done
		return errors.New("private dockerd did not stop within 2 minutes; killed")
	}
	d.cmd = nil
	return nil
}

// Pid is dockerd's process id (0 when stopped).
func (d *Daemon) Pid() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *Daemon) tail() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// close removes every container, stops dockerd, unmounts what it left below Dir and removes Dir.
func (d *Daemon) close() error {
	var errs []error
	if d.Client != nil && d.cmd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		list, err := d.Client.ContainerList(ctx, container.ListOptions{All: true})
		if err != nil {
			errs = append(errs, err)
		}
		for _, c := range list {
			if err := d.Client.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
				errs = append(errs, err)
			}
		}
		cancel()
	}
	if d.Client != nil {
		d.Client.Close()
	}
	if err := d.Stop(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountBelow(d.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountBelow detaches every mount at or below dir, deepest first.
func unmountBelow(dir string) error {
	ms, err := linux.SelfMountinfo()
	if err != nil {
		return err
	}
	var errs []error
	for i := len(ms) - 1; i >= 0; i-- {
		if p := ms[i].Mountpoint; p == dir || strings.HasPrefix(p, dir+"/") {
			if _, err := linux.UnmountAll(p); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}
