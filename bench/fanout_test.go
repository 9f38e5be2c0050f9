package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
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
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

const fanoutOrg = "bench"

// fanoutStore is where the agbots of a fan-out keep their state: the bbolt file, or one
// PostgreSQL database shared by one or two agbot processes (README, "Several agbots on one
// database").
type fanoutStore struct {
	name   string
	pg     bool
	agbots int
}

var fanoutStoreList = []fanoutStore{{"bbolt", false, 1}, {"postgres", true, 1}, {"postgres-2agbots", true, 2}}

// fanoutStores are the stores measured: all, or ANAX_FANOUT_STORES (a comma list of
// bbolt, postgres, postgres-2agbots).
func fanoutStores(b *testing.B) []fanoutStore {
	v := os.Getenv("ANAX_FANOUT_STORES")
	if v == "" {
		return fanoutStoreList
	}
	var out []fanoutStore
	for _, f := range strings.Split(v, ",") {
		i := slices.IndexFunc(fanoutStoreList, func(s fanoutStore) bool { return s.name == strings.TrimSpace(f) })
		if i < 0 {
			b.Fatalf("ANAX_FANOUT_STORES=%q: want bbolt, postgres or postgres-2agbots, separated by commas", v)
		}
		out = append(out, fanoutStoreList[i])
	}
	return out
}

// agbotProc is one `agbot serve` process of a fan-out, restarted on the same arguments and
// address after a kill -9.
type agbotProc struct {
	dir  string // its data dir
	args []string
	cmd  *exec.Cmd
	addr string // host:port of its API
}

// fanoutEnv is one or two agbot processes with n registered nodes, each simulated in this
// process by a goroutine that long-polls over its own TLS connection and acknowledges what
// it gets; with two agbots the nodes alternate between their addresses (the standby forwards
// to the agbot holding the lease). It lives across the runs of one benchmark (testing runs a
// benchmark with b.N=1 first).
type fanoutEnv struct {
	key     string
	store   fanoutStore
	nodes   int
	dir     string // the agbots' data dirs, their logs, the database password
	agbots  []*agbotProc
	url     string      // the first agbot's, where the admin writes
	pgPort  string      // the PostgreSQL server's port, "" on bbolt
	tlsConf *tls.Config // shared by every simulated node: roots and TLS session cache
	admin   *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sim     []*simNode

	proposals atomic.Int64 // proposals acknowledged (first time each)
	updates   atomic.Int64 // updates acknowledged (first time each)
	errs      atomic.Int64
	firstErr  atomic.Pointer[string]
	setup     time.Duration
	baseRSS   int64 // KiB, agbot started, no node connected yet
	idleRSS   int64 // KiB, every node connected and idle, before the first fan-out
	setupHWM  int64 // KiB, the agbots' peak resident set up to the first fan-out (the set-up's herd)
	pprofURL  string
	logs      []*os.File
	kill      *KillResult
	closed    bool
	keep      bool // a wait failed, or ANAX_FANOUT_KEEP is set: close keeps dir (the agbots' logs)
	// piggyback: a node's last reply to a poll's messages is also its next long-poll, as the
	// agent's (ANAX_FANOUT_PIGGYBACK=0: a reply, then a poll, as agents before it).
	piggyback bool
}

var fanoutEnvs = map[string]*fanoutEnv{}

// profileDir (ANAX_FANOUT_PROFILE=DIR) makes the benchmark record the agbot's CPU profile
// during the first measured fan-out, its heap profile after it and its MemStats and heap
// 40 s after the last fan-out (rested-STORE-N.*), in DIR.
var profileDir = os.Getenv("ANAX_FANOUT_PROFILE")

func (e *fanoutEnv) fail(err error) {
	e.errs.Add(1)
	s := err.Error()
	e.firstErr.CompareAndSwap(nil, &s)
}

// failNode is fail for one node's error, which the node also keeps as its last (named when
// a wait for its acknowledgement times out).
func (s *simNode) fail(err error) {
	s.env.fail(err)
	msg := time.Now().UTC().Format("15:04:05.000 ") + err.Error()
	s.lastErr.Store(&msg)
}

// raiseFileLimit lifts this process's RLIMIT_NOFILE to its hard limit (the agbot inherits
// it) and checks that n connections fit on both ends.
func raiseFileLimit(b *testing.B, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	need := uint64(n) + 512
	if lim.Max < need {
		// Raising the hard limit needs CAP_SYS_RESOURCE (containers often lack it).
		want := lim
		want.Cur, want.Max = need, need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			b.Fatalf("%d nodes need RLIMIT_NOFILE >= %d in this process and in the agbot (one connection each end); the hard limit here is %d and raising it failed: %v",
				n, need, lim.Max, err)
		}
		return
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
}

func fanoutKey(st fanoutStore, nodes int) string { return fmt.Sprintf("%s/%d", st.name, nodes) }

