package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/protocol"
)

const fanoutOrg = "bench"

// fanoutEnv is an agbot process with n registered nodes, each simulated in this process by a
// goroutine that long-polls over its own HTTPS connection and acknowledges what it gets. It
// lives across the runs of one benchmark (testing runs a benchmark with b.N=1 first).
type fanoutEnv struct {
	nodes  int
	dir    string
	agbot  *exec.Cmd
	url    string
	admin  *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup

	proposals atomic.Int64 // proposals acknowledged (first time each)
	updates   atomic.Int64 // updates acknowledged (first time each)
	lastAck   atomic.Int64 // unix ns of the last counted update acknowledgement
	errs      atomic.Int64
	firstErr  atomic.Pointer[string]
	setup     time.Duration
	idleRSS   int64 // KiB, every node connected and idle, before the first fan-out
	pprofURL  string
}

// profileDir (ANAX_FANOUT_PROFILE=DIR) makes the benchmark record the agbot's CPU profile
// during the first measured fan-out and its heap profile after it, in DIR.
var profileDir = os.Getenv("ANAX_FANOUT_PROFILE")

// startProfile records the agbot's CPU profile for secs seconds into DIR/name; the returned
// function waits for it and then saves the heap profile.
func (e *fanoutEnv) startProfile(b *testing.B, name string, secs int) func() {
	if profileDir == "" || e.pprofURL == "" {
		return func() {}
	}
	get := func(what, file string) {
		resp, err := http.Get(e.pprofURL + what)
		if err != nil {
			b.Logf("profile %s: %v", what, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(profileDir, file))
		if err != nil {
			b.Logf("profile %s: %v", what, err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(fmt.Sprintf("profile?seconds=%d", secs), name+".cpu.pprof")
	}()
	return func() {
		<-done
		get("heap", name+".heap.pprof")
	}
}

var fanoutEnvs = map[int]*fanoutEnv{}

func (e *fanoutEnv) fail(err error) {
	e.errs.Add(1)
	s := err.Error()
	e.firstErr.CompareAndSwap(nil, &s)
}

// newFanoutEnv prepares the state in process (cheap password hashes, so that 10,000 node
// tokens do not cost 10,000 argon2id runs), then serves it with the agbot binary.
func newFanoutEnv(b *testing.B, nodes int) *fanoutEnv {
	if e := fanoutEnvs[nodes]; e != nil {
		return e
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "anax-bench-fanout-")
	if err != nil {
		b.Fatal(err)
	}
	e := &fanoutEnv{nodes: nodes, dir: dir}
	fanoutEnvs[nodes] = e
	onExit(e.close)
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: fanoutOrg, Admin: "admin", Password: "adminpw", Hash: access.CheapParams}); err != nil {
		b.Fatal(err)
	}
	srv, err := agbot.Open(agbot.Options{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hash: access.CheapParams})
	if err != nil {
		b.Fatal(err)
	}
	h := srv.Handler()
	call := func(auth, method, path string, body any, want int) []byte {
		raw, _ := json.Marshal(body)
		req := httptest.NewRequest(method, path, bytes.NewReader(raw))
		u, p, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, p)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("%s %s = %d %s", method, path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	const admin = fanoutOrg + "/admin:adminpw"
	call(admin, "PUT", "/org/bench/secrets/db", map[string]string{"key": "k", "value": "CANARY-bench-fanout-0"}, 201)
	call(admin, "POST", "/org/bench/services", map[string]any{
		"org": fanoutOrg, "url": "svc", "version": "1.0.0", "arch": "amd64",
		"deployment": map[string]any{"services": map[string]any{
			"web": map[string]any{"image": "svc:1", "secrets": map[string]any{"db_password": map[string]any{}}},
		}},
	}, 201)
	keys := make([]*protocol.PrivateKeys, nodes)
	for i := range nodes {
		id := nodeName(i)
		if keys[i], err = protocol.GenerateKeys(); err != nil {
			b.Fatal(err)
		}
		call(admin, "PUT", "/org/bench/nodes/"+id, map[string]any{"token": "tok-" + id}, 201)
		call(fanoutOrg+"/"+id+":tok-"+id, "PUT", "/org/bench/nodes/"+id+"/registration", map[string]any{
			"publicKeys": keys[i].Public(), "arch": "amd64",
			"properties": []any{map[string]any{"name": "purpose", "value": "edge"}},
		}, 200)
	}
	// The policy last: one reconciliation proposes to every node.
	call(admin, "PUT", "/org/bench/business/policies/pol", map[string]any{
		"service":     map[string]any{"name": "svc", "org": fanoutOrg, "arch": "*", "serviceVersions": []any{map[string]any{"version": "1.0.0"}}},
		"constraints": []string{"purpose == edge"},
		"secretBinding": []any{map[string]any{
			"serviceOrgid": fanoutOrg, "serviceUrl": "svc", "serviceArch": "amd64", "serviceVersionRange": "[0.0.0,INFINITY)",
			"secrets": []any{map[string]string{"db_password": "db"}},
		}},
	}, 201)
	if p := srv.Engine.Pending(); p != nodes {
		b.Fatalf("after publishing the policy %d proposals are queued, want %d", p, nodes)
	}
	var info api.AgbotInfo
	_ = json.Unmarshal(call("", "GET", "/agbot", nil, 200), &info)
	if err := srv.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}

	// The agbot process, as an operator runs it.
	logf, err := os.Create(filepath.Join(dir, "agbot.log"))
	if err != nil {
		b.Fatal(err)
	}
	args := []string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0"}
	if profileDir != "" {
		args = append(args, "--metrics-listen", "127.0.0.1:0", "--debug-pprof")
	}
	e.agbot = exec.Command(binary(b, "agbot"), args...)
	e.agbot.Stdout = logf
	pr, pw := io.Pipe()
	e.agbot.Stderr = io.MultiWriter(logf, pw)
	e.agbot.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.agbot.Start(); err != nil {
		b.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			_, a, ok := strings.Cut(sc.Text(), " addr=")
			if ok && strings.Contains(sc.Text(), "msg=metrics") {
				e.pprofURL = "http://" + strings.Fields(a)[0] + "/debug/pprof/"
			}
			if ok && strings.Contains(sc.Text(), "agbot serving") {
				addr <- strings.Fields(a)[0]
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case a := <-addr:
		e.url = "https://" + a
	case <-time.After(2 * time.Minute):
		b.Fatal("agbot serve did not say where it listens")
	}
	pem, err := os.ReadFile(filepath.Join(dir, agbot.CertFile))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	newClient := func() *http.Client {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		tr.MaxIdleConnsPerHost = 1
		return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	}
	e.admin = newClient()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	for i := range nodes {
		s := &simNode{env: e, id: nodeName(i), client: newClient(),
			ep:      &protocol.Endpoint{ID: fanoutOrg + "/" + nodeName(i), Keys: keys[i], Peers: protocol.StaticKeyRing{info.ID: info.PublicKeys}},
			agbotID: info.ID}
		e.wg.Go(func() { s.run(ctx) })
	}
	e.waitCount(b, &e.proposals, int64(nodes), 10*time.Minute, "proposals acknowledged")
	e.setup = time.Since(start)
	// 10,000 nodes connecting at once is a herd: some TLS handshakes outlast the agbot's
	// header timeout and are closed; those nodes retry, as agents do. Only the errors during
	// the measured fan-outs are reported.
	b.Logf("%d nodes: setup (state, agbot process, every proposal acknowledged) took %v; %d poll/reply errors retried, first: %s",
		nodes, e.setup.Round(time.Millisecond), e.errs.Load(), e.firstErrString())
	e.errs.Store(0)
	e.firstErr.Store(nil)
	if ps, err := readProc(e.agbot.Process.Pid); err == nil {
		e.idleRSS = ps.RSSKiB
	}
	return e
}

func (e *fanoutEnv) close() {
	if e.cancel != nil {
		e.cancel()
	}
	if e.agbot != nil && e.agbot.Process != nil {
		e.agbot.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { e.agbot.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			e.agbot.Process.Kill()
			<-done
		}
	}
	e.wg.Wait()
	os.RemoveAll(e.dir)
}

func (e *fanoutEnv) waitCount(b *testing.B, c *atomic.Int64, want int64, timeout time.Duration, what string) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for c.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d %s after %v; %d errors, first: %v", c.Load(), want, what, timeout, e.errs.Load(), e.firstErrString())
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *fanoutEnv) firstErrString() string {
	if p := e.firstErr.Load(); p != nil {
		return *p
	}
	return "none"
}

func nodeName(i int) string { return fmt.Sprintf("n%05d", i) }

// simNode is one node: poll, open, answer, poll again, on one keep-alive connection.
type simNode struct {
	env     *fanoutEnv
	id      string
	client  *http.Client
	ep      *protocol.Endpoint
	agbotID string
	after   uint64
	lastUpd uint64
	gotProp bool
}

func (s *simNode) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.env.url+path, rd)
	if err != nil {
		return err
	}
	req.SetBasicAuth(fanoutOrg+"/"+s.id, "tok-"+s.id)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (s *simNode) run(ctx context.Context) {
	defer s.client.CloseIdleConnections()
	base := "/org/" + fanoutOrg + "/nodes/" + s.id + "/msgs"
	failures := 0
	for ctx.Err() == nil {
		var out api.Messages
		if err := s.do(ctx, "GET", fmt.Sprintf("%s?wait=50&after=%d", base, s.after), nil, &out); err != nil {
			if ctx.Err() == nil {
				s.env.fail(fmt.Errorf("node %s poll: %w", s.id, err))
				failures++
				time.Sleep(backoff(failures))
			}
			continue
		}
		failures = 0
		for _, m := range out.Messages {
			s.after = max(s.after, m.ID)
			msg, err := s.ep.Open(m.Envelope)
			if err != nil {
				s.env.fail(fmt.Errorf("node %s open %s: %w", s.id, m.Type, err))
				continue
			}
			hd := msg.Head()
			meta := hd.ReplyMeta(protocol.TypeProposalReply)
			var reply protocol.Message
			switch msg.(type) {
			case *protocol.Proposal:
				reply = &protocol.ProposalReply{Meta: meta, Status: protocol.StatusAccepted}
			case *protocol.Update:
				meta = hd.ReplyMeta(protocol.TypeUpdateReply)
				reply = &protocol.UpdateReply{Meta: meta, Status: protocol.StatusApplied}
			default:
				s.env.fail(fmt.Errorf("node %s: unexpected %s", s.id, hd.Type))
				continue
			}
			env, err := s.ep.Seal(reply)
			if err != nil {
				s.env.fail(fmt.Errorf("node %s seal: %w", s.id, err))
				continue
			}
			if err := s.do(ctx, "POST", base, env, nil); err != nil {
				if ctx.Err() == nil {
					s.env.fail(fmt.Errorf("node %s reply: %w", s.id, err))
				}
				continue
			}
			// Count each message once: a resend (an acknowledgement slower than the agbot's
			// retry) is answered again but not counted again.
			switch msg.(type) {
			case *protocol.Proposal:
				if !s.gotProp {
					s.gotProp = true
					s.env.proposals.Add(1)
				}
			case *protocol.Update:
				if hd.Seq > s.lastUpd {
					s.lastUpd = hd.Seq
					now := time.Now().UnixNano()
					for {
						old := s.env.lastAck.Load()
						if old >= now || s.env.lastAck.CompareAndSwap(old, now) {
							break
						}
					}
					s.env.updates.Add(1)
				}
			}
		}
	}
}

