package reliability

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// newScenarioT starts an agbot for a test; everything it started is stopped and removed at
// the test's end.
func newScenarioT(t *testing.T, name string, timeout time.Duration) *Scenario {
	t.Helper()
	binaries(t) // root first: skip before asking for Docker
	cli := dockertest.Client(t)
	return newScenarioOn(t, name, timeout, cli, readerImage(t, cli))
}

// newScenarioOn is newScenarioT on the engine cli answers for (a private dockerd).
func newScenarioOn(t *testing.T, name string, timeout time.Duration, cli *client.Client, image string) *Scenario {
	t.Helper()
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	s, err := NewScenario(ctx, bin, cli, image, filepath.Join(t.TempDir(), name), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("clean-up: %v", err)
		}
		cancel()
	})
	return s
}

// put writes a new value of an org secret through the agbot's API (hzn is measured in
// bench/; here a stream must be fast).
func (s *Scenario) put(name, key, value string) error {
	code, err := s.Agbot.Do(Org+"/"+s.Admin, "PUT", "/org/"+Org+"/secrets/"+name, map[string]string{"key": key, "value": value}, nil)
	if err == nil && code != 201 { // anax: created or updated
		err = fmt.Errorf("PUT secret %s: %d", name, code)
	}
	return err
}

// waitRead waits until the container reads want at path.
func (s *Scenario) waitRead(ctr, path, want string, timeout time.Duration) error {
	var last string
	err := e2e.Eventually(s.Ctx, timeout, 50*time.Millisecond, func() error {
		got, err := e2e.Cat(s.Ctx, s.Docker, ctr, path)
		if err != nil {
			return err
		}
		last = got[path]
		if last != want {
			return fmt.Errorf("%s reads %s", path, describe(last))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s at %s: %w", describe(want), path, err)
	}
	return nil
}

// orphanMounts compares the mounts under a secrets root now with before a fault. Allowed:
// the same mount points, each at most two deep (mount-swap), plus one feed mount per secret
// on the version the running container started with (/feed/<store>/v/<secret>/<n>): an
// update of that secret made it, and it stays while the container runs. Anything else is
// left over.
func orphanMounts(before, now string) string {
	known := map[string]bool{}
	for _, m := range strings.Fields(before) {
		known[m] = true
	}
	count := map[string]int{}
	feeds := map[string]int{}
	for _, m := range strings.Fields(now) {
		count[m]++
		if known[m] {
			continue
		}
		parts := strings.Split(strings.TrimPrefix(m, "/"), "/")
		if len(parts) == 5 && parts[0] == "feed" && parts[2] == "v" {
			feeds[parts[1]+"/"+parts[3]]++
			continue
		}
		return "mount " + m + " is left over"
	}
	for m, n := range count {
		if n > 2 {
			return fmt.Sprintf("%s is %d mounts deep", m, n)
		}
	}
	for f, n := range feeds {
		if n > 1 {
			return fmt.Sprintf("%d feed mounts for %s", n, f)
		}
	}
	for m := range known {
		if count[m] == 0 {
			return "mount " + m + " is gone"
		}
	}
	return ""
}

// warmUp writes one update and waits for it in the container; it returns the value.
func (s *Scenario) warmUp(t *testing.T, c *leakscan.Canaries, ctr string) string {
	t.Helper()
	v := c.Next("db")
	if err := s.put("db", "dbkey", v); err != nil {
		t.Fatal(err)
	}
	if err := s.waitRead(ctr, "/db_password", File("dbkey", v, ""), time.Minute); err != nil {
		t.Fatal(err)
	}
	return v
}

// baseline is what must not change on the node across a fault.
type baseline struct {
	mounts    string // the mount points under the secrets root
	startedAt string
}

func (s *Scenario) baseline(t *testing.T, a *e2e.Agent, ctr string) baseline {
	t.Helper()
	// (Take it after a first update: then the running container's own version carries the
	// current one through the store's feed, a mount that stays.)
	ms, err := e2e.MountsUnder(a.Config.SecretsRoot)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ms {
		ms[i] = strings.TrimPrefix(ms[i], a.Config.SecretsRoot)
	}
	insp, err := s.Docker.ContainerInspect(s.Ctx, ctr)
	if err != nil {
		t.Fatal(err)
	}
	return baseline{mounts: strings.Join(ms, " "), startedAt: insp.State.StartedAt}
}

// checkNode: the agent serves, its one container is the same one and was not restarted, and
// no mount, store or container was left over or lost.
func (s *Scenario) checkNode(t *testing.T, a *e2e.Agent, ctr string, want baseline, when string) {
	t.Helper()
	st, err := a.Status()
	if err != nil || !st.Registered {
		t.Errorf("%s: the agent does not serve its local API or forgot its registration: %v", when, err)
	}
	list, err := e2e.ContainersOf(s.Ctx, s.Docker, a.ID())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != ctr {
		t.Errorf("%s: the agent has %d containers, want only %s", when, len(list), ctr[:12])
	}
	// Replaced mounts are retired after a grace period: give it time.
	var b baseline
	var problem string
	_ = e2e.Eventually(s.Ctx, 30*time.Second, 200*time.Millisecond, func() error {
		b = s.baseline(t, a, ctr)
		if problem = orphanMounts(want.mounts, b.mounts); problem != "" {
			return fmt.Errorf("%s", problem)
		}
		return nil
	})
	if problem != "" {
		t.Errorf("%s: %s\n  now    %s\n  before %s", when, problem, b.mounts, want.mounts)
	}
	if b.startedAt != want.startedAt {
		t.Errorf("%s: the container started at %s, before at %s: it was restarted", when, b.startedAt, want.startedAt)
	}
	ags, err := a.Agreements()
	if err != nil || len(ags) != 1 || ags[0].Phase != agreement.PhaseActive {
		t.Errorf("%s: agreements %v (%v), want one active", when, ags, err)
	}
}

// hammerCheck reads the secret continuously in the container for d and checks that every
// read was whole: one of the values written, never empty, never failed.
func (s *Scenario) hammer(ctr string, d time.Duration) func() (e2e.Hammer, error) {
	return e2e.StartHammer(s.Ctx, s.Docker, ctr, d, "/db_password", "/open-horizon-secrets/db_password")
}

func checkHammer(t *testing.T, h e2e.Hammer, err error, written map[string]bool, when string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: reader: %v", when, err)
	}
	if h.Errors != 0 || h.Empty != 0 {
		t.Errorf("%s: %d failed (%s) and %d empty reads of %d", when, h.Errors, h.FirstError, h.Empty, h.Reads)
	}
	for f, contents := range h.Contents {
		for _, c := range contents {
			if !written[c] {
				t.Errorf("%s: %s read %s, which was never written whole (torn?)", when, f, describe(c))
			}
		}
	}
}

// stream writes a new value of secret db every interval until stop is closed, and records
// the file contents written, in order.
type stream struct {
	s       *Scenario
	c       *leakscan.Canaries
	mu      sync.Mutex
	written []string
	errs    []error
	stop    chan struct{}
	done    chan struct{}
}

func startStream(s *Scenario, c *leakscan.Canaries, first string, interval time.Duration) *stream {
	st := &stream{s: s, c: c, written: []string{File("dbkey", first, "")}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(st.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-st.stop:
				return
			case <-tick.C:
			}
			v := c.Next("db")
			err := s.put("db", "dbkey", v)
			st.mu.Lock()
			if err != nil {
				st.errs = append(st.errs, err)
			} else {
				st.written = append(st.written, File("dbkey", v, ""))
			}
			st.mu.Unlock()
		}
	}()
	return st
}

