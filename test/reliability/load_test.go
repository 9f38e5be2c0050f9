package reliability

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// publishAndBind publishes a one-container service declaring db_password and a policy that
// binds it to the manager secret mgr, through the API (hzn would be hundreds of processes).
func (s *Scenario) publishAndBind(url, mgr string) error {
	svc := map[string]any{"org": Org, "url": url, "version": "1.0.0", "arch": arch.Node(),
		"deployment": map[string]any{"services": map[string]any{"main": map[string]any{"image": s.Image,
			"secrets": map[string]any{"db_password": map[string]any{}}}}}}
	auth := Org + "/" + s.Admin
	if code, err := s.Agbot.Do(auth, "POST", "/org/"+Org+"/services", svc, nil); err != nil || code != 201 {
		return fmt.Errorf("publish %s: %d %v", url, code, err)
	}
	pol := map[string]any{
		"service":     map[string]any{"name": url, "org": Org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"zone == reliability"},
		"secretBinding": []any{map[string]any{"serviceOrgid": Org, "serviceUrl": url, "serviceArch": "*",
			"serviceVersionRange": "[0.0.0,INFINITY)", "secrets": []any{map[string]string{"db_password": mgr}}}},
	}
	if code, err := s.Agbot.Do(auth, "PUT", "/org/"+Org+"/business/policies/"+url, pol, nil); err != nil || code != 201 {
		return fmt.Errorf("policy %s: %d %v", url, code, err)
	}
	return nil
}

// usage is what must not grow on a node under a steady load.
type usage struct {
	rssKiB     int64
	goroutines float64
	fds        int
	mounts     string
}

func measure(t *testing.T, a *e2e.Agent) usage {
	t.Helper()
	var u usage
	var err error
	pid := a.Proc().Pid()
	if u.rssKiB, err = RSS(pid); err != nil {
		t.Fatal(err)
	}
	if u.goroutines, err = a.Metric("go_goroutines"); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	u.fds = len(fds)
	ms, err := e2e.MountsUnder(a.Config.SecretsRoot)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		ms[i] = strings.TrimPrefix(ms[i], a.Config.SecretsRoot)
	}
	u.mounts = strings.Join(ms, " ")
	return u
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %v goroutines, %d open files, %d mounts", float64(u.rssKiB)/1024, u.goroutines, u.fds, len(strings.Fields(u.mounts)))
}

// TestLoad: many services on one node (100 at 20 updates a second; in make soak 1,000 at 100
// a second, on a private dockerd so the shared engine never carries a thousand containers),
// then a stream of updates to one of them for 20 s, read continuously inside its container.
// The stream keeps the rate asked whatever one write's latency (a few concurrent writers fed
// by a ticker); in make soak it must reach 95% of it (issue 16's "100 updates/s sustained";
// make test only logs the rate: speed is not asserted there); every read is whole, the node
// converges to a last value written after the stream, every agreement stays active, and the
// agent's memory, goroutines, open files and mounts do not grow.
func TestLoad(t *testing.T) {
	t.Parallel() // mostly waits on containers: runs beside TestFaultLink
	services, rate, dur := 100, 20, 20*time.Second
	if *soak {
		services, rate = 1000, 100
		s, d := privateScenario(t, "load", dur+40*time.Minute)
		testLoad(t, s, onDaemon(d), services, rate, dur)
		return
	}
	testLoad(t, newScenarioT(t, "load", dur+30*time.Minute), nil, services, rate, dur)
}

// minRateShare is the share of the asked update rate a stream must reach.
const minRateShare = 0.95

