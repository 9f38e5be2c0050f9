package secretfs

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/test/dockertest"
)

// readerProgram is the container: it sleeps, and docker exec runs it again with a subcommand to
// look at its own /<name> from inside.
const readerProgram = `package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		for {
			time.Sleep(time.Hour)
		}
	}
	path := ""
	if len(os.Args) > 2 {
		path = os.Args[2]
	}
	switch os.Args[1] {
	case "cat":
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	case "depth": // mounts stacked at path, as this container sees them
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[4] == path {
				n++
			}
		}
		fmt.Print(n)
	case "write":
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err == nil {
			_, err = f.WriteString("CANARY-overwritten")
			f.Close()
		}
		fmt.Print(result(err))
	case "chmod":
		fmt.Print(result(os.Chmod(path, 0o644)))
	case "id":
		fmt.Printf("%d:%d", os.Getuid(), os.Getgid())
	}
}

func result(err error) string {
	if err == nil {
		return "ALLOWED"
	}
	return "refused: " + err.Error()
}
`

type ctr struct {
	t   *testing.T
	cli *client.Client
	id  string
}

func (c *ctr) exec(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := c.cli.ContainerExecCreate(ctx, c.id, container.ExecOptions{Cmd: append([]string{"/prog"}, args...), AttachStdout: true, AttachStderr: true})
	if err != nil {
		c.t.Fatalf("exec %v: %v", args, err)
	}
	resp, err := c.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		c.t.Fatalf("exec %v: %v", args, err)
	}
	defer resp.Close()
	resp.Conn.SetDeadline(time.Now().Add(30 * time.Second)) // the hijacked stream ignores ctx
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, resp.Reader); err != nil {
		c.t.Fatalf("exec %v: %v", args, err)
	}
	if insp, err := c.cli.ContainerExecInspect(ctx, ex.ID); err != nil || insp.ExitCode != 0 {
		c.t.Fatalf("exec %v: exit %d (%v): %s", args, insp.ExitCode, err, stderr.String())
	}
	return stdout.String()
}

func (c *ctr) startedAt() string {
	c.t.Helper()
	insp, err := c.cli.ContainerInspect(context.Background(), c.id)
	if err != nil {
		c.t.Fatal(err)
	}
	if !insp.State.Running {
		c.t.Fatalf("container %s is not running: %+v", c.id[:12], insp.State)
	}
	return insp.State.StartedAt
}