// newFanoutEnv prepares the state in process (cheap password hashes, so that 10,000 node
// tokens do not cost 10,000 argon2id runs), then serves it with the agbot binary: on pg (nil
// for bbolt), in a database of its own, by one or two agbots (the second one on a copy of the
// first one's data dir, as the README says).
func newFanoutEnv(b *testing.B, st fanoutStore, pg *postgrestest.Server, nodes int) *fanoutEnv {
	key := fanoutKey(st, nodes)
	if e := fanoutEnvs[key]; e != nil {
		return e
	}
	raiseFileLimit(b, nodes) // each agbot holds at most every node's connection (the lease holder: its own and the forwarded ones)
	start := time.Now()
	dir, err := os.MkdirTemp("", "anax-bench-fanout-")
	if err != nil {
		b.Fatal(err)
	}
	e := &fanoutEnv{key: key, store: st, nodes: nodes, dir: dir, keep: os.Getenv("ANAX_FANOUT_KEEP") != "",
		piggyback: os.Getenv("ANAX_FANOUT_PIGGYBACK") != "0"}
	fanoutEnvs[key] = e
	onExit(e.close)
	var db agbot.DBOptions
	common := []string{"--max-conns", strconv.Itoa(nodes + 1024)}
	if pg != nil {
		db = agbot.DBOptions{URL: pg.NewDatabase(b), Password: pg.Password}
		_, e.pgPort, _ = net.SplitHostPort(pg.Addr)
		common = append(common, "--db", db.URL, "--db-password-file", pg.PasswordFile(b, dir))
	}
	if profileDir != "" {
		common = append(common, "--metrics-listen", "127.0.0.1:0", "--debug-pprof")
	}
	if v := os.Getenv("ANAX_FANOUT_INFLIGHT"); v != "" {
		common = append(common, "--max-in-flight", v)
	}
	if os.Getenv("ANAX_FANOUT_TRIM") == "0" {
		common = append(common, "--memory-trim=false")
	}
	first := filepath.Join(dir, "agbot0")
	keys, info := prepareFanoutState(b, first, db, nodes)
	for i := range st.agbots {
		p := &agbotProc{dir: filepath.Join(dir, fmt.Sprintf("agbot%d", i))}
		if i > 0 {
			if out, err := exec.Command("cp", "-a", first, p.dir).CombinedOutput(); err != nil {
				b.Fatalf("cp: %v: %s", err, out)
			}
		}
		p.args = append([]string{"serve", "--data-dir", p.dir, "--listen", "127.0.0.1:0"}, common...)
		e.startAgbot(b, p)
		// Restarts (kill -9) listen where the first start did: the nodes know its address.
		p.args[4] = p.addr
		e.agbots = append(e.agbots, p)
	}
	e.url = "https://" + e.agbots[0].addr
	pem, err := os.ReadFile(filepath.Join(first, agbot.CertFile))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	e.tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: "127.0.0.1",
		ClientSessionCache: tls.NewLRUClientSessionCache(nodes)}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = e.tlsConf
	e.admin = &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	if ps, err := e.readProcs(); err == nil {
		e.baseRSS = ps.RSSKiB
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	for i := range nodes {
		s := &simNode{env: e, i: i, id: nodeName(i),
			auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(fanoutOrg+"/"+nodeName(i)+":tok-"+nodeName(i))),
			ep:   &protocol.Endpoint{ID: fanoutOrg + "/" + nodeName(i), Keys: keys[i], Peers: protocol.StaticKeyRing{info.ID: info.PublicKeys}, Agreements: &protocol.AgreementKeyMap{}}}
		e.sim = append(e.sim, s)
		e.wg.Go(func() { s.run(e.ctx) })
	}
	e.waitCount(b, &e.proposals, int64(nodes), 20*time.Minute, "proposals acknowledged", func(s *simNode) bool { return s.propCounted.Load() })
	e.setup = time.Since(start)
	// 10,000 nodes connecting at once is a herd: some are answered 503 (password checks
	// saturated) and retry with the agent's backoff. Only the errors during the measured
	// fan-outs are reported.
	b.Logf("%s, %d nodes: setup (state, agbot process, every proposal acknowledged) took %v; %d poll/reply errors retried, first: %s",
		st.name, nodes, e.setup.Round(time.Millisecond), e.errs.Load(), e.firstErrString())
	e.errs.Store(0)
	e.firstErr.Store(nil)
	e.measureIdle(b, fmt.Sprintf("idle-%s-%d", st.name, nodes))
	return e
}

// measureIdle takes the idle RSS, every node long-polling, a second after the set-up;
// ANAX_FANOUT_SETTLE samples it longer and ANAX_FANOUT_PROFILE saves the idle heap (after a
// GC), goroutines and MemStats as DIR/name.*.
func (e *fanoutEnv) measureIdle(b *testing.B, name string) {
	runtimeSettle()
	if ps, err := e.readProcs(); err == nil {
		e.idleRSS = ps.RSSKiB
	}
	e.logSettling(b)
	if profileDir != "" && e.pprofURL != "" {
		e.saveProfile(b, "heap?gc=1", name+".heap.pprof")
		e.saveProfile(b, "goroutine?debug=1", name+".goroutines.txt")
		e.saveProfile(b, "heap?debug=1", name+".memstats.txt") // ends with runtime.MemStats
	}
}

