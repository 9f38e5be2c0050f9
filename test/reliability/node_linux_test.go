package reliability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
)

// node is the agent's node side in process, on the real kernel and engine: secretfs, the
// container worker and the agreement manager, each with a root, state dir and agent id of
// its own. The tests that need the wire use the binaries instead.
type node struct {
	t      testing.TB
	ctx    context.Context
	cli    *client.Client
	image  string
	root   string
	state  string
	agent  string
	size   int64
	logs   *syncbuf.Buffer
	fs     *secretfs.FS
	worker *container.Worker
	m      *agreement.Manager
}

var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

// readerImage is the e2e reader (FROM scratch) running as 1000:1000.
func readerImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	bin := binaries(t)
	imageOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		imageRef, imageErr = e2e.BuildImage(ctx, cli, bin.Reader, e2e.Image{Name: "anax-reliability-reader", User: "1000:1000"})
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageRef
}

// newNode opens a node whose state dir is state ("" for a temporary one) and whose stores
// are bounded to storeSize bytes (0 for the default).
func newNode(t testing.TB, state string, storeSize int64) *node {
	t.Helper()
	cli := dockertest.Client(t)
	b := make([]byte, 4)
	rand.Read(b)
	if state == "" {
		state = filepath.Join(t.TempDir(), "state")
	}
	n := &node{t: t, ctx: context.Background(), cli: cli, image: readerImage(t, cli), root: filepath.Join(t.TempDir(), "secrets"),
		state: state, agent: "reliability-" + hex.EncodeToString(b), size: storeSize, logs: &syncbuf.Buffer{}}
	t.Cleanup(n.cleanup)
	n.open()
	return n
}

func (n *node) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (n *node) open() {
	n.t.Helper()
	var err error
	if n.fs, err = secretfs.Open(secretfs.Options{Root: n.root, StoreSize: n.size, Logger: n.logger()}); err != nil {
		n.t.Fatalf("secretfs: %v", err)
	}
	if n.worker, err = container.NewFromEnv(container.Options{AllowHostUIDs: []int{1000}, AgentID: n.agent, StopTimeout: 2 * time.Second, Logger: n.logger(),
		ProtectedPaths: []string{n.root, n.state}}); err != nil {
		n.t.Fatalf("container worker: %v", err)
	}
	if n.m, err = agreement.Open(agreement.Options{StateDir: n.state, Stores: n.fs, Runner: n.worker, Logger: n.logger()}); err != nil {
		n.t.Fatalf("agreement manager: %v", err)
	}
	if _, err := n.m.Recover(n.ctx); err != nil {
		n.t.Fatalf("recover: %v", err)
	}
}

func (n *node) close() {
	if n.m == nil {
		return
	}
	if err := n.m.Shutdown(n.ctx); err != nil {
		n.t.Error(err)
	}
	n.fs.Close()
	n.worker.Close()
	n.m = nil
}

func (n *node) cleanup() {
	n.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e2e.RemoveContainersOf(ctx, n.cli, n.agent); err != nil {
		n.t.Errorf("remove containers: %v", err)
	}
	if fs, err := secretfs.Open(secretfs.Options{Root: n.root, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		stores, _ := fs.Stores()
		for _, s := range stores {
			fs.Wipe(s.ID)
		}
		fs.Close()
	}
	linux.UnmountAll(n.root)
	if strings.Contains(n.logs.String(), "CANARY-") {
		n.t.Errorf("a secret value reached the node's log")
	}
}

func (n *node) meta(t protocol.MessageType, id string, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: id, From: "agbot@reliability", To: "myorg/node1", Seq: seq, Time: time.Now().UTC()}
}

// service is one container, reader, declaring the given secrets.
func (n *node) service(names ...string) protocol.Service {
	decl := map[string]protocol.SecretDecl{}
	for _, name := range names {
		decl[name] = protocol.SecretDecl{Format: protocol.FormatValueOnly}
	}
	return protocol.Service{Org: "myorg", URL: "reader", Version: "1.0.0", Arch: arch.Node(),
		Deployment: protocol.Deployment{Services: map[string]protocol.Container{"reader": {Image: n.image, Secrets: decl}}}}
}

func (n *node) propose(id string, vals map[string]string) *protocol.ProposalReply {
	names := make([]string, 0, len(vals))
	sv := map[string]protocol.SecretValue{}
	for name, v := range vals {
		names = append(names, name)
		sv[name] = protocol.SecretValue{Key: "k", Value: v}
	}
	return n.m.Propose(n.ctx, &protocol.Proposal{Meta: n.meta(protocol.TypeProposal, id, 1), Service: n.service(names...), Secrets: sv})
}

func (n *node) update(id string, seq uint64, vals map[string]string) *protocol.UpdateReply {
	u := &protocol.Update{Meta: n.meta(protocol.TypeUpdate, id, seq), Secrets: map[string]protocol.ChangedSecret{}}
	for name, v := range vals {
		u.Secrets[name] = protocol.ChangedSecret{SecretValue: protocol.SecretValue{Key: "k", Value: v}, Reason: protocol.ReasonValueUpdated}
	}
	return n.m.Update(n.ctx, u)
}

// container returns the agreement's container id.
func (n *node) container(id string) string {
	n.t.Helper()
	info, err := n.m.Agreement(id)
	if err != nil || len(info.Containers) != 1 || info.Containers[0].ContainerID == "" {
		n.t.Fatalf("agreement %s: %v %+v", id, err, info.Containers)
	}
	return info.Containers[0].ContainerID
}

// reads returns what the container reads at /<name> for each name.
func (n *node) reads(id string, names ...string) map[string]string {
	n.t.Helper()
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = "/" + name
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	got, err := e2e.Cat(ctx, n.cli, n.container(id), paths...)
	if err != nil {
		n.t.Fatalf("read in the container: %v", err)
	}
	out := map[string]string{}
	for i, name := range names {
		out[name] = got[paths[i]]
	}
	return out
}

// wantReads checks the container reads exactly vals.
func (n *node) wantReads(id string, vals map[string]string, when string) {
	n.t.Helper()
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	got := n.reads(id, names...)
	for name, want := range vals {
		if got[name] != want {
			n.t.Errorf("%s: the container reads %s at /%s, want %s", when, describe(got[name]), name, describe(want))
		}
	}
}

// describe names a value in a failure without printing it.
func describe(v string) string {
	if i := strings.Index(v, "CANARY-"); i >= 0 {
		end := strings.IndexAny(v[i:], " \"\n")
		if end < 0 {
			end = min(len(v)-i, 48)
		}
		return fmt.Sprintf("<%d bytes, %s>", len(v), v[i:i+min(end, 48)])
	}
	return fmt.Sprintf("<%d bytes, no canary>", len(v))
}

// mountTmpfs mounts a tmpfs of the given size on a new directory, unmounted at cleanup.
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "fs")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d, err)
		}
	})
	return d
}

// fill writes a file until the file system holding dir is full, and returns a function
// that frees the space again.
func fill(t testing.TB, dir string) func() {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	// A page at a time cannot fill the last partial page: finish byte by byte.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("the file system of %s is not full: %d blocks free (%v)", dir, st.Bavail, err)
	}
	return func() {
		if err := os.Remove(p); err != nil {
			t.Error(err)
		}
	}
}

func canaryValue(tag string, size int) string {
	v := "CANARY-reliability-" + tag + "-"
	return v + strings.Repeat("x", max(0, size-len(v)))
}
