package agreement

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// The crash test runs the node side in a child process (this test binary, re-executed with
// crashChildEnv set) and kills it with SIGKILL at random instants of a stream of updates.
const crashChildEnv = "AGREEMENT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// childStatus is what the child prints when ready and when asked.
type childStatus struct {
	Ready   bool                         `json:"ready,omitempty"`
	Resyncs []uint64                     `json:"resyncs,omitempty"`
	Info    []Info                       `json:"info"`
	Files   map[string]map[string]string `json:"files"` // store id -> secret -> host path
	Error   string                       `json:"error,omitempty"`
}

// crashChild is the node side: it opens secretfs, the worker and the manager on the dirs in
// its environment, recovers, then answers one protocol message per stdin line with one reply
// line on stdout; the line "query" gets a childStatus. Logs go to stderr.
func crashChild() int {
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		out.Encode(childStatus{Error: err.Error()})
		return 1
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fs, err := secretfs.Open(secretfs.Options{Root: os.Getenv("CRASH_ROOT"), Logger: log})
	if err != nil {
		return fail(err)
	}
	w, err := container.NewFromEnv(container.Options{AllowHostUIDs: []int{1000}, AgentID: os.Getenv("CRASH_AGENT"), StopTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		return fail(err)
	}
	m, err := Open(Options{StateDir: os.Getenv("CRASH_STATE"), Stores: fs, Runner: w, Logger: log})
	if err != nil {
		return fail(err)
	}
	ctx := context.Background()
	rs, err := m.Recover(ctx)
	if err != nil {
		return fail(err)
	}
	status := func() childStatus {
		st := childStatus{Files: map[string]map[string]string{}}
		st.Info, _ = m.Agreements()
		stores, _ := fs.Stores()
		for _, s := range stores {
			st.Files[s.ID] = s.Files
		}
		return st
	}
	st := status()
	st.Ready = true
	for _, r := range rs {
		st.Resyncs = append(st.Resyncs, r.Seq)
	}
	out.Encode(st)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 4<<20)
	for in.Scan() {
		if in.Text() == "query" {
			out.Encode(status())
			continue
		}
		msg, err := protocol.Decode(in.Bytes())
		if err != nil {
			return fail(err)
		}
		var reply protocol.Message
		switch msg := msg.(type) {
		case *protocol.Proposal:
			reply = m.Propose(ctx, msg)
		case *protocol.Update:
			reply = m.Update(ctx, msg)
		case *protocol.Cancel:
			if reply, err = m.Cancel(ctx, msg); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("child: unexpected %T", msg))
		}
		b, err := protocol.Encode(reply)
		if err != nil {
			return fail(err)
		}
		os.Stdout.Write(append(b, '\n'))
	}
	m.Shutdown(ctx)
	fs.Close()
	w.Close()
	return 0
}

// child is a running node side seen from the test (the agbot's side of the wire).
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	status childStatus
}

// crashAgbot is the agbot: it numbers messages, keeps the latest values, and resends an
// update until it is acknowledged.
type crashAgbot struct {
	t        *testing.T
	seq      uint64
	acked    map[string]string // secret -> tag of the value acknowledged
	pending  *protocol.Update  // sent, not acknowledged
	pendTags map[string]string // the values of pending
	svc      protocol.Service
	id       string // the agreement, unique per run: container names are global in the engine
}

func (a *crashAgbot) meta(typ protocol.MessageType, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: typ, Agreement: a.id, From: agbotID, To: nodeID, Seq: seq, Time: time.Now().UTC()}
}

// latest is what the agbot holds now: acked values overlaid with the pending update's.
func (a *crashAgbot) latest() map[string]string {
	out := map[string]string{}
	for k, v := range a.acked {
		out[k] = v
	}
	for k, v := range a.pendTags {
		out[k] = v
	}
	return out
}

func (a *crashAgbot) newUpdate(names []string, full bool) *protocol.Update {
	a.seq++
	tag := fmt.Sprint(a.seq)
	u := &protocol.Update{Meta: a.meta(protocol.TypeUpdate, a.seq), Full: full, Secrets: map[string]protocol.ChangedSecret{}}
	tags := map[string]string{}
	for _, name := range names {
		t := tag
		if full {
			t = a.latest()[name]
		}
		u.Secrets[name] = protocol.ChangedSecret{SecretValue: values(t, name)[name], Reason: protocol.ReasonValueUpdated}
		tags[name] = t
	}
	// A full update carries what the agbot holds, pending values included.
	a.pendTags = mergeTags(a.pendTags, tags)
	a.pending = u
	return u
}