// logSettling (ANAX_FANOUT_SETTLE=DURATION) samples the idle agbot's RSS every 5 s for that
// long after the 1 s settle the idle figure is taken at, and logs them: how much of the
// memory the connection herd left behind the Go runtime gives back, and when.
func (e *fanoutEnv) logSettling(b *testing.B) {
	d, err := time.ParseDuration(os.Getenv("ANAX_FANOUT_SETTLE"))
	if err != nil || d <= 0 {
		return
	}
	var samples []string
	for t := time.Duration(0); t <= d; t += 5 * time.Second {
		if ps, err := e.readProcs(); err == nil {
			samples = append(samples, fmt.Sprintf("%v: %d MiB", t, ps.RSSKiB>>10))
		}
		time.Sleep(5 * time.Second)
	}
	b.Logf("idle agbot RSS after the settle: %s", strings.Join(samples, ", "))
}

// prepareFanoutState makes the agbot's state in process: a secret, a service, n registered
// nodes with keys of their own, and a policy that proposes to all of them. On PostgreSQL the
// in-process agbot serves (holds the fleet's lease) while it prepares, and gives the lease up
// before the agbot processes start.
func prepareFanoutState(b *testing.B, dir string, db agbot.DBOptions, nodes int) ([]*protocol.PrivateKeys, api.AgbotInfo) {
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: fanoutOrg, Admin: "admin", Password: "adminpw", Hash: access.CheapParams, DB: db}); err != nil {
		b.Fatal(err)
	}
	srv, err := agbot.Open(agbot.Options{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hash: access.CheapParams, DB: db})
	if err != nil {
		b.Fatal(err)
	}
	if db.URL != "" {
		serveUntilLeading(b, srv)
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
	// On PostgreSQL the engine is the lease holder's and not exported: the nodes' proposals
	// are counted when they arrive.
	if srv.Engine != nil && srv.Engine.Pending() != nodes {
		b.Fatalf("after publishing the policy %d proposals are queued, want %d", srv.Engine.Pending(), nodes)
	}
	var info api.AgbotInfo
	_ = json.Unmarshal(call("", "GET", "/agbot", nil, 200), &info)
	if err := srv.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	return keys, info
}

// serveUntilLeading serves srv on a loopback port in this process until it holds the
// fleet's lease (at once on a database no agbot serves).
func serveUntilLeading(b *testing.B, srv *agbot.Server) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	for start := time.Now(); !srv.Leading(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			b.Fatal("the in-process agbot never took the fleet's lease")
		}
	}
}

// dbCPU is the CPU the PostgreSQL server on port used so far: its postmaster (a child of
// this process, see test/postgrestest), the postmaster's live processes (backends, writers)
// and those that exited. Zero on bbolt.
func dbCPU(port string) time.Duration {
	if port == "" {
		return 0
	}
	type stat struct {
		ppid            int
		own, exitedKids time.Duration
	}
	procs := map[int]stat{}
	master := 0
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		str := string(raw)
		f := strings.Fields(str[strings.LastIndexByte(str, ')')+2:])
		ticks := func(i int) time.Duration {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			return time.Duration(n) * time.Second / 100 // USER_HZ
		}
		ppid, _ := strconv.Atoi(f[1])
		procs[pid] = stat{ppid: ppid, own: ticks(11) + ticks(12), exitedKids: ticks(13) + ticks(14)}
		if ppid == os.Getpid() {
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmd, []byte("\x00port="+port+"\x00")) {
				master = pid
			}
		}
	}
	if master == 0 {
		return 0
	}
	total := procs[master].own + procs[master].exitedKids
	for _, p := range procs {
		if p.ppid == master {
			total += p.own + p.exitedKids
		}
	}
	return total
}

// readProcs sums the agbot processes' figures (CPU, resident memory, threads, files).
func (e *fanoutEnv) readProcs() (procStat, error) {
	var sum procStat
	for _, p := range e.agbots {
		ps, err := readProc(p.cmd.Process.Pid)
		if err != nil {
			return sum, err
		}
		sum.CPU += ps.CPU
		sum.RSSKiB += ps.RSSKiB
		sum.HWM += ps.HWM
		sum.FileKiB += ps.FileKiB
		sum.Threads += ps.Threads
		sum.FDs += ps.FDs
	}
	return sum, nil
}

// startAgbot starts `agbot serve` on the state, as an operator runs it, and waits until it
// says where it listens.
func (e *fanoutEnv) startAgbot(b *testing.B, p *agbotProc) {
	logf, err := os.OpenFile(filepath.Join(e.dir, filepath.Base(p.dir)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	// Open while the agbot runs: its stderr is copied there (a closed file would cut the
	// pipe, and the agbot would die of SIGPIPE at its next log line).
	e.logs = append(e.logs, logf)
	cmd := exec.Command(binary(b, "agbot"), p.args...)
	if v := os.Getenv("ANAX_FANOUT_GOMEMLIMIT"); v != "" {
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+v) // the agbot's soft memory limit only
	}
	cmd.Stdout = logf
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logf, pw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p.cmd = cmd
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
		p.addr = a
	case <-time.After(5 * time.Minute):
		b.Fatal("agbot serve did not say where it listens")
	}
}

