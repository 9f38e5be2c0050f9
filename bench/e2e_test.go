package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/openbaotest"
	"github.com/edge-secrets/anax-agent/test/reliability"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// e2eParts are what every end-to-end benchmark needs: the binaries, the engine and the
// reader image. Made by the parent benchmark, whose cleanup outlives its sub-benchmarks'
// runs (testing runs each with b.N=1 first).
type e2eParts struct {
	dir   string
	bin   *e2e.Binaries
	cli   *client.Client
	image string
}

func newParts(b *testing.B) *e2eParts {
	b.Helper()
	testenv.RequireRoot(b)
	dockertest.Client(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p := &e2eParts{dir: b.TempDir()}
	var err error
	if p.bin, err = reliability.BuildBinaries(ctx, *binDir, filepath.Join(p.dir, "bin")); err != nil {
		b.Fatal(err)
	}
	if p.cli, err = e2e.Docker(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.cli.Close() })
	if p.image, err = e2e.BuildImage(ctx, p.cli, p.bin.Reader, e2e.Image{Name: "anax-bench-reader-e2e", User: "1000:1000"}); err != nil {
		b.Fatal(err)
	}
	return p
}

// scenario starts an agbot (vault nil: embedded manager) in a directory of its own, closed
// at b's cleanup.
func (p *e2eParts) scenario(b *testing.B, name string, vault *e2e.Vault) *reliability.Scenario {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := filepath.Join(p.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	s, err := reliability.NewScenario(ctx, p.bin, p.cli, p.image, dir, vault)
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := s.Close(); err != nil {
			b.Errorf("%s: %v", name, err)
		}
		cancel()
	})
	return s
}

func canary(tag string, i int) string {
	return fmt.Sprintf("CANARY-bench-%s-%d-%d", tag, i, time.Now().UnixNano())
}

