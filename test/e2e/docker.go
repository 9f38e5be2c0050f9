package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/test/dockertest"
)

// LabelAgent is the container label the agent's worker writes with its agent id (package
// container, labels.go).
const LabelAgent = "org.edge-secrets.anax-agent.agent"

// LabelImage marks images this harness built, so a clean-up finds them.
const LabelImage = "org.edge-secrets.anax-agent.e2e"

// Docker connects to the local engine.
func Docker(ctx context.Context) (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("no Docker engine answers (run test/prepare.sh docker): %w", err)
	}
	return cli, nil
}

// Image is a FROM-scratch image around the reader program.
type Image struct {
	Name  string            // repository; the tag is a content hash
	User  string            // USER line; "" runs as root
	Files map[string][]byte // extra files by path, e.g. "etc/passwd"
	Exec  map[string]bool   // paths of Files that are executable (mode 0755)
}

// BuildImage builds img around the static reader binary (once per content) and returns its
// reference.
func BuildImage(ctx context.Context, cli *client.Client, reader string, img Image) (string, error) {
	prog, err := os.ReadFile(reader)
	if err != nil {
		return "", err
	}
	spec := dockertest.Spec{Prog: prog, User: img.User, Files: img.Files, Exec: img.Exec,
		Labels: map[string]string{LabelImage: "true"}}
	ref := spec.Ref(img.Name)
	return ref, dockertest.Build(ctx, cli, ref, spec)
}

// RemoveImage removes an image this harness built.
func RemoveImage(ctx context.Context, cli *client.Client, ref string) error {
	_, err := cli.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true})
	return err
}

// Exec runs cmd in a container (as the container's user) and returns its stdout; a non-zero
// exit is an error holding stderr.
func Exec(ctx context.Context, cli *client.Client, id string, cmd ...string) ([]byte, error) {
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, err
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, err
	}
	defer att.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, att.Reader); err != nil {
		return nil, err
	}
	insp, err := cli.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return nil, err
	}
	if insp.ExitCode != 0 {
		return out.Bytes(), fmt.Errorf("exec %s: exit %d: %s", strings.Join(cmd, " "), insp.ExitCode, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Cat reads files inside a container through the reader.
func Cat(ctx context.Context, cli *client.Client, id string, files ...string) (map[string]string, error) {
	out, err := Exec(ctx, cli, id, append([]string{"/prog", "cat"}, files...)...)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	return m, json.Unmarshal(out, &m)
}

// FileStat is what the reader says of a path inside a container.
type FileStat struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	Mode string `json:"mode"`
	Dir  bool   `json:"dir"`
}

// Stat stats paths inside a container.
func Stat(ctx context.Context, cli *client.Client, id string, paths ...string) (map[string]FileStat, error) {
	out, err := Exec(ctx, cli, id, append([]string{"/prog", "stat"}, paths...)...)
	if err != nil {
		return nil, err
	}
	var m map[string]FileStat
	return m, json.Unmarshal(out, &m)
}

// Change is what a watch saw.
type Change struct {
	Content string `json:"content"`
	SeenAt  int64  `json:"seenAt"` // unix ns, the machine's clock (the container shares it)
	Reads   int    `json:"reads"`
	Bad     int    `json:"bad"` // empty or failed reads while watching
}

// Watch starts the reader watching file inside a container and returns once it reads the
// current content; wait returns the change it sees next.
func Watch(ctx context.Context, cli *client.Client, id, file string, timeout time.Duration) (wait func() (Change, error), err error) {
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		Cmd: []string{"/prog", "watch", file, timeout.String()}, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return nil, err
	}
	att, err := cli.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	go func() {
		_, err := stdcopy.StdCopy(pw, &errb, att.Reader)
		pw.CloseWithError(err)
	}()
	rd := bufio.NewReader(pr)
	line, err := rd.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		att.Close()
		return nil, fmt.Errorf("watch %s: %q %v %s", file, line, err, strings.TrimSpace(errb.String()))
	}
	return func() (Change, error) {
		defer att.Close()
		rest, err := io.ReadAll(rd)
		if err != nil && !errors.Is(err, io.EOF) {
			return Change{}, err
		}
		var c Change
		if err := json.Unmarshal(rest, &c); err != nil {
			return Change{}, fmt.Errorf("watch %s: %s", file, strings.TrimSpace(errb.String()))
		}
		return c, nil
	}, nil
}

