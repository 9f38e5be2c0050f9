package leakscan

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Canaries are the secret values a test used, recognisable so a scan can find them.
type Canaries struct {
	mu   sync.Mutex
	tag  string
	run  string
	n    int
	vals map[string]string // value -> label
}

// New starts a registry whose values carry tag and a random run id.
func New(tag string) *Canaries {
	b := make([]byte, 4)
	rand.Read(b)
	return &Canaries{tag: tag, run: hex.EncodeToString(b), vals: map[string]string{}}
}

// RunID is the random id of this registry's run (in every canary it makes): a name unique to
// the run, for what two runs on one machine must not share.
func (c *Canaries) RunID() string { return c.run }

// Next makes a fresh value for label and remembers it.
func (c *Canaries) Next(label string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	v := fmt.Sprintf("CANARY-%s-%s-%d-%s", c.tag, label, c.n, c.run)
	c.vals[v] = fmt.Sprintf("%s #%d", label, c.n)
	return v
}

// Add remembers a value the test did not make (a credential the product generated), so that
// scans look for it too. Values shorter than 16 bytes are refused: they would match by chance.
func (c *Canaries) Add(label, value string) error {
	if len(value) < 16 {
		return fmt.Errorf("leakscan: %s: a canary must be at least 16 bytes", label)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	c.vals[value] = fmt.Sprintf("%s #%d", label, c.n)
	return nil
}

// All returns a copy of the values made so far, value -> label.
func (c *Canaries) All() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.vals))
	for k, v := range c.vals {
		out[k] = v
	}
	return out
}

// Describe names v for a test message without printing it.
func (c *Canaries) Describe(v string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for val, label := range c.vals {
		if strings.Contains(v, val) {
			return fmt.Sprintf("<%d bytes holding canary %s>", len(v), label)
		}
	}
	return fmt.Sprintf("<%d bytes, no known canary>", len(v))
}

// Find returns the sorted labels of the values of vals found in b.
func Find(b []byte, vals map[string]string) []string {
	var out []string
	for v, label := range vals {
		if bytes.Contains(b, []byte(v)) {
			out = append(out, label)
		}
	}
	sort.Strings(out)
	return out
}

// Leak is one value found where it must not be.
type Leak struct {
	Label string
	Where string // a file, "/proc/PID/environ (comm)", "docker inspect of NAME", ...
	PID   int    // the process, for a leak in /proc
}

func (l Leak) String() string { return l.Label + " in " + l.Where }

// Files reads every regular file under root but the trees in skip (exact paths) and returns
// the values found, the core files seen (a core dump holds the process's memory) and how many
// files it read.
func Files(root string, skip []string, vals map[string]string) (leaks []Leak, cores []string, files int, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		for _, sk := range skip {
			if p == sk {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if !d.Type().IsRegular() {
			return nil
		}
		if n := d.Name(); n == "core" || strings.HasPrefix(n, "core.") {
			cores = append(cores, p)
		}
		b, err := readSmall(p)
		if err != nil {
			return nil
		}
		files++
		for _, l := range Find(b, vals) {
			leaks = append(leaks, Leak{Label: l, Where: p})
		}
		return nil
	})
	return leaks, cores, files, err
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 256<<20))
}

// Procs reads every process's argv and environment; n is how many of those it read.
func Procs(vals map[string]string) (leaks []Leak, n int) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			p := filepath.Join("/proc", e.Name(), f)
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			n++
			for _, l := range Find(b, vals) {
				comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
				leaks = append(leaks, Leak{Label: l, Where: p + " (" + strings.TrimSpace(string(comm)) + ")", PID: pid})
			}
		}
	}
	return leaks, n
}

// Container reads `docker inspect` (as the engine sends it) and the log of container id.
// secretEnv names the container's environment variables that mention secrets: delivery is
// by file only, so any is a defect.
func Container(ctx context.Context, d *client.Client, id string, vals map[string]string) (leaks []Leak, secretEnv []string, err error) {
	insp, raw, err := d.ContainerInspectWithRaw(ctx, id, false)
	if err != nil {
		return nil, nil, fmt.Errorf("inspect %.12s: %w", id, err)
	}
	name := strings.TrimPrefix(insp.Name, "/")
	for _, l := range Find(raw, vals) {
		leaks = append(leaks, Leak{Label: l, Where: "docker inspect of " + name})
	}
	if rc, err := d.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
		b, _ := io.ReadAll(io.LimitReader(rc, 16<<20))
		rc.Close()
		for _, l := range Find(b, vals) {
			leaks = append(leaks, Leak{Label: l, Where: "the log of container " + name})
		}
	}
	if insp.Config != nil {
		for _, env := range insp.Config.Env {
			name, _, _ := strings.Cut(env, "=")
			// The agent's platform variables hold names users chose (a pattern may be
			// called "hello-secret"): only their names are checked. Their values are never
			// secrets, and the canary scan above still reads them.
			if protocol.IsPlatformVar(name) {
				env = name
			}
			if strings.Contains(strings.ToLower(env), "secret") {
				secretEnv = append(secretEnv, name)
			}
		}
	}
	return leaks, secretEnv, nil
}