func (e *fanoutEnv) close() {
	if e.closed {
		return
	}
	e.closed = true
	if e.cancel != nil {
		e.cancel()
	}
	for _, s := range e.sim {
		s.closeConn()
	}
	for _, p := range e.agbots {
		p.stop()
	}
	e.wg.Wait()
	for _, f := range e.logs {
		f.Close()
	}
	if e.keep {
		fmt.Fprintf(os.Stderr, "fan-out %s: the agbots' logs are kept in %s\n", e.key, e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

func (p *agbotProc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// waitCount waits until c reaches want. On a timeout it names the nodes that have not
// counted yet (done says which have), with what each has seen and its last error, and keeps
// the agbots' logs.
func (e *fanoutEnv) waitCount(b *testing.B, c *atomic.Int64, want int64, timeout time.Duration, what string, done func(*simNode) bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for c.Load() < want {
		if time.Now().After(deadline) {
			e.keep = true
			b.Fatalf("%d of %d %s after %v; %d errors, first: %v; nodes not counted: %s", c.Load(), want, what, timeout, e.errs.Load(), e.firstErrString(), e.missing(done))
		}
		time.Sleep(time.Millisecond)
	}
}

// missing describes the first nodes for which done is false.
func (e *fanoutEnv) missing(done func(*simNode) bool) string {
	var out []string
	for _, s := range e.sim {
		if done(s) {
			continue
		}
		if len(out) == 5 {
			out = append(out, "...")
			break
		}
		last := "none"
		if p := s.lastErr.Load(); p != nil {
			last = *p
		}
		out = append(out, fmt.Sprintf("%s (source %v, agbot %s: proposal counted %v, updates %d, poll cursor %d, last error %s)",
			s.id, sourceIP(s.i), e.agbots[s.i%len(e.agbots)].addr, s.propCounted.Load(), s.acked.Load(), s.cursor.Load(), last))
	}
	return strings.Join(out, "; ")
}

// ackedAll says whether a node has acknowledged every update up to the fleet's total target.
func (e *fanoutEnv) ackedAll(target int64) func(*simNode) bool {
	return func(s *simNode) bool { return s.acked.Load() >= target/int64(e.nodes) }
}

// checkEveryNode fails unless every node has acknowledged exactly `updates` updates.
func (e *fanoutEnv) checkEveryNode(b *testing.B, updates int64) {
	b.Helper()
	var short []string
	for _, s := range e.sim {
		if n := s.acked.Load(); n != updates {
			short = append(short, fmt.Sprintf("%s: %d", s.id, n))
		}
	}
	if len(short) > 0 {
		b.Fatalf("%d of %d nodes did not acknowledge each of the %d updates exactly once (first: %v)", len(short), e.nodes, updates, short[:min(5, len(short))])
	}
}

func (e *fanoutEnv) firstErrString() string {
	if p := e.firstErr.Load(); p != nil {
		return *p
	}
	return "none"
}

func nodeName(i int) string { return fmt.Sprintf("n%06d", i) }

// simNode is one node: its own keys, credentials and TLS connection, on which it polls,
// opens, answers and polls again. Nodes are light so that 100,000 fit in this process: one
// goroutine, one connection with a 4 KiB read buffer, requests written by hand; the TLS
// configuration (roots, session cache) is shared.
type simNode struct {
	env     *fanoutEnv
	i       int
	id      string
	auth    string // Authorization header value
	ep      *protocol.Endpoint
	after   uint64
	lastUpd uint64
	gotProp bool
	acked   atomic.Int64 // distinct updates acknowledged
	// For a timed-out wait's report (read from another goroutine): the poll cursor, whether
	// the proposal was counted, the last error.
	cursor      atomic.Uint64
	propCounted atomic.Bool
	lastErr     atomic.Pointer[string]

	mu   sync.Mutex
	conn *tls.Conn
	br   *bufio.Reader
	wbuf []byte
}

// sourceIP spreads nodes over loopback source addresses, 20,000 each: one address has
// some 28,000 ephemeral ports towards one listener.
func sourceIP(i int) net.IP { return net.IPv4(127, 0, byte(1+i/(20000*254)), byte(1+i/20000%254)) }

func (s *simNode) closeConn() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.br = nil, nil
	}
}

func (s *simNode) current() (*tls.Conn, *bufio.Reader) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.br
}

func (s *simNode) dial(ctx context.Context) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: sourceIP(s.i)}, Timeout: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.env.agbots[s.i%len(s.env.agbots)].addr)
	if err != nil {
		return err
	}
	c := tls.Client(raw, s.env.tlsConf)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		return err
	}
	s.mu.Lock()
	s.conn, s.br = c, bufio.NewReaderSize(c, 4096)
	s.mu.Unlock()
	if ctx.Err() != nil { // close() may have run before the connection was known
		s.closeConn()
	}
	return nil
}