// BenchmarkEndToEnd: `hzn sm secret add -O` of a new value for the org secret a running
// container's /db_password comes from, until the reader inside the container (polling every
// 200 µs) sees the new file; with the embedded secrets manager and with a real OpenBao. The
// hzn process start and its HTTPS call are inside the figure. Every change must arrive whole:
// a torn, empty or wrong read fails the benchmark.
//
//	go test -run '^$' -bench EndToEnd -benchtime 200x ./bench/
func BenchmarkEndToEnd(b *testing.B) {
	p := newParts(b)
	bao := openbaotest.StartServer(b)
	tokenFile := filepath.Join(p.dir, "bao-token")
	if err := os.WriteFile(tokenFile, []byte(bao.Token), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, mgr := range []struct {
		name  string
		vault *e2e.Vault
	}{{"embedded", nil}, {"openbao", &e2e.Vault{Addr: bao.Addr, TokenFile: tokenFile}}} {
		// Set up here, in the parent: its cleanup runs after every run of the sub-benchmark.
		s := p.scenario(b, "e2e-"+mgr.name, mgr.vault)
		_, ctr, err := s.Single(canary("e2e-db", 0), canary("e2e-token", 0), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(mgr.name, func(b *testing.B) {
			var lat, hzn, after []time.Duration
			bad := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				v := canary("e2e-"+mgr.name, i)
				wait, err := e2e.Watch(s.Ctx, p.cli, ctr, "/db_password", time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				if err := s.PutSecret("db", "dbkey", v, ""); err != nil {
					b.Fatal(err)
				}
				hzn = append(hzn, time.Since(t0))
				ch, err := wait()
				b.StopTimer()
				if err != nil {
					b.Fatalf("update %d: %v", i, err)
				}
				if ch.Content != reliability.File("dbkey", v, "") {
					b.Fatalf("update %d: the container read %d bytes that are not the new value", i, len(ch.Content))
				}
				bad += ch.Bad
				lat = append(lat, time.Unix(0, ch.SeenAt).Sub(t0))
				after = append(after, time.Unix(0, ch.SeenAt).Sub(t0.Add(hzn[len(hzn)-1])))
			}
			if bad > 0 {
				b.Fatalf("%d empty or failed reads while the updates arrived", bad)
			}
			d := NewDist(lat, "ms")
			hd, ad := NewDist(hzn, "ms"), NewDist(after, "ms")
			b.ReportMetric(d.Median, "ms-median")
			b.ReportMetric(d.P99, "ms-p99")
			res := LatencyResult{Name: mgr.name, Latency: d,
				Note: fmt.Sprintf("the hzn command (process start, HTTPS call, the agbot storing the value) took %.1f ms median, %.1f ms p99; "+
					"from its return to the read in the container (fan-out, long-poll answer, agent, swap): %.1f ms median, %.1f ms p99",
					hd.Median, hd.P99, ad.Median, ad.P99)}
			record(b, func(r *Results) {
				r.EndToEnd = slices.DeleteFunc(r.EndToEnd, func(l LatencyResult) bool { return l.Name == mgr.name })
				r.EndToEnd = append(r.EndToEnd, res)
				slices.SortFunc(r.EndToEnd, func(a, b LatencyResult) int { return strings.Compare(a.Name, b.Name) })
			})
		})
	}
}

// BenchmarkProposal: a deployment policy published with `hzn exchange deployment addpolicy`
// for a registered, idle node, until the service's container runs. Split by the timestamps
// the parts keep: the agbot (hzn, the API, matching, sealing, storing the proposal: until
// the agbot's agreement record is created), delivery (the long-poll until the agent starts
// handling it: the agent's acceptedAt), the agent (checks, user resolution, intent record,
// secret store and mounts, until Docker has created the container) and Docker (container
// created until started). Each run removes its policy afterwards (not timed).
//
//	go test -run '^$' -bench Proposal -benchtime 10x ./bench/
func BenchmarkProposal(b *testing.B) {
	p := newParts(b)
	s := p.scenario(b, "proposal", nil)
	steps := []func() error{
		func() error { return s.CreateNode("node1", "tok1") },
		func() error { return s.PutSecret("db", "dbkey", canary("proposal-db", 0), "") },
		func() error { return s.PublishService("reader", map[string]string{"db_password": ""}) },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	a, err := s.Agent("node1", "", nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Register(a, "node1", "tok1"); err != nil {
		b.Fatal(err)
	}
	run := 0
	b.Run("embedded", func(b *testing.B) {
		var total, agbotT, delivery, agentT, docker []time.Duration
		for i := 0; i < b.N; i++ {
			run++
			pol := fmt.Sprintf("p%03d", run)
			t0 := time.Now()
			if err := s.AddPolicy(pol, "reader", map[string]string{"db_password": "db"}, false); err != nil {
				b.Fatal(err)
			}
			in, err := a.ActiveAgreement(s.Ctx, "reader", 2*time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			var ags []engine.Agreement
			if code, err := s.Agbot.Do(reliability.Org+"/"+s.Admin, "GET", "/org/"+reliability.Org+"/nodes/node1/agreements", nil, &ags); err != nil || code != 200 {
				b.Fatalf("agbot agreements: %d %v", code, err)
			}
			var created time.Time
			for _, g := range ags {
				if g.ID == in.ID {
					created = g.Created
				}
			}
			ci, err := p.cli.ContainerInspect(s.Ctx, in.Containers[0].ContainerID)
			if err != nil {
				b.Fatal(err)
			}
			cCreated, err1 := time.Parse(time.RFC3339Nano, ci.Created)
			started, err2 := time.Parse(time.RFC3339Nano, ci.State.StartedAt)
			if created.IsZero() || err1 != nil || err2 != nil {
				b.Fatalf("timestamps: agbot %v, container %v %v", created, err1, err2)
			}
			total = append(total, started.Sub(t0))
			agbotT = append(agbotT, created.Sub(t0))
			delivery = append(delivery, in.AcceptedAt.Sub(created))
			agentT = append(agentT, cCreated.Sub(in.AcceptedAt))
			docker = append(docker, started.Sub(cCreated))
			// Not timed: remove the policy and wait for the node to be idle again.
			if err := s.RemovePolicy(pol); err != nil {
				b.Fatal(err)
			}
			err = e2e.Eventually(s.Ctx, 2*time.Minute, 100*time.Millisecond, func() error {
				list, err := a.Agreements()
				if err == nil && len(list) > 0 {
					err = fmt.Errorf("%d agreements left", len(list))
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		res := ProposalResult{Name: "one container, one secret, embedded manager", Total: NewDist(total, "ms"), Agbot: NewDist(agbotT, "ms"),
			Delivery: NewDist(delivery, "ms"), Agent: NewDist(agentT, "ms"), Docker: NewDist(docker, "ms"),
			Note: "agbot includes the hzn process; delivery is the long-poll answer, TLS and opening the envelope"}
		b.ReportMetric(res.Total.Median, "ms-total")
		b.ReportMetric(res.Agbot.Median, "ms-agbot")
		b.ReportMetric(res.Delivery.Median, "ms-delivery")
		b.ReportMetric(res.Agent.Median, "ms-agent")
		b.ReportMetric(res.Docker.Median, "ms-docker")
		record(b, func(r *Results) { r.Proposal = []ProposalResult{res} })
	})
}

// BenchmarkFootprint: the agent's resident memory (from /proc) registered and idle, then with
// 100 services (100 agreements, one container and one secret each) running, after a settle.
//
//	go test -run '^$' -bench Footprint -benchtime 1x ./bench/
func BenchmarkFootprint(b *testing.B) {
	p := newParts(b)
	const services = 100
	n := 0
	b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
		n++
		s := p.scenario(b, fmt.Sprintf("footprint-%d", n), nil)
		if err := s.CreateNode("node1", "tok1"); err != nil {
			b.Fatal(err)
		}
		if err := s.PutSecret("db", "dbkey", canary("footprint-db", 0), ""); err != nil {
			b.Fatal(err)
		}
		a, err := s.Agent("node1", "", nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Register(a, "node1", "tok1"); err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		idle, err := reliability.RSS(a.Proc().Pid())
		if err != nil {
			b.Fatal(err)
		}
		for i := range services {
			url := fmt.Sprintf("svc%03d", i)
			if err := publishAndBind(s, url); err != nil {
				b.Fatal(err)
			}
		}
		err = e2e.Eventually(s.Ctx, 15*time.Minute, time.Second, func() error {
			list, err := a.Agreements()
			if err != nil {
				return err
			}
			n := 0
			for _, in := range list {
				if in.Phase == agreement.PhaseActive {
					n++
				}
			}
			if n < services {
				return fmt.Errorf("%d of %d agreements active", n, services)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		full, err := reliability.RSS(a.Proc().Pid())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(idle)/1024, "MiB-idle")
		b.ReportMetric(float64(full)/1024, "MiB-100-services")
		record(b, func(r *Results) {
			r.Footprint = []FootprintResult{
				{Services: 0, RSSMiB: round3(float64(idle) / 1024), Note: "registered, idle"},
				{Services: services, RSSMiB: round3(float64(full) / 1024), Note: "one container and one secret each, 5 s after the last started"},
			}
		})
	})
}

// publishAndBind publishes a one-secret service and its policy through the API (hzn would
// start 200 processes).
func publishAndBind(s *reliability.Scenario, url string) error {
	svc := map[string]any{"org": reliability.Org, "url": url, "version": "1.0.0", "arch": archOf(),
		"deployment": map[string]any{"services": map[string]any{"main": map[string]any{"image": s.Image,
			"secrets": map[string]any{"db_password": map[string]any{}}}}}}
	auth := reliability.Org + "/" + s.Admin
	if code, err := s.Agbot.Do(auth, "POST", "/org/"+reliability.Org+"/services", svc, nil); err != nil || code != 201 {
		return fmt.Errorf("publish %s: %d %v", url, code, err)
	}
	pol := map[string]any{
		"service":     map[string]any{"name": url, "org": reliability.Org, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"zone == reliability"},
		"secretBinding": []any{map[string]any{"serviceOrgid": reliability.Org, "serviceUrl": url, "serviceArch": "*",
			"serviceVersionRange": "[0.0.0,INFINITY)", "secrets": []any{map[string]string{"db_password": "db"}}}},
	}
	if code, err := s.Agbot.Do(auth, "PUT", "/org/"+reliability.Org+"/business/policies/"+url, pol, nil); err != nil || code != 201 {
		return fmt.Errorf("policy %s: %d %v", url, code, err)
	}
	return nil
}

func archOf() string { return arch.Node() }