// eventually polls the container until it reads wantValue at path, for a container that
// started after the last scan (see reconcile_linux.go). It returns how long that took.
func (c *ctr) eventually(path, wantValue string) time.Duration {
	c.t.Helper()
	start := time.Now()
	for {
		got := c.exec("cat", path)
		if got == wantValue {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			c.t.Fatalf("%s in the container reads %q after 10s, want %q", path, got, wantValue)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestContainer runs a real container (image built FROM scratch around readerProgram) with the
// publish points bind-mounted read-only with rslave propagation at /<name> and the view at
// /open-horizon-secrets, applies updates, and looks from inside the container.
func TestContainer(t *testing.T) {
	e0 := newEnv(t) // root first: skips (fails in CI) without root
	_ = e0
	cli := dockertest.Client(t)
	img := dockertest.BuildImage(t, cli, dockertest.Image{Name: "anax-test-secretfs-reader", Program: readerProgram, User: "1000:1001"})
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			id := "ctr-" + string(mode)
			val := func(i int) []Secret {
				tok, key := canary(id+"-token", i), canary(id+"-key", i)
				e.remember(tok)
				e.remember(key)
				return []Secret{
					{Name: "db_token", Value: tok, Format: FormatValueOnly},
					{Name: "api_key", Key: "api", Value: key},
				}
			}
			st, err := f.Create(Spec{ID: id, UID: 1000, GID: 1001, Secrets: val(1)})
			if err != nil {
				t.Fatal(err)
			}
			var mounts []mount.Mount
			for _, name := range []string{"db_token", "api_key"} {
				mounts = append(mounts, bindRO(st.Files[name], "/"+name))
			}
			mounts = append(mounts, bindRO(st.DirView, "/open-horizon-secrets"))
			c := runContainer(t, cli, img, mounts)
			started := c.startedAt()

			check := func(what string, i int) {
				t.Helper()
				for _, s := range val(i) {
					if got := c.exec("cat", "/"+s.Name); got != want(s) {
						t.Errorf("%s: /%s = %q, want %q", what, s.Name, got, want(s))
					}
					if got := c.exec("cat", "/open-horizon-secrets/"+s.Name); got != want(s) {
						t.Errorf("%s: /open-horizon-secrets/%s = %q, want %q", what, s.Name, got, want(s))
					}
				}
			}
			depth := func() int {
				t.Helper()
				n, err := strconv.Atoi(c.exec("depth", "/db_token"))
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			check("at start", 1)
			if got := c.exec("id"); got != "1000:1001" {
				t.Fatalf("container user = %s, want 1000:1001", got)
			}
			for _, p := range []string{"/db_token", "/api_key", "/open-horizon-secrets/db_token"} {
				for _, op := range []string{"write", "chmod"} {
					if got := c.exec(op, p); !strings.HasPrefix(got, "refused") {
						t.Errorf("%s %s from inside the container: %s, want refused", op, p, got)
					}
				}
				// The owner could chmod its own file: the read-only mount is what stops it.
				if got := c.exec("chmod", p); !strings.Contains(got, "read-only file system") {
					t.Errorf("chmod %s: %s, want a read-only file system error", p, got)
				}
			}
			check("after refused writes", 1)

			if mode == ModeRestart {
				// Files keep the old value until the container restarts; the view changes live.
				if err := f.Update(id, val(2)); err != nil {
					t.Fatal(err)
				}
				if got, old := c.exec("cat", "/db_token"), want(val(1)[0]); got != old {
					t.Errorf("restart mode: /db_token = %q before the restart, want the old %q", got, old)
				}
				if got := c.exec("cat", "/open-horizon-secrets/db_token"); got != want(val(2)[0]) {
					t.Errorf("restart mode: the view reads %q, want the new value", got)
				}
				c.restart()
				check("after the restart", 2)
				return
			}

			// The scan that the background loop runs every few seconds, now: it finds the
			// container, so every update reaches it before Update returns.
			f.reconcile()
			for i := 2; i <= 5; i++ {
				if err := f.Update(id, val(i)); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("after update %d", i), i)
				d := depth()
				t.Logf("update %d: the container sees a stack %d deep at /db_token", i, d)
				if mode == ModeMountSwap && d > 2 {
					t.Errorf("update %d: stack %d deep in the container, want <= 2", i, d)
				}
			}
			if now := c.startedAt(); now != started {
				t.Errorf("the container restarted: StartedAt %s, then %s", started, now)
			}

			// A restart (crash loop, docker restart, restart policy) binds whatever version is
			// current then. The next update must still reach it, without any help.
			c.restart()
			check("after docker restart", 5)
			if err := f.Update(id, val(6)); err != nil {
				t.Fatal(err)
			}
			took := c.eventually("/db_token", want(val(6)[0]))
			t.Logf("a container restarted since the last scan saw update 6 after %v", took)
			check("after update 6", 6)
			for i := 7; i <= 8; i++ {
				if err := f.Update(id, val(i)); err != nil {
					t.Fatal(err)
				}
				check(fmt.Sprintf("after update %d", i), i)
			}
			if d := depth(); mode == ModeMountSwap && d > 2 {
				t.Errorf("after the restart: stack %d deep in the container, want <= 2", d)
			}
		})
	}
}

func bindRO(src, dst string) mount.Mount {
	return mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: true,
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}}
}

func runContainer(t *testing.T, cli *client.Client, img string, mounts []mount.Mount) *ctr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img, Labels: map[string]string{"org.edge-secrets.anax-agent.test": "secretfs"}},
		&container.HostConfig{Mounts: mounts, NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	c := &ctr{t: t, cli: cli, id: resp.ID}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cli.ContainerRemove(ctx, resp.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container: %v", err)
	}
	return c
}

func (c *ctr) restart() {
	c.t.Helper()
	before := c.startedAt()
	timeout := 0
	if err := c.cli.ContainerRestart(context.Background(), c.id, container.StopOptions{Timeout: &timeout}); err != nil {
		c.t.Fatalf("restart container: %v", err)
	}
	if after := c.startedAt(); after == before {
		c.t.Fatalf("container did not restart (StartedAt %s)", after)
	}
}
