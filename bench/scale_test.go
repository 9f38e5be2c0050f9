package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/reliability"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// -scale-services lists the numbers of services on the node BenchmarkNodeScale measures at,
// in increasing order (the node grows from one level to the next); 1,000 containers take a
// few minutes to start and a few GiB of memory (make bench: BENCH_SCALE_SERVICES).
var scaleServices = flag.String("scale-services", "1,10,100,1000", "BenchmarkNodeScale: numbers of services on the node, increasing")

// -scale-org is how many times, per level, BenchmarkNodeScale changes the org secret every
// service binds and waits until every container reads it.
var scaleOrg = flag.Int("scale-org", 3, "BenchmarkNodeScale: changes of the org secret every service binds, per level")

// -scale-profile, a directory: the agent serves its profiles (--debug-pprof) and the benchmark
// saves, per level, its heap and goroutines and a CPU profile of the org secret's changes.
var scaleProfile = flag.String("scale-profile", "", "BenchmarkNodeScale: save the agent's profiles per level into this directory")

// BenchmarkNodeScale: one node with 1, 10, 100 and 1,000 services (one container and one
// agreement each, the reader image), grown level by level under one agent. Every service
// binds its db_password to the org secret "db"; the first ("hot") also declares hot_password
// bound to "hot". At each level:
//
//   - services=N (b.N updates of "hot" through the agbot's API, one at a time): the agent's
//     apply time of each update and secretfs's swap of the hot store (both from the agent's
//     histograms, the sum's increase per update: exact per update), and the time from the
//     agbot write to the new value read inside the hot container (its reader polls every
//     200 µs);
//
//   - "db" changed -scale-org times: time until every container reads the new value (read
//     through /proc/<pid>/root of each container's init, the container's own mount
//     namespace, polled by the benchmark);
//
//   - the agent's RSS, then the agent stopped and started again: time from start until its
//     local API answers (it answers only after the start-up reconciliation checked every
//     agreement's store), and how many containers the engine says restarted meanwhile (must
//     be none).
//
//     go test -run '^$' -bench NodeScale -benchtime 20x -timeout 90m ./bench/ -args -scale-services 1,10,100
func BenchmarkNodeScale(b *testing.B) {
	levels, err := parseLevels(*scaleServices)
	if err != nil {
		b.Fatal(err)
	}
	env := newScaleEnv(b)
	for _, n := range levels {
		env.grow(b, n)
		row := ScaleResult{Services: n}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			row.Apply, row.Swap, row.Read = env.stream(b)
			b.ReportMetric(row.Read.Median, "ms-read-median")
			b.ReportMetric(row.Apply.Median, "ms-apply-median")
		})
		if b.Failed() {
			return
		}
		stopCPU := env.profileCPU(b, fmt.Sprintf("cpu-org-%d.pprof", n))
		row.OrgAll = env.orgFanout(b, *scaleOrg)
		stopCPU()
		row.OrgServices = n
		row.RSSMiB = env.rssMiB(b)
		row.Note = env.memNote()
		env.profile(b, "heap", fmt.Sprintf("heap-%d.pprof", n))
		env.profile(b, "goroutine", fmt.Sprintf("goroutine-%d.pprof", n))
		recordScale(b, row) // kept should the restart fail
		row.RestartReadyMS, row.Restarted = env.restart(b)
		b.Logf("services=%d: read median %.2f ms, apply median %.2f ms, org secret to all %.0f ms, RSS %.1f MiB, restart ready %.0f ms, %d containers restarted",
			n, row.Read.Median, row.Apply.Median, row.OrgAll.Median, row.RSSMiB, row.RestartReadyMS, row.Restarted)
		if row.Restarted > 0 {
			b.Errorf("services=%d: %d containers restarted while the agent restarted", n, row.Restarted)
		}
		recordScale(b, row)
	}
}