// end stops the stream and returns every content written (the set) and the last one.
func (st *stream) end() (map[string]bool, string, []error) {
	close(st.stop)
	<-st.done
	st.mu.Lock()
	defer st.mu.Unlock()
	set := map[string]bool{}
	for _, w := range st.written {
		set[w] = true
	}
	return set, st.written[len(st.written)-1], st.errs
}

// TestFaultKillAgent: kill -9 of the agent at random points while a stream of updates
// (one every 100 ms) arrives, restarted each time. The running container is never
// restarted and never reads a torn, empty or unknown value; after the stream the node
// converges to the last value; no mount, store or container is left over; nothing leaks.
func TestFaultKillAgent(t *testing.T) {
	kills := 8
	if *soak {
		kills = 50
	}
	c := leakscan.New("rel-kill")
	s := newScenarioT(t, "kill", 15*time.Minute)
	db0 := c.Next("db")
	a, ctr, err := s.Single(db0, c.Next("token"), nil)
	if err != nil {
		t.Fatal(err)
	}
	db0 = s.warmUp(t, c, ctr)
	base := s.baseline(t, a, ctr)
	st := startStream(s, c, db0, 100*time.Millisecond)
	var hammers []func() (e2e.Hammer, error)
	for i := range kills {
		hammers = append(hammers, s.hammer(ctr, 2*time.Second))
		time.Sleep(time.Duration(rand.N(1500)) * time.Millisecond)
		a.Kill()
		time.Sleep(time.Duration(rand.N(500)) * time.Millisecond)
		if err := a.Start(s.Ctx); err != nil {
			t.Fatalf("restart %d after kill -9: %v", i+1, err)
		}
	}
	written, last, errs := st.end()
	if len(errs) > 0 {
		t.Errorf("%d writes to the agbot failed, first: %v", len(errs), errs[0])
	}
	for i, h := range hammers {
		hm, err := h()
		checkHammer(t, hm, err, written, fmt.Sprintf("reads around kill %d", i+1))
	}
	if err := s.waitRead(ctr, "/db_password", last, 90*time.Second); err != nil {
		t.Fatalf("after %d kills the node did not converge to the last of %d values: %v", kills, len(written), err)
	}
	if err := s.waitRead(ctr, "/open-horizon-secrets/db_password", last, 10*time.Second); err != nil {
		t.Error(err)
	}
	s.checkNode(t, a, ctr, base, fmt.Sprintf("after %d kills", kills))
	t.Logf("%d kills during %d updates; converged to the last", kills, len(written)-1)
	scanLeaks(t, s, c)
}