// BenchmarkFanout: one agbot process (`agbot serve`, embedded secrets manager, HTTPS on
// loopback) and 1,000 or 10,000 simulated nodes, each long-polling on its own TLS connection
// from this process; one iteration writes a new value of the org-level secret every node's
// agreement uses, through the secure API, and waits for the last node's acknowledgement.
// Reported: time to the last acknowledgement, the agbot process's CPU per fan-out and its
// resident memory (from /proc), and the CPU the simulated nodes used on the same 2 cores.
//
//	go test -run '^$' -bench Fanout -benchtime 5x -timeout 60m ./bench/
func BenchmarkFanout(b *testing.B) {
	for _, nodes := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			e := newFanoutEnv(b, nodes)
			pid := e.agbot.Process.Pid
			var times []time.Duration
			var agbotCPU, nodesCPU time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				runtimeSettle()
				before, err := readProc(pid)
				if err != nil {
					b.Fatal(err)
				}
				selfBefore := selfCPU()
				target := e.updates.Load() + int64(nodes)
				stopProfile := func() {}
				if i == 0 {
					stopProfile = e.startProfile(b, fmt.Sprintf("fanout-%d", nodes), fanoutProfileSecs(nodes))
				}
				b.StartTimer()
				t0 := time.Now()
				e.putSecret(b, fmt.Sprintf("CANARY-bench-fanout-%d-%d", nodes, time.Now().UnixNano()))
				e.waitCount(b, &e.updates, target, 10*time.Minute, "updates acknowledged")
				b.StopTimer()
				stopProfile()
				times = append(times, time.Unix(0, e.lastAck.Load()).Sub(t0))
				after, err := readProc(pid)
				if err != nil {
					b.Fatal(err)
				}
				agbotCPU += after.CPU - before.CPU
				nodesCPU += selfCPU() - selfBefore
			}
			ps, err := readProc(pid)
			if err != nil {
				b.Fatal(err)
			}
			d := NewDist(times, "ms")
			res := FanoutResult{Nodes: nodes, ToLastAck: d,
				AgbotCPU:    round3((agbotCPU / time.Duration(b.N)).Seconds()),
				AgbotRSSMiB: round3(float64(ps.RSSKiB) / 1024), AgbotHWMMiB: round3(float64(ps.HWM) / 1024),
				NodesCPU: round3((nodesCPU / time.Duration(b.N)).Seconds()),
				Note: fmt.Sprintf("agbot RSS with every node connected and idle before the first fan-out: %.0f MiB; %d threads, %d open files; setup %v; %d node errors retried during the fan-outs",
					float64(e.idleRSS)/1024, ps.Threads, ps.FDs, e.setup.Round(time.Second), e.errs.Load())}
			if n := e.errs.Load(); n > 0 {
				b.Logf("%d errors between the nodes and the agbot during the fan-outs (retried), first: %s", n, e.firstErrString())
			}
			b.ReportMetric(d.Median/1000, "s-to-last-ack")
			b.ReportMetric(res.AgbotCPU, "agbot-cpu-s/op")
			b.ReportMetric(res.AgbotRSSMiB, "agbot-rss-MiB")
			b.ReportMetric(res.NodesCPU, "nodes-cpu-s/op")
			record(b, func(r *Results) {
				r.Fanout = slices.DeleteFunc(r.Fanout, func(f FanoutResult) bool { return f.Nodes == nodes })
				r.Fanout = append(r.Fanout, res)
			})
		})
	}
}

func (e *fanoutEnv) putSecret(b *testing.B, v string) {
	body, _ := json.Marshal(map[string]string{"key": "k", "value": v})
	req, err := http.NewRequest("PUT", e.url+"/org/bench/secrets/db", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.SetBasicAuth(fanoutOrg+"/admin", "adminpw")
	resp, err := e.admin.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		b.Fatalf("PUT secret = %d %s", resp.StatusCode, raw)
	}
}

// backoff is the agent's reconnect backoff (agent/loop.go): 500 ms doubling up to 30 s,
// jittered over its upper half so that thousands of nodes do not come back in step.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// fanoutProfileSecs covers one fan-out of n nodes (ANAX_FANOUT_PROFILE_SECS overrides).
func fanoutProfileSecs(n int) int {
	if s, err := strconv.Atoi(os.Getenv("ANAX_FANOUT_PROFILE_SECS")); err == nil && s > 0 {
		return s
	}
	return max(2, n/1000)
}

// runtimeSettle lets the previous round's stragglers (resends, GC) finish.
func runtimeSettle() { time.Sleep(time.Second) }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
