package leakscan

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
)

// Scan says where Check looks.
type Scan struct {
	Root       string         // every file under it is read...
	Skip       []string       // ...but these trees (secrets tmpfs roots, built binaries)
	Docker     *client.Client // with Containers: their `docker inspect` and logs
	Containers []string       // container ids
	MinFiles   int            // fewer files read means the run left nothing to scan
}

// minProcs is the fewest /proc argv+environ entries a working scan reads on any host.
const minProcs = 10

// Check fails t for any value of c found under sc.Root (but sc.Skip), in sc.Containers or in
// any process's argv or environment, and for any core file. It first plants a value of its
// own in a file under sc.Root and in a process's environment, and fails unless it finds both:
// a scan that can not fail proves nothing.
func Check(t testing.TB, c *Canaries, sc Scan) {
	t.Helper()
	vals := c.All()
	if len(vals) == 0 {
		t.Fatal("leak scan: no canary was used: the scenario did not run")
	}
	// 1. Plant: a value no scenario used, in a file and in a live process's environment.
	planted := "CANARY-" + c.tag + "-planted-" + c.run
	const plantedLabel = "planted (self-check)"
	vals[planted] = plantedLabel
	probeFile := filepath.Join(sc.Root, "leakscan-planted.log")
	if err := os.WriteFile(probeFile, []byte("msg=x v="+planted+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(probeFile)
	probe := exec.Command("sleep", "60")
	probe.Env = []string{"PLANTED=" + planted}
	if err := probe.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { probe.Process.Kill(); probe.Wait() }()

	// 2. Scan files, containers, processes.
	var leaks []Leak
	sawFile, sawProc := false, false
	found, cores, files, err := Files(sc.Root, sc.Skip, vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range found {
		if l.Label == plantedLabel {
			sawFile = true
			continue
		}
		leaks = append(leaks, l)
	}
	for _, p := range cores {
		t.Errorf("leak: a core file %s", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leaks = append(leaks, containers(t, ctx, sc.Docker, sc.Containers, vals)...)
	found, procs := Procs(vals)
	for _, l := range found {
		if l.Label == plantedLabel {
			sawProc = sawProc || l.PID == probe.Process.Pid
			continue
		}
		leaks = append(leaks, l)
	}

	// 3. Report.
	for _, l := range leaks {
		t.Errorf("leak: secret value %s", l)
	}
	if !sawFile || !sawProc {
		t.Errorf("the leak scan missed the planted value (in a file: %v, in a process environment: %v): it can not fail", sawFile, sawProc)
	}
	if files < sc.MinFiles {
		t.Errorf("the leak scan read only %d files (want %d or more): the run left no logs or state", files, sc.MinFiles)
	}
	if procs < minProcs {
		t.Errorf("the leak scan read only %d process argv/environ entries", procs)
	}
	t.Logf("leak scan: %d values, %d files, %d containers, %d process argv/environ, %d core files", len(vals)-1, files, len(sc.Containers), procs, len(cores))
}

// CheckProcs fails t for any value of c in a process's argv or environment now.
func CheckProcs(t testing.TB, c *Canaries) {
	t.Helper()
	found, n := Procs(c.All())
	for _, l := range found {
		t.Errorf("leak: secret value %s", l)
	}
	if n < minProcs {
		t.Errorf("process scan read only %d files", n)
	}
}

// CheckContainers fails t for any value of c in `docker inspect` or the log of the
// containers ids, or any of their environment variables that mentions secrets.
func CheckContainers(t testing.TB, ctx context.Context, d *client.Client, c *Canaries, ids ...string) {
	t.Helper()
	for _, l := range containers(t, ctx, d, ids, c.All()) {
		t.Errorf("leak: secret value %s", l)
	}
}

func containers(t testing.TB, ctx context.Context, d *client.Client, ids []string, vals map[string]string) []Leak {
	t.Helper()
	var leaks []Leak
	for _, id := range ids {
		found, env, err := Container(ctx, d, id, vals)
		if err != nil {
			if !cerrdefs.IsNotFound(err) { // gone since it was listed: nothing left to leak
				t.Errorf("leak scan: %v", err)
			}
			continue
		}
		leaks = append(leaks, found...)
		for _, e := range env {
			t.Errorf("container %.12s has an environment variable about secrets: %s", id, e)
		}
	}
	return leaks
}
