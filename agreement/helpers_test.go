package agreement

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
)

const (
	agbotID = "agbot1"
	nodeID  = "acme/node1"
	// canaryMark is in every secret value the tests use, so a scan can find any leak.
	canaryMark = "CANARY-7f3a9c"
)

// canary is a recognisable secret value.
func canary(name, tag string) string { return canaryMark + "-" + name + "-" + tag }

// testService runs three containers: web and worker declare secrets (api_token in both),
// sidecar declares none.
func testService() protocol.Service {
	return protocol.Service{Org: "acme", URL: "svc.example", Version: "1.2.0", Arch: arch.Node(),
		Deployment: protocol.Deployment{Services: map[string]protocol.Container{
			"web": {Image: "web:1", Secrets: map[string]protocol.SecretDecl{
				"db_password": {}, "api_token": {OnUpdate: "signal:SIGHUP"}}},
			"worker": {Image: "worker:1", Environment: []string{"MODE=batch"}, Secrets: map[string]protocol.SecretDecl{
				"api_token": {}, "tls_cert": {Format: protocol.FormatValueOnly}}},
			"sidecar": {Image: "side:1"},
		}}}
}

// secretNames are the secrets testService declares.
var secretNames = []string{"api_token", "db_password", "tls_cert"}

func values(tag string, names ...string) map[string]protocol.SecretValue {
	if len(names) == 0 {
		names = secretNames
	}
	out := map[string]protocol.SecretValue{}
	for _, n := range names {
		out[n] = protocol.SecretValue{Key: "user-" + n, Value: canary(n, tag)}
	}
	return out
}

type env struct {
	t      testing.TB
	dir    string
	stores *fakeStores
	runner *fakeRunner
	opts   Options
	m      *Manager
	now    time.Time
	logs   *syncbuf.Buffer
	ctx    context.Context
}

func newEnv(t testing.TB, edit ...func(*Options)) *env {
	t.Helper()
	e := &env{t: t, dir: filepath.Join(t.TempDir(), "state"), stores: newFakeStores(t), runner: newFakeRunner(),
		now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), logs: &syncbuf.Buffer{}, ctx: context.Background()}
	e.opts = Options{
		StateDir: e.dir, Stores: e.stores, Runner: e.runner,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    func() time.Time { return e.now },
	}
	for _, f := range edit {
		f(&e.opts)
	}
	e.open()
	t.Cleanup(func() {
		if e.m != nil {
			e.m.Shutdown(context.Background())
		}
		scanForCanaries(t, e.dir, e.logs.String())
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	m, err := Open(e.opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.m = m
}

// restart shuts the manager down and opens a new one on the same state, stores and runner.
func (e *env) restart() []*protocol.Resync {
	e.t.Helper()
	if err := e.m.Shutdown(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.open()
	rs, err := e.m.Recover(e.ctx)
	if err != nil {
		e.t.Fatalf("Recover: %v", err)
	}
	return rs
}

func (e *env) meta(t protocol.MessageType, id string, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: id, From: agbotID, To: nodeID, Seq: seq, Time: e.now}
}

func (e *env) proposal(id string, vals map[string]protocol.SecretValue) *protocol.Proposal {
	return &protocol.Proposal{Meta: e.meta(protocol.TypeProposal, id, 1), Service: testService(), Secrets: vals}
}

func (e *env) update(id string, seq uint64, full bool, vals map[string]protocol.SecretValue) *protocol.Update {
	u := &protocol.Update{Meta: e.meta(protocol.TypeUpdate, id, seq), Full: full, Secrets: map[string]protocol.ChangedSecret{}}
	for n, v := range vals {
		r := protocol.ReasonValueUpdated
		if full {
			r = protocol.ReasonResync
		}
		u.Secrets[n] = protocol.ChangedSecret{SecretValue: v, Reason: r}
	}
	return u
}

func (e *env) cancel(id string, seq uint64) *protocol.Cancel {
	return &protocol.Cancel{Meta: e.meta(protocol.TypeCancel, id, seq), Reason: "test"}
}

// accept proposes id with values tagged tag and fails the test unless it is accepted.
func (e *env) accept(id, tag string) {
	e.t.Helper()
	rep := e.m.Propose(e.ctx, e.proposal(id, values(tag)))
	if rep.Status != protocol.StatusAccepted {
		e.t.Fatalf("Propose(%s) = %s %q, want accepted", id, rep.Status, rep.Reason)
	}
	e.stores.takeCalls()
	e.runner.takeCalls()
}

func (e *env) record(id string) *record {
	e.t.Helper()
	r, err := e.m.db.get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// wantValues checks the files of agreement id hold the values tagged tag, per secret.
func (e *env) wantValues(id string, tags map[string]string) {
	e.t.Helper()
	inst := instanceID(id)
	for name, tag := range tags {
		want := values(tag, name)[name]
		for _, c := range []string{"web", "worker"} {
			if _, ok := testService().Deployment.Services[c].Secrets[name]; !ok {
				continue
			}
			got := e.stores.read(e.t, storeID(inst, c), name)
			if !strings.Contains(got, want.Value) {
				e.t.Errorf("store %s secret %s = %q, want value %q", c, name, got, want.Value)
			}
		}
	}
}

// scanForCanaries fails the test if a secret value of the tests is in any file under dir or in
// the logs.
func scanForCanaries(t testing.TB, dir, logs string) {
	t.Helper()
	if strings.Contains(logs, canaryMark) {
		t.Errorf("a secret value is in the logs")
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("scan %s: %v", path, err)
			return nil
		}
		if bytes.Contains(b, []byte(canaryMark)) {
			t.Errorf("a secret value is in the state dir: %s", path)
		}
		return nil
	})
}