// do sends one request on the node's connection (dialling it first when needed) and reads
// the answer; a failed exchange drops the connection.
func (s *simNode) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	c, br := s.current()
	if c == nil {
		if err := s.dial(ctx); err != nil {
			return nil, err
		}
		if c, br = s.current(); c == nil {
			return nil, context.Canceled
		}
	}
	s.wbuf = fmt.Appendf(s.wbuf[:0], "%s %s HTTP/1.1\r\nHost: agbot\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n", method, path, s.auth, len(body))
	s.wbuf = append(s.wbuf, body...)
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	out, keep, code, err := exchange(c, br, s.wbuf)
	if err != nil || !keep {
		s.closeConn()
	}
	if err != nil {
		return nil, err
	}
	if code/100 != 2 {
		return nil, &statusErr{code: code, msg: fmt.Sprintf("%s %s: %d %s", method, path, code, out)}
	}
	return out, nil
}

func exchange(c net.Conn, br *bufio.Reader, req []byte) ([]byte, bool, int, error) {
	if _, err := c.Write(req); err != nil {
		return nil, false, 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, false, 0, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return raw, err == nil && !resp.Close, resp.StatusCode, err
}

type statusErr struct {
	code int
	msg  string
}

func (e *statusErr) Error() string { return e.msg }

func (s *simNode) run(ctx context.Context) {
	base := "/org/" + fanoutOrg + "/nodes/" + s.id + "/msgs"
	failures := 0
	var next []api.Message // answered by the last reply, which was also the next poll
	for ctx.Err() == nil {
		msgs := next
		if msgs == nil {
			raw, err := s.do(ctx, "GET", base+s.pollQuery(), nil)
			var out api.Messages
			if err == nil {
				err = json.Unmarshal(raw, &out)
			}
			if err != nil {
				if ctx.Err() == nil {
					s.fail(fmt.Errorf("node %s poll: %w", s.id, err))
					failures++
					sleepCtx(ctx, backoff(failures))
				}
				continue
			}
			failures, msgs = 0, out.Messages
		}
		next = nil
		for _, m := range msgs {
			s.after = max(s.after, m.ID)
			s.cursor.Store(s.after)
		}
		for i, m := range msgs {
			last := i == len(msgs)-1 && s.env.piggyback
			if got, polled := s.answer(ctx, base, m.Type, m.Envelope, last); polled {
				next = got
			}
		}
	}
}

func (s *simNode) pollQuery() string { return "?wait=50&after=" + strconv.FormatUint(s.after, 10) }

// answer opens one message and acknowledges it as the agent does (a reply is signed only).
// With poll, the reply is also the next long-poll; polled reports that it was, with its
// messages.
func (s *simNode) answer(ctx context.Context, base, typ string, envelope []byte, poll bool) (next []api.Message, polled bool) {
	msg, err := s.ep.Open(envelope)
	if err != nil {
		s.fail(fmt.Errorf("node %s open %s: %w", s.id, typ, err))
		return nil, false
	}
	hd := msg.Head()
	var reply protocol.Message
	switch msg.(type) {
	case *protocol.Proposal:
		reply = &protocol.ProposalReply{Meta: hd.ReplyMeta(protocol.TypeProposalReply), Status: protocol.StatusAccepted}
	case *protocol.Update:
		reply = &protocol.UpdateReply{Meta: hd.ReplyMeta(protocol.TypeUpdateReply), Status: protocol.StatusApplied}
	default:
		s.fail(fmt.Errorf("node %s: unexpected %s", s.id, hd.Type))
		return nil, false
	}
	env, err := s.ep.Wrap(reply)
	if err != nil {
		s.fail(fmt.Errorf("node %s wrap: %w", s.id, err))
		return nil, false
	}
	path := base
	if poll {
		path += s.pollQuery()
	}
	// Counted as it is sent: a reply that is also the next poll is answered only when that
	// poll is. When the agbot recorded each acknowledgement, and that it recorded every one,
	// is read from its rollout (agbotAcks): a reply it refused never shows there, and the
	// benchmark fails.
	s.count(msg, hd)
	raw, ok := s.post(ctx, path, env)
	if !ok {
		return nil, false
	}
	if poll && len(raw) > 0 { // empty: 204 from an agbot that does not poll on a reply
		var out api.Messages
		if err := json.Unmarshal(raw, &out); err != nil {
			s.fail(fmt.Errorf("node %s reply and poll: %w", s.id, err))
			return nil, false
		}
		return out.Messages, true
	}
	return nil, false
}

// count counts each message once: a resend (an acknowledgement slower than the agbot's
// retry, or lost in a crash) is answered again but not counted again.
func (s *simNode) count(msg protocol.Message, hd *protocol.Meta) {
	switch msg.(type) {
	case *protocol.Proposal:
		if !s.gotProp {
			s.gotProp = true
			s.propCounted.Store(true)
			s.env.proposals.Add(1)
		}
	case *protocol.Update:
		if hd.Seq > s.lastUpd {
			s.lastUpd = hd.Seq
			s.acked.Add(1)
			s.env.updates.Add(1)
		}
	}
}

// post delivers a reply, again after a failed exchange (connection cut, agbot killed): the
// answer to "was it recorded" may be what got lost, and the agbot does not offer a message
// again once it has recorded its acknowledgement. 409 means recorded before.
func (s *simNode) post(ctx context.Context, path string, env []byte) ([]byte, bool) {
	for attempt := 1; ctx.Err() == nil; attempt++ {
		raw, err := s.do(ctx, "POST", path, env)
		var se *statusErr
		switch {
		case err == nil:
			return raw, true
		case errors.As(err, &se) && se.code == http.StatusConflict:
			return nil, true
		case errors.As(err, &se) && se.code != http.StatusServiceUnavailable && se.code != http.StatusTooManyRequests:
			s.fail(fmt.Errorf("node %s reply refused: %w", s.id, err))
			return nil, false
		}
		s.fail(fmt.Errorf("node %s reply: %w", s.id, err))
		sleepCtx(ctx, backoff(attempt))
	}
	return nil, false
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fanoutNodes are the fleet sizes measured: 1,000 and 10,000, or ANAX_FANOUT_NODES (a comma
// list, e.g. 100000: needs RLIMIT_NOFILE above the count in this process and the agbot).
func fanoutNodes(b *testing.B) []int {
	v := os.Getenv("ANAX_FANOUT_NODES")
	if v == "" {
		return []int{1000, 10000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("ANAX_FANOUT_NODES=%q: want node counts separated by commas", v)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkFanout: one agbot process (`agbot serve`, embedded secrets manager, HTTPS on
// loopback) and 1,000 or 10,000 simulated nodes (ANAX_FANOUT_NODES for others), each
// long-polling on its own TLS connection from this process; one iteration writes a new value
// of the org-level secret every node's agreement uses, through the secure API, and waits
// for the last node's acknowledgement, then checks that every node acknowledged it once.
// Reported: time to the last acknowledgement; the agbot process's CPU per node per update,
// resident memory, and resident memory per idle long-poll (from /proc); the CPU the
// simulated nodes used on the same cores. After the measured fan-outs one more is
// interrupted by a kill -9 of the agbot once half the nodes have acknowledged; the agbot
// restarts on the same state and every node must still acknowledge (ANAX_FANOUT_KILL=0
// skips it; ANAX_FANOUT_KEEP=1 keeps the agbots' logs). Each fleet size runs on each store
// (ANAX_FANOUT_STORES picks some): the bbolt file; PostgreSQL with one agbot; PostgreSQL
// with two agbots, the nodes alternating between their addresses, where the kill -9 hits
// the lease holder. PostgreSQL is a server of
// test/postgrestest (skipped without one, failed with CI=true as make bench sets).
//
//	go test -run '^$' -bench Fanout -benchtime 5x -timeout 180m ./bench/
//	ANAX_FANOUT_NODES=1000 go test -run '^$' -bench 'Fanout/store=postgres-2agbots' -benchtime 2x ./bench/
func BenchmarkFanout(b *testing.B) {
	for _, st := range fanoutStores(b) {
		b.Run("store="+st.name, func(b *testing.B) {
			var pg *postgrestest.Server
			if st.pg {
				pg = postgrestest.Start(b) // one server for the store's fleet sizes, a database each
			}
			for _, nodes := range fanoutNodes(b) {
				b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { benchFanout(b, st, pg, nodes) })
				// testing has run this fleet's benchmark for the last time: free its processes
				// and connections before the next fleet.
				if e := fanoutEnvs[fanoutKey(st, nodes)]; e != nil {
					e.close()
					delete(fanoutEnvs, e.key)
				}
			}
		})
	}
}

func benchFanout(b *testing.B, st fanoutStore, pg *postgrestest.Server, nodes int) {
	e := newFanoutEnv(b, st, pg, nodes)
	var times []time.Duration
	var agbotCPU, nodesCPU, pgCPU time.Duration
	if e.setupHWM == 0 {
		ps, err := e.readProcs()
		if err != nil {
			b.Fatal(err)
		}
		e.setupHWM = ps.HWM
	}
	// The fan-outs start from a rested agbot, as in a fleet that is idle between changes
	// (the set-up's herd, or the restart after the last run's kill -9, given back), and
	// from here VmHWM is their peak.
	time.Sleep(restAfter)
	e.resetHWM(b)
	var hwm int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		runtimeSettle()
		before, err := e.readProcs()
		if err != nil {
			b.Fatal(err)
		}
		selfBefore, pgBefore := selfCPU(), dbCPU(e.pgPort)
		target := e.updates.Load() + int64(nodes)
		stopProfile := func() {}
		if i == 0 {
			stopProfile = e.startProfile(b, fmt.Sprintf("fanout-%s-%d", st.name, nodes), fanoutProfileSecs(nodes))
		}
		b.StartTimer()
		t0 := time.Now()
		e.putSecret(b, fmt.Sprintf("CANARY-bench-fanout-%d-%d", nodes, time.Now().UnixNano()))
		e.waitCount(b, &e.updates, target, 10*time.Minute, "updates acknowledged", e.ackedAll(target))
		last := e.agbotAcks(b)
		b.StopTimer()
		times = append(times, last.Sub(t0))
		after, err := e.readProcs()
		if err != nil {
			b.Fatal(err)
		}
		stopProfile()
		e.checkEveryNode(b, target/int64(nodes))
		agbotCPU += after.CPU - before.CPU
		nodesCPU += selfCPU() - selfBefore
		pgCPU += dbCPU(e.pgPort) - pgBefore
		hwm = max(hwm, after.HWM)
	}
	ps, err := e.readProcs()
	if err != nil {
		b.Fatal(err)
	}
	res := e.result(b, times, agbotCPU, nodesCPU, ps, hwm)
	res.RestedRSSMiB, res.RestedFileMiB = e.restedRSS(b)
	if e.pgPort != "" {
		res.DBCPUPerNode = round3(float64(pgCPU/time.Duration(len(times))) / float64(time.Millisecond) / float64(nodes))
		b.ReportMetric(res.DBCPUPerNode, "postgres-cpu-ms/node")
	}
	if e.kill == nil && os.Getenv("ANAX_FANOUT_KILL") != "0" {
		e.kill = e.killedFanout(b) // once per fleet: testing runs the benchmark twice
	}
	res.Kill = e.kill
	b.ReportMetric(res.ToLastAck.Median/1000, "s-to-last-ack")
	b.ReportMetric(res.AgbotCPUPerNode, "agbot-cpu-ms/node")
	b.ReportMetric(res.AgbotHWMMiB, "agbot-peak-rss-MiB")
	b.ReportMetric(res.FanoutHWMMiB, "fanout-peak-rss-MiB")
	b.ReportMetric(res.RestedRSSMiB, "rested-rss-MiB")
	b.ReportMetric(res.IdleKiBPerPoll, "idle-KiB/poll")
	b.ReportMetric(res.NodesCPU, "nodes-cpu-s/op")
	record(b, func(r *Results) {
		r.Fanout = slices.DeleteFunc(r.Fanout, func(f FanoutResult) bool { return f.Nodes == nodes && f.StoreName() == st.name })
		r.Fanout = append(r.Fanout, res)
	})
}

func (e *fanoutEnv) result(b *testing.B, times []time.Duration, agbotCPU, nodesCPU time.Duration, ps procStat, hwm int64) FanoutResult {
	n := time.Duration(len(times))
	d := NewDist(times, "ms")
	res := FanoutResult{Nodes: e.nodes, Store: e.store.name, Agbots: e.store.agbots, ToLastAck: d,
		AgbotCPU:        round3((agbotCPU / n).Seconds()),
		AgbotCPUPerNode: round3(float64(agbotCPU/n) / float64(time.Millisecond) / float64(e.nodes)),
		AgbotRSSMiB:     round3(float64(ps.RSSKiB) / 1024), AgbotHWMMiB: round3(float64(max(hwm, e.setupHWM)) / 1024),
		FanoutHWMMiB:   round3(float64(hwm) / 1024),
		IdleRSSMiB:     round3(float64(e.idleRSS) / 1024),
		IdleKiBPerPoll: round3(float64(e.idleRSS-e.baseRSS) / float64(e.nodes)),
		NodesCPU:       round3((nodesCPU / n).Seconds()),
		Note: fmt.Sprintf("agbot processes: %d (figures summed); agbot RSS before any node connected %.0f MiB, every node long-polling and idle %.0f MiB; %d threads, %d open files; setup %v; %d node errors retried during the fan-outs; every node acknowledged every update",
			len(e.agbots), float64(e.baseRSS)/1024, float64(e.idleRSS)/1024, ps.Threads, ps.FDs, e.setup.Round(time.Second), e.errs.Load())}
	if n := e.errs.Load(); n > 0 {
		b.Logf("%d errors between the nodes and the agbot during the fan-outs (retried), first: %s", n, e.firstErrString())
	}
	return res
}

// resetHWM resets the agbots' peak resident set (VmHWM) to their resident set now, by writing
// 5 to /proc/PID/clear_refs (Linux 4.0 or later), so that the peak read after the fan-outs is
// theirs and not the set-up's.
func (e *fanoutEnv) resetHWM(b *testing.B) {
	for _, p := range e.agbots {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0); err != nil {
			b.Fatalf("reset the agbot's peak RSS: %v", err)
		}
	}
}

// restedRSS waits restAfter after the last fan-out, every node still long-polling, and
// returns the agbots' resident set then and the file pages in it, MiB: what an idle agbot
// keeps once its trim (agbot/memtrim: a quiet 5 s, at most one trim per 30 s) gave the
// fan-outs' free heap back.
func (e *fanoutEnv) restedRSS(b *testing.B) (rss, file float64) {
	time.Sleep(restAfter)
	ps, err := e.readProcs()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("agbot RSS %v after the last fan-out: %d MiB, %d MiB of it file pages", restAfter, ps.RSSKiB>>10, ps.FileKiB>>10)
	if profileDir != "" && e.pprofURL != "" {
		name := fmt.Sprintf("rested-%s-%d", e.store.name, e.nodes)
		e.saveProfile(b, "heap?debug=1", name+".memstats.txt") // ends with runtime.MemStats
		e.saveProfile(b, "heap", name+".heap.pprof")
	}
	return round3(float64(ps.RSSKiB) / 1024), round3(float64(ps.FileKiB) / 1024)
}

const restAfter = 40 * time.Second

// killedFanout writes a new value, kills the (first) agbot with SIGKILL once half the nodes
// have acknowledged it, starts it again on the same state and address, and waits until every
// node has acknowledged the update exactly once. On PostgreSQL the killed agbot held the
// fleet's lease: the restarted one, or the second agbot, takes it over once it expires.
func (e *fanoutEnv) killedFanout(b *testing.B) *KillResult {
	runtimeSettle()
	target := e.updates.Load() + int64(e.nodes)
	t0 := time.Now()
	e.putSecret(b, fmt.Sprintf("CANARY-bench-fanout-kill-%d", time.Now().UnixNano()))
	e.waitCount(b, &e.updates, target-int64(e.nodes)/2, 10*time.Minute, "updates acknowledged before the kill", e.ackedAll(target))
	first := e.agbots[0]
	if err := first.cmd.Process.Kill(); err != nil {
		b.Fatal(err)
	}
	first.cmd.Wait()
	killed := time.Now()
	before := e.updates.Load() - (target - int64(e.nodes))
	e.errs.Store(0)
	e.startAgbot(b, first)
	e.waitCount(b, &e.updates, target, 10*time.Minute, "updates acknowledged after the agbot's kill -9 and restart", e.ackedAll(target))
	e.checkEveryNode(b, target/int64(e.nodes))
	last := e.agbotAcks(b)
	k := &KillResult{AckedBefore: before, Restart: round3(last.Sub(killed).Seconds()), Total: round3(last.Sub(t0).Seconds()),
		Errors: e.errs.Load()}
	b.Logf("kill -9 after %d of %d acknowledgements: every node acknowledged %.1f s after the kill (%.1f s after the write; %d node errors retried)",
		k.AckedBefore, e.nodes, k.Restart, k.Total, k.Errors)
	return k
}

// agbotAcks reads the secret's rollout from the agbot (the leader, through a standby's
// forwarding) until every node's agreement shows the current version acknowledged, and
// returns the latest time the agbot recorded an acknowledgement. Its first look waits 100 ms
// for the commits under way; the looks' CPU counts as the agbot's.
func (e *fanoutEnv) agbotAcks(b *testing.B) time.Time {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		time.Sleep(100 * time.Millisecond)
		last, missing, err := e.readAcks()
		if err == nil && missing == "" {
			return last
		}
		if time.Now().After(deadline) {
			e.keep = true
			b.Fatalf("the agbot's rollout does not show every node's acknowledgement a minute after the nodes sent them: %v%s", err, missing)
		}
	}
}

func (e *fanoutEnv) readAcks() (last time.Time, missing string, err error) {
	req, err := http.NewRequest("GET", e.url+"/org/bench/rollouts/db", nil)
	if err != nil {
		return last, "", err
	}
	req.SetBasicAuth(fanoutOrg+"/admin", "adminpw")
	resp, err := e.admin.Do(req)
	if err != nil {
		return last, "", err
	}
	defer resp.Body.Close()
	var ro engine.Rollout
	if err := json.NewDecoder(resp.Body).Decode(&ro); err != nil || resp.StatusCode != 200 {
		return last, "", fmt.Errorf("rollout: HTTP %d: %v", resp.StatusCode, err)
	}
	short := 0
	for _, n := range ro.Nodes {
		if n.Acked != ro.Current || n.AckedAt == nil {
			short++
			if missing == "" {
				missing = fmt.Sprintf("; first: %s at %s", n.Node, n.State)
			}
			continue
		}
		if n.AckedAt.After(last) {
			last = *n.AckedAt
		}
	}
	if short > 0 || len(ro.Nodes) != e.nodes {
		missing = fmt.Sprintf("%d of %d agreements without the current version acknowledged, %d listed%s", short, e.nodes, len(ro.Nodes), missing)
	}
	return last, missing, nil
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

// startProfile records the agbot's CPU profile for secs seconds into DIR/name; the returned
// function waits for it and then saves the heap profile. (The idle heap, after a GC, and the
// goroutines are saved before the first fan-out as idle-*.)
func (e *fanoutEnv) startProfile(b *testing.B, name string, secs int) func() {
	if profileDir == "" || e.pprofURL == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.saveProfile(b, fmt.Sprintf("profile?seconds=%d", secs), name+".cpu.pprof")
	}()
	return func() {
		<-done
		e.saveProfile(b, "heap", name+".heap.pprof")
	}
}

// saveProfile saves the agbot's /debug/pprof/WHAT into DIR/file.
func (e *fanoutEnv) saveProfile(b *testing.B, what, file string) {
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

// fanoutProfileSecs covers one fan-out of n nodes (ANAX_FANOUT_PROFILE_SECS overrides).
func fanoutProfileSecs(n int) int {
	if s, err := strconv.Atoi(os.Getenv("ANAX_FANOUT_PROFILE_SECS")); err == nil && s > 0 {
		return s
	}
	return max(5, n/500)
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

// runtimeSettle lets the previous round's stragglers (resends, GC) finish.
func runtimeSettle() { time.Sleep(time.Second) }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