// Hammer is what a continuous read saw.
type Hammer struct {
	Reads      int                 `json:"reads"`
	Errors     int                 `json:"errors"`
	Empty      int                 `json:"empty"`
	FirstError string              `json:"firstError"`
	Contents   map[string][]string `json:"contents"`
}

// StartHammer reads files continuously inside a container for d; wait returns the counts.
func StartHammer(ctx context.Context, cli *client.Client, id string, d time.Duration, files ...string) func() (Hammer, error) {
	type res struct {
		h   Hammer
		err error
	}
	ch := make(chan res, 1)
	go func() {
		out, err := Exec(ctx, cli, id, append([]string{"/prog", "hammer", d.String()}, files...)...)
		var h Hammer
		if err == nil {
			err = json.Unmarshal(out, &h)
		}
		ch <- res{h, err}
	}()
	return func() (Hammer, error) { r := <-ch; return r.h, r.err }
}

// ContainersOf lists the containers (any state) labelled with an agent id.
func ContainersOf(ctx context.Context, cli *client.Client, agentID string) ([]container.Summary, error) {
	return cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelAgent+"="+agentID))})
}

// RemoveContainersOf force-removes every container labelled with an agent id.
func RemoveContainersOf(ctx context.Context, cli *client.Client, agentID string) error {
	cs, err := ContainersOf(ctx, cli, agentID)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); err != nil {
			errs = append(errs, err)
		}
	}
	// The agreements' networks (container.NetworkName), once their containers are gone.
	nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelAgent+"="+agentID))})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range nets {
		if err := cli.NetworkRemove(ctx, n.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MountsUnder lists the mount points at or below dir in this mount namespace, deepest last.
func MountsUnder(dir string) ([]string, error) {
	ms, err := linux.SelfMountinfo()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	return out, nil
}

// UnmountAll detaches every mount at or below dir (what a reboot does to a tmpfs).
func UnmountAll(dir string) error {
	_, err := linux.UnmountAll(dir)
	return err
}

// HostToolsImage builds an image of programs from this machine's own packages (bash, curl, jq,
// ...) with the shared libraries ldd names, since no registry is reachable: bash is the
// entrypoint (/prog), the other tools keep their paths. files are added as they are; execs
// names which of them are executable (scripts).
func HostToolsImage(ctx context.Context, cli *client.Client, name, user string, tools []string, files map[string][]byte, execs ...string) (string, error) {
	img := Image{Name: name, User: user, Files: map[string][]byte{}, Exec: map[string]bool{}}
	for p, b := range files {
		img.Files[p] = b
	}
	for _, p := range execs {
		img.Exec[p] = true
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		return "", fmt.Errorf("host tools image: %w", err)
	}
	for _, tool := range append([]string{"bash"}, tools...) {
		path, err := exec.LookPath(tool)
		if err != nil {
			return "", fmt.Errorf("host tools image: %w (test/prepare.sh installs it)", err)
		}
		paths, err := withLibraries(ctx, path)
		if err != nil {
			return "", err
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			rel := strings.TrimPrefix(p, "/")
			img.Files[rel] = b
			img.Exec[rel] = true
		}
	}
	return BuildImage(ctx, cli, bash, img)
}

// withLibraries returns path and the shared libraries and loader it needs, as ldd lists them.
func withLibraries(ctx context.Context, path string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	paths := []string{path}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0])
		}
	}
	return paths, nil
}