func recordScale(b *testing.B, row ScaleResult) {
	record(b, func(r *Results) {
		r.Scale = slices.DeleteFunc(r.Scale, func(s ScaleResult) bool { return s.Services == row.Services })
		r.Scale = append(r.Scale, row)
		slices.SortFunc(r.Scale, func(a, b ScaleResult) int { return a.Services - b.Services })
	})
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-scale-services %q: want increasing numbers of at least 1", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// scaleEnv is the node that grows: the agbot, the agent and the services started so far.
type scaleEnv struct {
	p        *e2eParts
	s        *reliability.Scenario
	a        *e2e.Agent
	services int
	hot      string         // the hot service's container
	pids     map[string]int // container id -> init PID, for the current level
	run      int
}

// newScaleEnv runs the node on a private dockerd (test/dockertest.Daemon): a thousand
// containers are the engine's heaviest load, and the engine other work on the machine shares
// must not carry it (nor its hazards: a shared dockerd 20.10 deadlocked in libnetwork during
// such a run).
func newScaleEnv(b *testing.B) *scaleEnv {
	b.Helper()
	testenv.RequireRoot(b)
	d := dockertest.StartDaemon(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &e2eParts{dir: b.TempDir(), cli: d.Client}
	var err error
	if p.bin, err = reliability.BuildBinaries(ctx, *binDir, filepath.Join(p.dir, "bin")); err != nil {
		b.Fatal(err)
	}
	if p.image, err = e2e.BuildImage(ctx, p.cli, p.bin.Reader, e2e.Image{Name: "anax-bench-reader-scale", User: "1000:1000"}); err != nil {
		b.Fatal(err)
	}
	s := p.scenario(b, "nodescale", nil)
	env := &scaleEnv{p: p, s: s}
	if err := s.CreateNode("node1", "tok1"); err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"db", "hot"} {
		if err := env.put(name, canary("scale-"+name, 0)); err != nil {
			b.Fatal(err)
		}
	}
	a, err := s.Agent("node1", "", func(a *e2e.Agent) {
		a.Config.DebugPprof = *scaleProfile != ""
		a.Env = append(a.Env, d.Env())
	})
	if err != nil {
		b.Fatal(err)
	}
	env.a = a
	if err := s.Register(a, "node1", "tok1"); err != nil {
		b.Fatal(err)
	}
	return env
}

// put writes an org secret through the agbot's API (hzn's process start would dominate the
// small figures; EndToEnd measures hzn).
func (e *scaleEnv) put(name, value string) error {
	code, err := e.s.Agbot.Do(reliability.Org+"/"+e.s.Admin, "PUT", "/org/"+reliability.Org+"/secrets/"+name,
		map[string]string{"key": "k", "value": value}, nil)
	if err == nil && code != 201 {
		err = fmt.Errorf("PUT secret %s: %d", name, code)
	}
	return err
}

// grow publishes services until n run, and waits until each has an active agreement with a
// running container; it then reads every container's init PID.
func (e *scaleEnv) grow(b *testing.B, n int) {
	b.Helper()
	start := time.Now()
	for ; e.services < n; e.services++ {
		i := e.services
		secrets := map[string]string{"db_password": "db"}
		if i == 0 {
			secrets["hot_password"] = "hot"
		}
		if err := publishBound(e.s, fmt.Sprintf("scale%04d", i), secrets); err != nil {
			b.Fatal(err)
		}
	}
	var ids []string
	err := e2e.Eventually(e.s.Ctx, 60*time.Minute, time.Second, func() error {
		list, err := e.a.Agreements()
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, in := range list {
			if in.Phase == agreement.PhaseActive && len(in.Containers) == 1 && in.Containers[0].ContainerID != "" {
				ids = append(ids, in.Containers[0].ContainerID)
				if in.Service.URL == "scale0000" {
					e.hot = in.Containers[0].ContainerID
				}
			}
		}
		if len(ids) < n {
			return fmt.Errorf("%d of %d services running", len(ids), n)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d services running (%v to grow)", n, time.Since(start).Round(time.Second))
	e.pids = map[string]int{}
	for _, id := range ids {
		ci, err := e.p.cli.ContainerInspect(e.s.Ctx, id)
		if err != nil || ci.State == nil || ci.State.Pid == 0 {
			b.Fatalf("container %s: no init PID (%v)", id, err)
		}
		e.pids[id] = ci.State.Pid
	}
}

// publishBound publishes a one-container service of the reader declaring secrets and a policy
// binding each (service secret -> manager secret), through the API.
func publishBound(s *reliability.Scenario, url string, secrets map[string]string) error {
	decl, binds := map[string]any{}, []any{}
	for name, mgr := range secrets {
		decl[name] = map[string]any{}
		binds = append(binds, map[string]string{name: mgr})
	}
	svc := map[string]any{"org": reliability.Org, "url": url, "version": "1.0.0", "arch": archOf(),
		"deployment": map[string]any{"services": map[string]any{"main": map[string]any{"image": s.Image, "secrets": decl}}}}
	auth := reliability.Org + "/" + s.Admin
	if code, err := s.Agbot.Do(auth, "POST", "/org/"+reliability.Org+"/services", svc, nil); err != nil || code != 201 {
		return fmt.Errorf("publish %s: %d %v", url, code, err)
	}
	pol := map[string]any{
		"service":     map[string]any{"name": url, "org": reliability.Org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"zone == reliability"},
		"secretBinding": []any{map[string]any{"serviceOrgid": reliability.Org, "serviceUrl": url, "serviceArch": "*",
			"serviceVersionRange": "[0.0.0,INFINITY)", "secrets": binds}},
	}
	if code, err := s.Agbot.Do(auth, "PUT", "/org/"+reliability.Org+"/business/policies/"+url, pol, nil); err != nil || code != 201 {
		return fmt.Errorf("policy %s: %d %v", url, code, err)
	}
	return nil
}

// stream changes "hot" b.N times, one update at a time, and returns the agent's apply time
// (ms), the hot store's swap (µs) and the write → read latency in the container (ms).
func (e *scaleEnv) stream(b *testing.B) (apply, swap, read Dist) {
	var applies, swaps, reads []time.Duration
	prev, err := e.agentMetrics()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e.run++
		v := canary("scale-hot", e.run)
		wait, err := e2e.Watch(e.s.Ctx, e.p.cli, e.hot, "/hot_password", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := e.put("hot", v); err != nil {
			b.Fatal(err)
		}
		ch, err := wait()
		b.StopTimer()
		if err != nil {
			b.Fatalf("update %d: %v", i, err)
		}
		if ch.Content != reliability.File("k", v, "") || ch.Bad > 0 {
			b.Fatalf("update %d: the container read %d bytes that are not the new value (%d bad reads)", i, len(ch.Content), ch.Bad)
		}
		reads = append(reads, time.Unix(0, ch.SeenAt).Sub(t0))
		next, err := e.waitApplied(prev)
		if err != nil {
			b.Fatalf("update %d: %v", i, err)
		}
		applies = append(applies, next.delta(prev, "anax_agent_update_apply_seconds"))
		swaps = append(swaps, next.delta(prev, "anax_agent_store_swap_seconds"))
		prev = next
		b.StartTimer()
	}
	b.StopTimer()
	return NewDist(applies, "ms"), NewDist(swaps, "us"), NewDist(reads, "ms")
}

// promSample is one scrape of the agent's metrics: name (with labels) -> value.
type promSample map[string]float64

func (e *scaleEnv) agentMetrics() (promSample, error) {
	resp, err := http.Get("http://" + e.a.Config.MetricsListen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := promSample{}
	for _, line := range strings.Split(string(raw), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out[name] = f
			}
		}
	}
	return out, nil
}

// waitApplied waits until the agent counted one more applied update than prev (the reply and
// the metric come after the swap the container saw) and returns the scrape.
func (e *scaleEnv) waitApplied(prev promSample) (promSample, error) {
	want := prev["anax_agent_update_apply_seconds_count"] + 1
	var next promSample
	err := e2e.Eventually(e.s.Ctx, 30*time.Second, time.Millisecond, func() error {
		var err error
		if next, err = e.agentMetrics(); err != nil {
			return err
		}
		if got := next["anax_agent_update_apply_seconds_count"]; got != want {
			return fmt.Errorf("the agent counted %v applied updates, want %v", got, want)
		}
		if next["anax_agent_store_swap_seconds_count"] != prev["anax_agent_store_swap_seconds_count"]+1 {
			return fmt.Errorf("the agent counted %v store swaps after %v", next["anax_agent_store_swap_seconds_count"], prev["anax_agent_store_swap_seconds_count"])
		}
		return nil
	})
	return next, err
}

// delta is the increase of histogram name's sum from prev to s, as a duration.
func (s promSample) delta(prev promSample, name string) time.Duration {
	return time.Duration((s[name+"_sum"] - prev[name+"_sum"]) * float64(time.Second))
}

// orgFanout changes "db", which every service binds, runs times, and returns the time from
// the write until the last container reads the new value (ms).
func (e *scaleEnv) orgFanout(b *testing.B, runs int) Dist {
	b.Helper()
	var all []time.Duration
	for range runs {
		e.run++
		v := canary("scale-db", e.run)
		want := reliability.File("k", v, "")
		t0 := time.Now()
		if err := e.put("db", v); err != nil {
			b.Fatal(err)
		}
		last, err := e.allRead("/db_password", want, t0, 5*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, last)
	}
	return NewDist(all, "ms")
}

// allRead polls file in every container of the level, through /proc/<pid>/root (the
// container's own root and mount namespace), until each read want, and returns the time from
// t0 until the last one did.
func (e *scaleEnv) allRead(file, want string, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	pending := map[string]int{}
	for id, pid := range e.pids {
		pending[id] = pid
	}
	deadline := t0.Add(timeout)
	var lastSeen time.Time
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d containers did not read the new %s within %v", len(pending), len(e.pids), file, timeout)
		}
		for id, pid := range pending {
			got, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", pid, file))
			if err == nil && string(got) == want {
				lastSeen = time.Now()
				delete(pending, id)
			}
		}
		time.Sleep(time.Millisecond)
	}
	return lastSeen.Sub(t0), nil
}

func (e *scaleEnv) rssMiB(b *testing.B) float64 {
	b.Helper()
	time.Sleep(3 * time.Second) // let the last passes and the GC settle
	kib, err := reliability.RSS(e.a.Proc().Pid())
	if err != nil {
		b.Fatal(err)
	}
	return round3(float64(kib) / 1024)
}

// memNote says where the agent's memory is, from the Go runtime's metrics.
func (e *scaleEnv) memNote() string {
	m, err := e.agentMetrics()
	if err != nil {
		return ""
	}
	mib := func(name string) float64 { return m[name] / (1 << 20) }
	return fmt.Sprintf("Go heap in use %.1f MiB, stacks %.1f MiB, runtime total %.1f MiB, %.0f goroutines",
		mib("go_memstats_heap_inuse_bytes"), mib("go_memstats_stack_inuse_bytes"), mib("go_memstats_sys_bytes"), m["go_goroutines"])
}

// restart stops the agent (SIGTERM), starts it again and returns the time from the start
// until its local API answered (ms), and how many of the level's containers the engine says
// were restarted or stopped meanwhile.
func (e *scaleEnv) restart(b *testing.B) (float64, int) {
	b.Helper()
	before, err := e.containerStarts()
	if err != nil {
		b.Fatal(err)
	}
	if err := e.a.Stop(); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	e.a.StartTimeout = 10 * time.Minute
	if err := e.a.Start(e.s.Ctx); err != nil {
		b.Fatal(err)
	}
	ready := time.Since(t0)
	after, err := e.containerStarts()
	if err != nil {
		b.Fatal(err)
	}
	restarted := 0
	for id, st := range before {
		if after[id] != st {
			restarted++
		}
	}
	return round3(float64(ready) / float64(time.Millisecond)), restarted
}

// containerStarts inspects every container of the level: id -> start time, restart count and
// state, eight at a time.
func (e *scaleEnv) containerStarts() (map[string]string, error) {
	ctx, cancel := context.WithTimeout(e.s.Ctx, 10*time.Minute)
	defer cancel()
	var mu sync.Mutex
	out := map[string]string{}
	var firstErr error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for id := range e.pids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ci, err := e.p.cli.ContainerInspect(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			out[id] = fmt.Sprintf("%s %d %s %d", ci.State.StartedAt, ci.RestartCount, ci.State.Status, ci.State.Pid)
		}()
	}
	wg.Wait()
	return out, firstErr
}

// profile saves the agent's profile kind (heap, goroutine, ...) as file under -scale-profile.
func (e *scaleEnv) profile(b *testing.B, kind, file string) {
	if *scaleProfile == "" {
		return
	}
	resp, err := http.Get("http://" + e.a.Config.MetricsListen + "/debug/pprof/" + kind)
	if err != nil {
		b.Errorf("profile %s: %v", kind, err)
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(*scaleProfile, file), raw, 0o644)
	}
	if err != nil {
		b.Errorf("profile %s: %v", kind, err)
	}
}

// profileCPU records the agent's CPU profile for the next 15 s; the returned function waits
// for it.
func (e *scaleEnv) profileCPU(b *testing.B, file string) func() {
	if *scaleProfile == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get("http://" + e.a.Config.MetricsListen + "/debug/pprof/profile?seconds=15")
		if err != nil {
			b.Errorf("cpu profile: %v", err)
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if err := os.WriteFile(filepath.Join(*scaleProfile, file), raw, 0o644); err != nil {
			b.Errorf("cpu profile: %v", err)
		}
	}()
	time.Sleep(100 * time.Millisecond)
	return func() { <-done }
}