// TestFaultAgbotRestart: updates written while the node can not reach the agbot are pending
// there; the agbot is then killed (-9) and started again, and only then is the link
// restored. Every pending update is still delivered (the node reads the last value), and
// a later update arrives as usual.
func TestFaultAgbotRestart(t *testing.T) {
	c := leakscan.New("rel-agbot")
	s := newScenarioT(t, "agbot", 10*time.Minute)
	px := newFaultProxy(t, s.Agbot.Addr)
	db0 := c.Next("db")
	a, ctr, err := s.Single(db0, c.Next("token"), func(a *e2e.Agent) { a.Config.AgbotURL = "https://" + px.Addr })
	if err != nil {
		t.Fatal(err)
	}
	s.warmUp(t, c, ctr)
	base := s.baseline(t, a, ctr)
	for round, stop := range []string{"kill -9", "SIGTERM"} {
		px.Drop()
		var last string
		for range 3 {
			last = c.Next("db")
			if err := s.put("db", "dbkey", last); err != nil {
				t.Fatal(err)
			}
		}
		if stop == "kill -9" {
			s.Agbot.Proc().Kill()
		} else if err := s.Agbot.Stop(); err != nil {
			t.Errorf("agbot stop: %v", err)
		}
		if err := s.Agbot.Start(s.Ctx); err != nil {
			t.Fatalf("agbot restart after %s: %v", stop, err)
		}
		px.Pass()
		if err := s.waitRead(ctr, "/db_password", File("dbkey", last, ""), 90*time.Second); err != nil {
			t.Fatalf("round %d (%s): the pending update did not arrive: %v", round+1, stop, err)
		}
		after := c.Next("db")
		if err := s.put("db", "dbkey", after); err != nil {
			t.Fatal(err)
		}
		if err := s.waitRead(ctr, "/db_password", File("dbkey", after, ""), 60*time.Second); err != nil {
			t.Fatalf("round %d (%s): an update after the restart: %v", round+1, stop, err)
		}
		s.checkNode(t, a, ctr, base, "after the agbot restart ("+stop+")")
	}
	scanLeaks(t, s, c)
}

// TestFaultLink: the link between node and agbot dropped (connections closed, new ones
// refused) and then stalled (a black hole: connections open, nothing forwarded), each for
// longer than anax's 240 s message lifetime in `make soak` (25 s in `make test`), with
// updates written meanwhile. The node keeps serving its container the last value it had;
// once the link is back it converges to the last value written, however long it was away.
func TestFaultLink(t *testing.T) {
	t.Parallel() // mostly waits for the link: runs beside TestLoad
	away := 25 * time.Second
	if *soak {
		away = 250 * time.Second
	}
	c := leakscan.New("rel-link")
	s := newScenarioT(t, "link", 2*away+8*time.Minute)
	px := newFaultProxy(t, s.Agbot.Addr)
	db0 := c.Next("db")
	a, ctr, err := s.Single(db0, c.Next("token"), func(a *e2e.Agent) { a.Config.AgbotURL = "https://" + px.Addr })
	if err != nil {
		t.Fatal(err)
	}
	db0 = s.warmUp(t, c, ctr)
	base := s.baseline(t, a, ctr)
	had := File("dbkey", db0, "")
	for _, mode := range []string{"drop", "stall"} {
		if mode == "drop" {
			px.Drop()
		} else {
			px.Stall()
		}
		var last string
		deadline := time.Now().Add(away)
		for time.Now().Before(deadline) {
			last = c.Next("db")
			if err := s.put("db", "dbkey", last); err != nil {
				t.Fatal(err)
			}
			time.Sleep(min(away/4, time.Until(deadline)))
		}
		// Still serving the value it had.
		if got, err := e2e.Cat(s.Ctx, s.Docker, ctr, "/db_password"); err != nil || got["/db_password"] != had {
			t.Errorf("link %s: the container reads %s (%v), want the value it had", mode, describe(got["/db_password"]), err)
		}
		if _, err := a.Status(); err != nil {
			t.Errorf("link %s: the agent's local API: %v", mode, err)
		}
		start := time.Now()
		px.Pass()
		had = File("dbkey", last, "")
		if err := s.waitRead(ctr, "/db_password", had, 2*time.Minute); err != nil {
			t.Fatalf("after the link was %s for %v: %v", mode, away, err)
		}
		t.Logf("link %s for %v: the last value arrived %v after the link came back", mode, away, time.Since(start).Round(time.Millisecond))
		s.checkNode(t, a, ctr, base, "after the link was "+mode)
	}
	scanLeaks(t, s, c)
}