func (a *crashAgbot) ack() {
	a.acked = mergeTags(a.acked, a.pendTags)
	a.pending, a.pendTags = nil, nil
}

func mergeTags(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func TestCrashKill9(t *testing.T) {
	testenv.RequireRoot(t)
	cli := dockertest.Client(t)
	kills := 55
	if testing.Short() {
		kills = 10
	}
	image := dockertest.BuildImage(t, cli, dockertest.Image{Name: "anax-test-agreement", Program: realProgram,
		User: "1000:1000", Cmd: []string{"serve"}})
	b := make([]byte, 4)
	rand.Read(b)
	dir := t.TempDir()
	env := []string{crashChildEnv + "=1", "CRASH_ROOT=" + filepath.Join(dir, "secrets"),
		"CRASH_STATE=" + filepath.Join(dir, "state"), "CRASH_AGENT=test-crash-" + hex.EncodeToString(b)}
	childLogs := &syncbuf.Buffer{}
	root := filepath.Join(dir, "secrets")
	t.Cleanup(func() {
		ctx := context.Background()
		if w, err := container.NewFromEnv(container.Options{AllowHostUIDs: []int{1000}, AgentID: "test-crash-" + hex.EncodeToString(b), StopTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)}); err == nil {
			list, _ := w.List(ctx)
			for _, c := range list {
				w.Stop(ctx, c.InstanceID)
			}
			w.Close()
		}
		if fs, err := secretfs.Open(secretfs.Options{Root: root, Logger: slog.New(slog.DiscardHandler)}); err == nil {
			stores, _ := fs.Stores()
			for _, s := range stores {
				fs.Wipe(s.ID)
			}
			fs.Close()
		}
		linux.UnmountAll(root)
		scanForCanaries(t, filepath.Join(dir, "state"), childLogs.String())
	})

	start := func() *child {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stderr = childLogs
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &child{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
			close(c.lines)
		}()
		c.status = c.readStatus(t)
		if !c.status.Ready {
			t.Fatalf("child not ready: %+v", c.status)
		}
		return c
	}

	agbot := &crashAgbot{t: t, acked: map[string]string{}, id: "agr-crash-" + hex.EncodeToString(b)}
	agbot.svc = testService()
	agbot.svc.Arch = arch.Node()
	for name, c := range agbot.svc.Deployment.Services {
		c.Image = image
		agbot.svc.Deployment.Services[name] = c
	}

	// The proposal.
	c := start()
	agbot.seq = 1
	p := &protocol.Proposal{Meta: agbot.meta(protocol.TypeProposal, 1), Service: agbot.svc, Secrets: values("1")}
	if rep := c.send(t, p).(*protocol.ProposalReply); rep.Status != protocol.StatusAccepted {
		t.Fatalf("proposal: %s %q", rep.Status, rep.Reason)
	}
	for _, n := range secretNames {
		agbot.acked[n] = "1"
	}
	baseline := c.query(t)
	containers := fmt.Sprint(baseline.Info[0].Containers)
	// Mounts under the root: what the proposal made, plus at most one feed mount per secret
	// file once it was updated (secretfs covers the version each container started with).
	files := 0
	for _, fs := range baseline.Files {
		files += len(fs)
	}
	maxMounts := countMounts(t, root) + files

	var applyTime time.Duration
	var applied int
	outcomes := map[string]int{}
	for k := 0; k < kills; k++ {
		// 1. Converge: the agbot resends what was not acknowledged, and answers a resync.
		if agbot.pending != nil {
			switch rep := c.send(t, agbot.pending).(*protocol.UpdateReply); rep.Status {
			case protocol.StatusApplied, protocol.StatusDuplicate:
				agbot.ack()
			default:
				t.Fatalf("kill %d: redelivered update %d: %s %q", k, rep.Seq, rep.Status, rep.Reason)
			}
		}
		if len(c.status.Resyncs) > 0 {
			if rep := c.send(t, agbot.newUpdate(secretNames, true)).(*protocol.UpdateReply); rep.Status != protocol.StatusApplied {
				t.Fatalf("kill %d: resync answer: %s %q", k, rep.Status, rep.Reason)
			}
			agbot.ack()
		}
		st := c.query(t)
		checkConverged(t, k, st, agbot)
		if got := fmt.Sprint(st.Info[0].Containers); got != containers {
			t.Fatalf("kill %d: containers changed: %s, before %s", k, got, containers)
		}
		if err := settledMounts(t, root, maxMounts); err != nil {
			t.Errorf("kill %d: %v", k, err)
			maxMounts = countMounts(t, root) // report each further leak once
		}

		// 2. A few updates, then one during which the child is killed.
		n := randN(3)
		for i := 0; i <= n; i++ {
			names := randomNames()
			u := agbot.newUpdate(names, false)
			if i < n {
				t0 := time.Now()
				if rep := c.send(t, u).(*protocol.UpdateReply); rep.Status != protocol.StatusApplied {
					t.Fatalf("update %d: %s %q", u.Seq, rep.Status, rep.Reason)
				}
				applyTime += time.Since(t0)
				applied++
				agbot.ack()
				continue
			}
			// Aim at the whole update, more often at its start where the swaps are.
			avg := int(applyTime / time.Duration(max(applied, 1)))
			var delay time.Duration
			switch randN(4) {
			case 0: // at once: the child may not even have read it
			case 1, 2:
				delay = time.Duration(randN(avg/3 + 1))
			default:
				delay = time.Duration(randN(avg*5/4 + 1))
			}
			c.write(t, u)
			time.Sleep(delay)
			c.cmd.Process.Signal(syscall.SIGKILL)
			c.cmd.Wait()
			for range c.lines {
			}
		}

		// 3. With the child dead: each secret holds its acknowledged or its pending value.
		outcomes[checkOldOrNew(t, k, c.status.Files, agbot)]++
		c = start()
	}
	t.Logf("%d kills; where they landed (judged by the files afterwards): %v; mean update %s", kills, outcomes, applyTime/time.Duration(max(applied, 1)))

	// Converge once more, then cancel: nothing is left.
	if agbot.pending != nil {
		c.send(t, agbot.pending)
		agbot.ack()
	}
	if len(c.status.Resyncs) > 0 {
		c.send(t, agbot.newUpdate(secretNames, true))
		agbot.ack()
	}
	checkConverged(t, kills, c.query(t), agbot)
	agbot.seq++
	if rep := c.send(t, &protocol.Cancel{Meta: agbot.meta(protocol.TypeCancel, agbot.seq)}).(*protocol.CancelReply); rep.Status != protocol.StatusApplied {
		t.Fatalf("cancel: %s", rep.Status)
	}
	st := c.query(t)
	if len(st.Info) != 0 || len(st.Files) != 0 {
		t.Errorf("after cancel: %d agreements, %d stores", len(st.Info), len(st.Files))
	}
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child exit: %v", err)
	}
	if got := countMounts(t, root); got != 0 {
		t.Errorf("%d mounts left under the secretfs root after cancel", got)
	}
}

func (c *child) write(t *testing.T, m protocol.Message) {
	t.Helper()
	b, err := protocol.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		t.Fatalf("write to child: %v", err)
	}
}

func (c *child) read(t *testing.T) string {
	t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			t.Fatalf("child exited: %v", c.cmd.Wait())
		}
		return line
	case <-time.After(2 * time.Minute):
		t.Fatal("child does not answer")
	}
	return ""
}

func (c *child) send(t *testing.T, m protocol.Message) protocol.Message {
	t.Helper()
	c.write(t, m)
	line := c.read(t)
	reply, err := protocol.Decode([]byte(line))
	if err != nil {
		t.Fatalf("child answered %q: %v", line, err)
	}
	return reply
}

func (c *child) readStatus(t *testing.T) childStatus {
	t.Helper()
	var st childStatus
	if line := c.read(t); json.Unmarshal([]byte(line), &st) != nil || st.Error != "" {
		t.Fatalf("child: %s", line)
	}
	return st
}

func (c *child) query(t *testing.T) childStatus {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "query\n"); err != nil {
		t.Fatal(err)
	}
	st := c.readStatus(t)
	c.status.Files = st.Files
	return st
}

// checkConverged: the node is at the agbot's sequence, sure of every value, and every file
// holds the agbot's value.
func checkConverged(t *testing.T, k int, st childStatus, a *crashAgbot) {
	t.Helper()
	if len(st.Info) != 1 {
		t.Fatalf("kill %d: %d agreements", k, len(st.Info))
	}
	in := st.Info[0]
	if in.Sequence != a.seq || in.Phase != PhaseActive {
		t.Fatalf("kill %d: node at %d (%s), agbot at %d", k, in.Sequence, in.Phase, a.seq)
	}
	for _, s := range in.Secrets {
		if s.Uncertain {
			t.Fatalf("kill %d: secret %s still uncertain", k, s.Name)
		}
	}
	if got := fileTags(t, st.Files); fmt.Sprint(got) != fmt.Sprint(tagsPerFile(st.Files, a.acked)) {
		t.Fatalf("kill %d: files %v, agbot %v", k, got, a.acked)
	}
}

