package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/edge-secrets/anax-agent/test/e2e"
)

// canaries are the secret values a scenario used, recognisable so a scan can find them.
type canaries struct {
	mu   sync.Mutex
	tag  string
	run  string
	n    int
	vals map[string]string // value -> label
}

func newCanaries(tag string) *canaries {
	b := make([]byte, 4)
	rand.Read(b)
	return &canaries{tag: tag, run: hex.EncodeToString(b), vals: map[string]string{}}
}

func (c *canaries) next(label string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	v := fmt.Sprintf("CANARY-rel-%s-%s-%d-%s", c.tag, label, c.n, c.run)
	c.vals[v] = fmt.Sprintf("%s #%d", label, c.n)
	return v
}

func (c *canaries) all() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.vals))
	for k, v := range c.vals {
		out[k] = v
	}
	return out
}

func found(b []byte, vals map[string]string) []string {
	var out []string
	for v, label := range vals {
		if bytes.Contains(b, []byte(v)) {
			out = append(out, label)
		}
	}
	return out
}

// scanLeaks looks for the scenario's secret values everywhere they must never be: every file
// under the scenario's directory (logs, agent state dirs and configs, the agbot's data dir)
// except the agents' secret stores (tmpfs, where they belong), core files, `docker inspect`
// and the logs of every container the agents ran, and the argv and environment of every
// process. A planted value in a file and in a process environment proves the scan finds what
// it looks for.
func scanLeaks(t *testing.T, s *Scenario, c *canaries) {
	t.Helper()
	vals := c.all()
	if len(vals) == 0 {
		t.Fatal("leak scan: the scenario used no canary")
	}
	planted := "CANARY-rel-planted-" + c.run
	vals[planted] = "planted"
	probeFile := filepath.Join(s.Dir, "leak-probe.log")
	if err := os.WriteFile(probeFile, []byte("v="+planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probeFile)
	probe := exec.Command("sleep", "60")
	probe.Env = []string{"PLANTED=" + planted}
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { probe.Process.Kill(); probe.Wait() }()

	var skip []string
	for _, a := range s.Agents() {
		skip = append(skip, a.Config.SecretsRoot)
	}
	skip = append(skip, s.Bin.Dir)
	var leaks []string
	sawFile, sawProc := false, false
	files, cores := 0, 0
	err := filepath.WalkDir(s.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		for _, sk := range skip {
			if p == sk || strings.HasPrefix(p, sk+"/") {
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
			cores++
			leaks = append(leaks, "a core file "+p)
		}
		b, err := readSmall(p)
		if err != nil {
			return nil
		}
		files++
		for _, l := range found(b, vals) {
			if l == "planted" {
				sawFile = true
				continue
			}
			leaks = append(leaks, fmt.Sprintf("%s in %s", l, p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Containers: inspect and logs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctrs := 0
	for _, a := range s.Agents() {
		list, err := e2e.ContainersOf(ctx, s.Docker, a.ID())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			ctrs++
			insp, err := s.Docker.ContainerInspect(ctx, c.ID)
			if err != nil {
				continue
			}
			raw, _ := json.Marshal(insp)
			for _, l := range found(raw, vals) {
				leaks = append(leaks, fmt.Sprintf("%s in docker inspect of %s", l, c.Names))
			}
			if rc, err := s.Docker.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true}); err == nil {
				logb, _ := io.ReadAll(io.LimitReader(rc, 16<<20))
				rc.Close()
				for _, l := range found(logb, vals) {
					leaks = append(leaks, fmt.Sprintf("%s in the log of container %s", l, c.Names))
				}
			}
		}
	}
	// Processes: argv and environment.
	procs := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), f))
			if err != nil {
				continue
			}
			procs++
			for _, l := range found(b, vals) {
				if l == "planted" {
					sawProc = sawProc || e.Name() == fmt.Sprint(probe.Process.Pid)
					continue
				}
				leaks = append(leaks, fmt.Sprintf("%s in /proc/%s/%s", l, e.Name(), f))
			}
		}
	}
	for _, l := range leaks {
		t.Errorf("leak: %s", l)
	}
	if !sawFile || !sawProc {
		t.Errorf("the leak scan missed the planted value (file %v, process %v): it can not fail", sawFile, sawProc)
	}
	if files < 5 || procs < 10 {
		t.Errorf("the leak scan read only %d files and %d process entries", files, procs)
	}
	t.Logf("leak scan: %d values, %d files, %d containers, %d process entries, %d core files", len(vals)-1, files, ctrs, procs, cores)
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 256<<20))
}