// testLoad runs the load on s; configure adjusts the agent (nil: nothing).
func testLoad(t *testing.T, s *Scenario, configure func(*e2e.Agent), services, rate int, dur time.Duration) {
	c := leakscan.New("rel-load")
	agbotPprof := agbotProfiling(t, s)
	a, hot := startLoadNode(t, s, c, configure, services)
	hotWarm := c.Next("hot")
	if err := s.put("hot", "dbkey", hotWarm); err != nil {
		t.Fatal(err)
	}
	if err := s.waitRead(hot, "/db_password", File("dbkey", hotWarm, ""), time.Minute); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	time.Sleep(5 * time.Second)
	before := measure(t, a)
	t.Logf("before the stream: %s", before)
	histBefore, err := scrapeHistograms(a, applyHist, swapHist)
	if err != nil {
		t.Fatal(err)
	}

	// The stream, read meanwhile by the hot container.
	hammer := e2e.StartHammer(s.Ctx, s.Docker, hot, dur+5*time.Second, "/db_password")
	profiled := profileAgent(t, a, agbotPprof, dur)
	cpu := meterCPU([]string{"agent", "agbot", "reader (a busy loop)"}, []int{a.Proc().Pid(), s.Agbot.Proc().Pid(), hammerPID(s, hot)})
	st := s.pacedWrites(c, "hot", rate, dur)
	t.Logf("during the stream: %s", cpu)
	histEnd, endErr := scrapeHistograms(a, applyHist) // what the agent applied while the stream ran
	// With writes in flight at once, which of them the agbot committed last is not known: one
	// more value, written alone after them, is the one the node must end with.
	last := c.Next("hot")
	st.written[File("dbkey", last, "")] = true
	st.written[File("dbkey", hotWarm, "")] = true
	lastErr := s.put("hot", "dbkey", last)
	h, herr := hammer()
	profiled()
	checkHammer(t, h, herr, st.written, "reads during the stream")
	if st.failed > 0 || lastErr != nil {
		t.Errorf("%d of %d writes to the agbot failed (first: %v); the last one: %v", st.failed, st.sent+st.failed, st.firstErr, lastErr)
	}
	t.Logf("stream: %s", st)
	if got, want := st.rate(), minRateShare*float64(rate); *soak && got < want {
		t.Errorf("%d services: %.1f updates/s written, want at least %.0f (%.0f%% of %d/s asked)", services, got, want, 100*minRateShare, rate)
	}
	if err := s.waitRead(hot, "/db_password", File("dbkey", last, ""), 2*time.Minute); err != nil {
		t.Fatalf("%d services, %d updates sent in %v: %v", services, st.sent, st.elapsed, err)
	}
	if hs, err := scrapeHistograms(a, applyHist, swapHist); err != nil || endErr != nil {
		t.Error(err, endErr)
	} else {
		during := histEnd[0].minus(histBefore[0])
		apply, swap := hs[0].minus(histBefore[0]), hs[1].minus(histBefore[1])
		t.Logf("converged; %d updates written (%d in the stream, then the last one); the agent applied %.0f while the stream ran "+
			"(%.1f/s; the agbot coalesces changes of one secret it has not pushed yet) and %.0f in all, %s; the store's swap %s",
			st.sent+1, st.sent, during.count, during.count/st.elapsed.Seconds(), apply.count, apply.durations(), swap.durations())
	}
	checkSteady(t, a, before, services)
	scanLeaks(t, s, c)
}

