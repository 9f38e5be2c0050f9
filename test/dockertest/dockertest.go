// Package dockertest gives tests a real Docker engine and images built locally FROM scratch
// around small static Go programs (no registry is reachable where the tests run).
//
// Only tests import it. A missing engine skips the test outside CI and fails it with CI=true
// (see test/testenv).
package dockertest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// Client returns a client for the local engine with API version negotiation, or skips the test
// (fails it in CI) when no engine answers.
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		testenv.Skip(t, fmt.Sprintf("docker client: %v", err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		testenv.Skip(t, fmt.Sprintf("no Docker engine answers (run test/prepare.sh docker): %v", err))
	}
	cli.NegotiateAPIVersion(ctx) // before goroutines share it (see container.negotiate)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Image describes a test image: a static Go program at /prog as the entrypoint, extra files,
// and the USER the image runs as.
type Image struct {
	Name    string            // repository name, e.g. "anax-test-reader"; the tag is a content hash
	Program string            // Go source of package main; standard library only
	User    string            // Dockerfile USER, e.g. "1000:1000" or "appuser"; empty: root
	Files   map[string][]byte // extra files by path inside the image, e.g. "etc/passwd"
	Cmd     []string          // default arguments to /prog
}

var (
	buildMu sync.Mutex
	built   = map[string]bool{}
)

// BuildImage builds img (once per content, reusing an existing image with the same content hash)
// and returns its reference "name:hash".
func BuildImage(t testing.TB, cli *client.Client, img Image) string {
	t.Helper()
	ref := img.Name + ":" + img.hash()
	buildMu.Lock()
	defer buildMu.Unlock()
	if built[ref] {
		return ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		built[ref] = true
		return ref
	}
	spec := Spec{Prog: compile(t, img.Program), User: img.User, Files: img.Files, Cmd: img.Cmd,
		Labels: map[string]string{"org.edge-secrets.anax-agent.test": "true"}}
	if err := Build(ctx, cli, ref, spec); err != nil {
		t.Fatal(err)
	}
	built[ref] = true
	return ref
}

func (img Image) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%q\x00%s\x00", img.Name, img.Program, img.User, img.Cmd, runtime.GOARCH)
	for _, name := range sortedKeys(img.Files) {
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(img.Files[name]))
		h.Write(img.Files[name])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// compile builds program as a static linux binary for the engine's (this machine's) architecture.
func compile(t testing.TB, program string) []byte {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module testprog\n\ngo 1.26\n",
		"main.go": program,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "prog", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compile test program: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// readBuildStream drains the engine's JSON progress stream and returns the first error it reports.
func readBuildStream(r interface{ Read([]byte) (int, error) }) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var last string
	for sc.Scan() {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			continue
		}
		if msg.Error != "" {
			return fmt.Errorf("%s (after: %s)", msg.Error, strings.TrimSpace(last))
		}
		if msg.Stream != "" {
			last = msg.Stream
		}
	}
	return sc.Err()
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }
