package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/test/dockertest"
)

// readerImage builds the benchmark's reader (testdata/reader) into a FROM-scratch image that
// runs as 1000:1000, the owner of every secret file the benchmarks write.
func readerImage(tb testing.TB, cli *client.Client) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "testdata", "reader", "main.go"))
	if err != nil {
		tb.Fatal(err)
	}
	return dockertest.BuildImage(tb, cli, dockertest.Image{Name: "anax-bench-reader", Program: string(src), User: "1000:1000"})
}

// benchContainer is a running reader container removed at cleanup.
type benchContainer struct {
	tb  testing.TB
	cli *client.Client
	id  string
}

func startContainer(tb testing.TB, cli *client.Client, image, name string, mounts []mount.Mount) *benchContainer {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = cli.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	resp, err := cli.ContainerCreate(ctx, &container.Config{Image: image, Labels: map[string]string{"anax-bench": "1"}},
		&container.HostConfig{Mounts: mounts, NetworkMode: "none"}, nil, nil, name)
	if err != nil {
		tb.Fatalf("create %s: %v", name, err)
	}
	c := &benchContainer{tb: tb, cli: cli, id: resp.ID}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cli.ContainerRemove(ctx, c.id, container.RemoveOptions{Force: true}); err != nil {
			tb.Errorf("remove container %s: %v", name, err)
		}
	})
	if err := cli.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	return c
}

// execResult is the output of a command run in the container.
type execResult struct {
	stdout, stderr string
	exit           int
	err            error
}

// execAsync runs /prog args in the container, for at most timeout, and delivers its result
// on the channel.
func (c *benchContainer) execAsync(timeout time.Duration, args ...string) <-chan execResult {
	out := make(chan execResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		ex, err := c.cli.ContainerExecCreate(ctx, c.id, container.ExecOptions{Cmd: append([]string{"/prog"}, args...), AttachStdout: true, AttachStderr: true})
		if err != nil {
			out <- execResult{err: err}
			return
		}
		resp, err := c.cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
		if err != nil {
			out <- execResult{err: err}
			return
		}
		defer resp.Close()
		var stdout, stderr bytes.Buffer
		if _, err := stdcopy.StdCopy(&stdout, &stderr, resp.Reader); err != nil {
			out <- execResult{err: err}
			return
		}
		insp, err := c.cli.ContainerExecInspect(ctx, ex.ID)
		out <- execResult{stdout: stdout.String(), stderr: stderr.String(), exit: insp.ExitCode, err: err}
	}()
	return out
}

func (c *benchContainer) exec(args ...string) string {
	c.tb.Helper()
	r := <-c.execAsync(30*time.Second, args...)
	if r.err != nil || r.exit != 0 {
		c.tb.Fatalf("exec %v: exit %d, %v: %s", args, r.exit, r.err, r.stderr)
	}
	return r.stdout
}

func bindMount(src, dst string, ro bool, prop mount.Propagation) mount.Mount {
	m := mount.Mount{Type: mount.TypeBind, Source: src, Target: dst, ReadOnly: ro}
	if prop != "" {
		m.BindOptions = &mount.BindOptions{Propagation: prop}
	}
	return m
}

func waitFile(tb testing.TB, path string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s did not appear within %v", path, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