// checkOldOrNew checks that every file holds its acknowledged or its pending value and says
// which: "old" (nothing swapped), "new" (every changed secret swapped), "mixed".
func checkOldOrNew(t *testing.T, k int, files map[string]map[string]string, a *crashAgbot) string {
	t.Helper()
	got := fileTags(t, files)
	olds, news := 0, 0
	for file, tag := range got {
		name := file[strings.LastIndex(file, "/")+1:]
		switch {
		case tag == a.acked[name] && (a.pendTags[name] == "" || a.pendTags[name] == tag):
		case tag == a.acked[name]:
			olds++
		case tag == a.pendTags[name]:
			news++
		default:
			t.Fatalf("kill %d: %s holds value %q: neither the old %q nor the new %q", k, file, tag, a.acked[name], a.pendTags[name])
		}
	}
	switch {
	case news == 0:
		return "old"
	case olds == 0:
		return "new"
	}
	return "mixed"
}

// fileTags reads every secret file and returns the tag of the canary it holds, by
// "store/secret".
func fileTags(t *testing.T, files map[string]map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, fs := range files {
		for name, path := range fs {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read %s/%s: %v", id, name, err)
			}
			s := string(b)
			i := strings.Index(s, canary(name, ""))
			if i < 0 {
				t.Fatalf("%s/%s holds %q, not a value of the test", id, name, s)
			}
			tag := s[i+len(canary(name, "")):]
			tag = strings.TrimSuffix(tag, `"}`)
			out[id+"/"+name] = tag
		}
	}
	return out
}

func tagsPerFile(files map[string]map[string]string, tags map[string]string) map[string]string {
	out := map[string]string{}
	for id, fs := range files {
		for name := range fs {
			out[id+"/"+name] = tags[name]
		}
	}
	return out
}

// settledMounts waits (secretfs retires replaced versions after a grace period) until at most
// max mounts are under root, and otherwise names the publish points stacked more than once.
// The deadline only bounds the wait; it is not a timing assertion.
func settledMounts(t *testing.T, root string, max int) error {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for countMounts(t, root) > max && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := countMounts(t, root)
	if got <= max {
		return nil
	}
	mounts, _ := linux.SelfMountinfo()
	stacked := map[string][]string{}
	for _, m := range mounts {
		if strings.HasPrefix(m.Mountpoint, root+"/") {
			p := strings.TrimPrefix(m.Mountpoint, root)
			stacked[p] = append(stacked[p], m.Root)
		}
	}
	var all []string
	for p, roots := range stacked {
		line := fmt.Sprintf("%s %v", p, roots)
		// A layer below the top is hidden; say whether its file still holds a secret value.
		if parts := strings.Split(p, "/"); len(roots) > 1 && len(parts) > 2 {
			for _, r := range roots[:len(roots)-1] {
				b, err := os.ReadFile(filepath.Join(root, "stores", parts[2], r))
				switch {
				case err != nil:
					line += fmt.Sprintf(" (hidden %s: %v)", r, err)
				case strings.Contains(string(b), canaryMark):
					line += fmt.Sprintf(" (hidden %s still holds a secret value)", r)
				default:
					line += fmt.Sprintf(" (hidden %s holds no value)", r)
				}
			}
		}
		all = append(all, line)
	}
	sort.Strings(all)
	return fmt.Errorf("%d mounts under the secretfs root, at most %d expected:\n%s", got, max, strings.Join(all, "\n"))
}

func countMounts(t *testing.T, root string) int {
	t.Helper()
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range mounts {
		if strings.HasPrefix(m.Mountpoint, root+"/") {
			n++
		}
	}
	return n
}

func randN(n int) int {
	if n <= 0 {
		return 0
	}
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// randomNames picks a non-empty random subset of the secrets, api_token (two stores) often.
func randomNames() []string {
	var out []string
	for _, n := range secretNames {
		if randN(2) == 1 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = []string{"api_token"}
	}
	sort.Strings(out)
	return out
}
