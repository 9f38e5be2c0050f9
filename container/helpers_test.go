package container

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
)

// testProgram is the static Go program every test image runs as /prog.
//
//	serve           print "got N" on SIGHUP (1) and SIGUSR1, exit 0 on SIGTERM
//	stubborn        ignore SIGTERM
//	cat FILE        print FILE
//	write FILE      open FILE for writing
//	create FILE     create a new FILE
//	stat FILE       print "uid=U gid=G mode=M"
//	id              print "uid:gid"
//	exit CODE       exit with CODE
const testProgram = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func fail(err error) {
	fmt.Println("error:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: prog serve|cat|write|create|stat|id|exit")
		os.Exit(2)
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	switch os.Args[1] {
	case "serve":
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM)
		fmt.Println("ready")
		for s := range sigs {
			if s == syscall.SIGTERM {
				os.Exit(0)
			}
			fmt.Printf("got %d\n", s.(syscall.Signal))
		}
	case "stubborn":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "cat":
		b, err := os.ReadFile(arg)
		if err != nil {
			fail(err)
		}
		os.Stdout.Write(b)
	case "write":
		f, err := os.OpenFile(arg, os.O_WRONLY, 0)
		if err != nil {
			fail(err)
		}
		f.Close()
		fmt.Println("opened for writing")
	case "create":
		if err := os.WriteFile(arg, []byte("x"), 0o600); err != nil {
			fail(err)
		}
		fmt.Println("created")
	case "stat":
		var st syscall.Stat_t
		if err := syscall.Stat(arg, &st); err != nil {
			fail(err)
		}
		fmt.Printf("uid=%d gid=%d mode=%o\n", st.Uid, st.Gid, st.Mode&0o7777)
	case "id":
		fmt.Printf("%d:%d\n", os.Getuid(), os.Getgid())
	case "exit":
		code, _ := strconv.Atoi(arg)
		os.Exit(code)
	}
}
`

// image builds the test program into an image running as user, with extra files.
func testImage(t *testing.T, cli *client.Client, user string, files map[string][]byte) string {
	t.Helper()
	return dockertest.BuildImage(t, cli, dockertest.Image{
		Name:    "anax-test-container",
		Program: testProgram,
		User:    user,
		Files:   files,
		Cmd:     []string{"serve"},
	})
}

// harness is a worker under test: its own agent id, a client that counts calls, its log.
type harness struct {
	*Worker
	cli  *client.Client
	rec  *recorder
	logs *syncbuf.Buffer
}

// testWorker returns a worker with an agent id of its own and removes every container carrying
// that agent id when the test ends.
func testWorker(t *testing.T, cli *client.Client) *harness {
	t.Helper()
	return testWorkerAs(t, cli, uniqueAgentID(t))
}

func testWorkerAs(t *testing.T, cli *client.Client, agent string) *harness {
	t.Helper()
	return testWorkerOpts(t, cli, Options{AgentID: agent})
}

// testWorkerOpts is testWorkerAs with options; AgentID, StopTimeout and Logger are set here
// when empty.
func testWorkerOpts(t *testing.T, cli *client.Client, opts Options) *harness {
	t.Helper()
	h := &harness{cli: cli, rec: &recorder{api: cli}, logs: &syncbuf.Buffer{}}
	if opts.AgentID == "" {
		opts.AgentID = uniqueAgentID(t)
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t, h.logs)
	}
	agent := opts.AgentID
	w, err := New(h.rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The host's accounts are the test's: only root, so uid 1000 (a real account on many
	// hosts) runs, whatever this machine's /etc/passwd says.
	w.hostFS.passwd = hostPasswd(t, "root:x:0:0:root:/root:/bin/sh\n")
	h.Worker = w
	t.Cleanup(func() { sweep(t, cli, agent) })
	return h
}

// hostPasswd writes content as the host's /etc/passwd for a worker under test.
func hostPasswd(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func uniqueAgentID(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return "test-" + name + "-" + hex.EncodeToString(b)
}

// sweep removes every container labelled with agent, probes included.
func sweep(t *testing.T, cli *client.Client, agent string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", labelAgent+"="+agent))})
	if err != nil {
		t.Errorf("cleanup: list: %v", err)
		return
	}
	for _, c := range list {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove %s: %v", c.ID, err)
		}
	}
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelAgent+"="+agent))})
	if err != nil {
		t.Errorf("cleanup: list networks: %v", err)
		return
	}
	for _, n := range nets {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove network %s: %v", n.Name, err)
		}
	}
}

// countContainers counts the containers (any state, probes included) labelled with agent.
func countContainers(t *testing.T, cli *client.Client, agent string) int {
	t.Helper()
	list, err := cli.ContainerList(context.Background(), container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", labelAgent+"="+agent))})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// execIn runs /prog args... in the running container id as user ("" is the container's user)
// and returns its stdout and exit code. Exec output is not kept in the container's log.
func execIn(t *testing.T, cli *client.Client, id, user string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{User: user,
		Cmd: append([]string{"/prog"}, args...), AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", args, id, err)
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		t.Fatalf("exec %v in %s: attach: %v", args, id, err)
	}
	defer att.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		t.Fatalf("exec %v: read: %v", args, err)
	}
	insp, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		t.Fatalf("exec %v: inspect: %v", args, err)
	}
	return stdout.String() + stderr.String(), insp.ExitCode
}

// logs returns what the container printed so far.
func logs(t *testing.T, cli *client.Client, id string) string {
	t.Helper()
	rc, err := cli.ContainerLogs(context.Background(), id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs %s: %v", id, err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, rc); err != nil {
		t.Fatalf("logs %s: %v", id, err)
	}
	return out.String()
}

// waitLog waits until the container's log contains want (the engine's event order, not a
// timing assertion: the deadline only bounds a hung test).
func waitLog(t *testing.T, cli *client.Client, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs(t, cli, id), want) {
		if time.Now().After(deadline) {
			t.Fatalf("container %s never printed %q; log:\n%s", id, want, logs(t, cli, id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func inspect(t *testing.T, cli *client.Client, id string) container.InspectResponse {
	t.Helper()
	c, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return c
}

// recorder passes every call to the real engine client and counts them by method.
type recorder struct {
	api   Docker
	mu    sync.Mutex
	calls map[string]int
}

func (r *recorder) count(method string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[method]++
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

func (r *recorder) n(method string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method]
}

func (r *recorder) Info(ctx context.Context) (system.Info, error) {
	r.count("Info")
	return r.api.Info(ctx)
}
func (r *recorder) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	r.count("ImageInspect")
	return r.api.ImageInspect(ctx, ref, opts...)
}
func (r *recorder) ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error) {
	r.count("ImagePull")
	return r.api.ImagePull(ctx, ref, opts)
}
func (r *recorder) ContainerCreate(ctx context.Context, cfg *container.Config, host *container.HostConfig, net *network.NetworkingConfig, platform *ocispec.Platform, name string) (container.CreateResponse, error) {
	r.count("ContainerCreate")
	return r.api.ContainerCreate(ctx, cfg, host, net, platform, name)
}
func (r *recorder) ContainerStart(ctx context.Context, id string, opts container.StartOptions) error {
	r.count("ContainerStart")
	return r.api.ContainerStart(ctx, id, opts)
}
func (r *recorder) ContainerStop(ctx context.Context, id string, opts container.StopOptions) error {
	r.count("ContainerStop")
	return r.api.ContainerStop(ctx, id, opts)
}
func (r *recorder) ContainerRestart(ctx context.Context, id string, opts container.StopOptions) error {
	r.count("ContainerRestart")
	return r.api.ContainerRestart(ctx, id, opts)
}
func (r *recorder) ContainerKill(ctx context.Context, id, signal string) error {
	r.count("ContainerKill")
	return r.api.ContainerKill(ctx, id, signal)
}
func (r *recorder) ContainerRemove(ctx context.Context, id string, opts container.RemoveOptions) error {
	r.count("ContainerRemove")
	return r.api.ContainerRemove(ctx, id, opts)
}
func (r *recorder) ContainerList(ctx context.Context, opts container.ListOptions) ([]container.Summary, error) {
	r.count("ContainerList")
	return r.api.ContainerList(ctx, opts)
}
func (r *recorder) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	r.count("ContainerInspect")
	return r.api.ContainerInspect(ctx, id)
}
func (r *recorder) ContainerLogs(ctx context.Context, id string, opts container.LogsOptions) (io.ReadCloser, error) {
	r.count("ContainerLogs")
	return r.api.ContainerLogs(ctx, id, opts)
}
func (r *recorder) CopyFromContainer(ctx context.Context, id, srcPath string) (io.ReadCloser, container.PathStat, error) {
	r.count("CopyFromContainer")
	return r.api.CopyFromContainer(ctx, id, srcPath)
}
func (r *recorder) NetworkCreate(ctx context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error) {
	r.count("NetworkCreate")
	return r.api.NetworkCreate(ctx, name, opts)
}

func (r *recorder) NetworkList(ctx context.Context, opts network.ListOptions) ([]network.Summary, error) {
	r.count("NetworkList")
	return r.api.NetworkList(ctx, opts)
}

func (r *recorder) NetworkRemove(ctx context.Context, id string) error {
	r.count("NetworkRemove")
	return r.api.NetworkRemove(ctx, id)
}

func (r *recorder) Events(ctx context.Context, opts events.ListOptions) (<-chan events.Message, <-chan error) {
	r.count("Events")
	return r.api.Events(ctx, opts)
}

// testLogger writes the worker's log lines to the test log and to buf, so tests can search
// what was logged.
func testLogger(t *testing.T, buf *syncbuf.Buffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, buf), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func mustContain(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s = %q, want it to contain %q", what, got, want)
	}
}

func canary(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("CANARY-%s-%s", strings.NewReplacer("/", "-").Replace(t.Name()), hex.EncodeToString(b))
}