// startLoadNode registers node1 with an agent and publishes services, each binding the secret
// db but the first (svc0000), which binds hot; it returns when every one of them runs, with
// the agent and the hot service's container.
func startLoadNode(t *testing.T, s *Scenario, c *leakscan.Canaries, configure func(*e2e.Agent), services int) (*e2e.Agent, string) {
	if err := s.CreateNode("node1", "tok1"); err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"db", c.Next("db")}, {"hot", c.Next("hot")}} {
		if err := s.put(kv[0], "dbkey", kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	a, err := s.Agent("node1", "", func(a *e2e.Agent) {
		a.Config.DebugPprof = *profileDir != ""
		if configure != nil {
			configure(a)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(a, "node1", "tok1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range services {
		mgr := "db"
		if i == 0 {
			mgr = "hot"
		}
		if err := s.publishAndBind(fmt.Sprintf("svc%04d", i), mgr); err != nil {
			t.Fatal(err)
		}
	}
	var hot string
	err = e2e.Eventually(s.Ctx, 25*time.Minute, 2*time.Second, func() error {
		list, err := a.Agreements()
		if err != nil {
			return err
		}
		n := 0
		for _, in := range list {
			if in.Phase == agreement.PhaseActive && len(in.Containers) == 1 && in.Containers[0].ContainerID != "" {
				n++
				if in.Service.URL == "svc0000" {
					hot = in.Containers[0].ContainerID
				}
			}
		}
		if n < services {
			return fmt.Errorf("%d of %d services running", n, services)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d services running on one node after %v", services, time.Since(start).Round(time.Second))
	return a, hot
}

// checkSteady: after the stream the agent's mounts, open files, goroutines and memory did not
// grow, and every agreement is still active.
func checkSteady(t *testing.T, a *e2e.Agent, before usage, services int) {
	runtime.GC()
	time.Sleep(5 * time.Second)
	after := measure(t, a)
	t.Logf("after the stream: %s", after)
	if p := orphanMounts(before.mounts, after.mounts); p != "" {
		t.Errorf("mounts grew: %s", p)
	}
	if after.fds > before.fds+10 {
		t.Errorf("open files grew from %d to %d", before.fds, after.fds)
	}
	if after.goroutines > before.goroutines+20 {
		t.Errorf("goroutines grew from %v to %v", before.goroutines, after.goroutines)
	}
	if after.rssKiB > before.rssKiB*5/4+8<<10 {
		t.Errorf("RSS grew from %.1f to %.1f MiB", float64(before.rssKiB)/1024, float64(after.rssKiB)/1024)
	}
	list, err := a.Agreements()
	active := 0
	for _, in := range list {
		if in.Phase == agreement.PhaseActive {
			active++
		}
	}
	if err != nil || active != services {
		t.Errorf("after the stream %d of %d agreements are active (%v)", active, services, err)
	}
}

// profileAgent, with -profile DIR, records the CPU profiles of the agent and of the agbot
// (agbotPprof, "" if not served) for most of the stream, then the agent's block and mutex
// profiles, into DIR. The returned function waits for the CPU profiles.
func profileAgent(t *testing.T, a *e2e.Agent, agbotPprof string, dur time.Duration) func() {
	if *profileDir == "" {
		return func() {}
	}
	get := func(url, file string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Errorf("profile %s: %v", url, err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if err := os.WriteFile(filepath.Join(*profileDir, file), b, 0o644); err != nil {
			t.Error(err)
		}
	}
	base := "http://" + a.Config.MetricsListen + "/debug/pprof/"
	cpu := fmt.Sprintf("profile?seconds=%d", int(dur.Seconds()*3/4))
	var wg sync.WaitGroup
	wg.Go(func() { get(base+cpu, "agent-cpu.pprof") })
	if agbotPprof != "" {
		wg.Go(func() { get(agbotPprof+cpu, "agbot-cpu.pprof") })
	}
	return func() {
		wg.Wait()
		get(base+"block", "agent-block.pprof")
		get(base+"mutex", "agent-mutex.pprof")
		t.Logf("agent and agbot profiles in %s", *profileDir)
	}
}

// agbotProfiling, with -profile DIR, restarts the agbot serving its profiles and returns
// their address ("" without -profile).
func agbotProfiling(t *testing.T, s *Scenario) string {
	if *profileDir == "" {
		return ""
	}
	addr, err := e2e.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.Agbot.ServeArgs = append(s.Agbot.ServeArgs, "--metrics-listen", addr, "--debug-pprof")
	if err := s.Agbot.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Agbot.Start(s.Ctx); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/debug/pprof/"
}
