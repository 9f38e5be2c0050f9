package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/secretstest"
	"github.com/edge-secrets/anax-agent/test/openbaotest"
)

// newManager returns a manager over the server, closed at cleanup, logging into logs.
func newManager(t testing.TB, s *openbaotest.Server, cfg Config) *Manager {
	t.Helper()
	cfg.Addr, cfg.Token = s.Addr, s.Token
	if cfg.Token == "" {
		cfg.Token = s.Token
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// testLog collects a manager's log at debug level, to check it never holds a value.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *testLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *testLog) checkNoCanary(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() == 0 {
		t.Error("the manager logged nothing: is the log check looking at the right logger?")
	}
	if i := bytes.Index(l.buf.Bytes(), []byte("CANARY")); i >= 0 {
		t.Errorf("a secret value reached the log: %q", l.buf.Bytes()[max(0, i-100):min(l.buf.Len(), i+100)])
	}
}

// The conformance suite, on a real OpenBao, in both poll modes. The poll interval is an hour:
// every change the suite waits for must come from the write itself.
func TestConformance(t *testing.T) {
	s := openbaotest.StartServer(t)
	for _, mode := range []PollMode{PollScan, PollWalk} {
		t.Run(mode.String(), func(t *testing.T) {
			secretstest.Run(t, func(t *testing.T) secrets.Manager {
				return newManager(t, s, Config{PollInterval: time.Hour, PollMode: mode})
			})
		})
	}
}

// Secrets sit at the anax paths as {"key","value"}, and secrets written there by anax read back.
func TestAnaxLayout(t *testing.T) {
	s := openbaotest.StartServer(t)
	m := newManager(t, s, Config{PollInterval: time.Hour})
	kv := s.Client().KVv2(openbaotest.Mount)
	ctx := t.Context()
	for _, name := range []string{"db", "user/bob/db", "node/n1/db", "user/bob/node/n1/db"} {
		t.Run(name, func(t *testing.T) {
			want := secrets.Secret{Key: "k-" + name, Value: secretstest.Value("layout " + name)}
			if _, err := m.Put(ctx, "org1", name, want); err != nil {
				t.Fatal(err)
			}
			got, err := kv.Get(ctx, "org1/"+name)
			if err != nil {
				t.Fatalf("reading openhorizon/data/org1/%s directly: %v", name, err)
			}
			if len(got.Data) != 2 || got.Data["key"] != want.Key || got.Data["value"] != want.Value {
				t.Fatalf("stored data = %v, want exactly {key, value}", got.Data)
			}
			// Written the anax way, read through the manager.
			anax := map[string]any{"key": "anax-key", "value": secretstest.Value("by anax")}
			if _, err := kv.Put(ctx, "org1/"+name, anax); err != nil {
				t.Fatal(err)
			}
			sec, v, err := m.Get(ctx, "org1", name)
			if err != nil || sec.Key != "anax-key" || sec.Value != secretstest.Value("by anax") || v != 2 {
				t.Fatalf("Get = {%q, %q}, %d, %v; want the anax secret at version 2", sec.Key, sec.Value, v, err)
			}
		})
	}
	// Something else than {key, value}: an error that does not echo the data.
	if _, err := kv.Put(ctx, "org1/odd", map[string]any{"password": secretstest.Value("odd")}); err != nil {
		t.Fatal(err)
	}
	_, _, err := m.Get(ctx, "org1", "odd")
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Fatalf("Get of non-anax data = %v, want an error without the data", err)
	}
}

func TestCreateOverSoftDeleted(t *testing.T) {
	s := openbaotest.StartServer(t)
	m := newManager(t, s, Config{PollInterval: time.Hour})
	kv := s.Client().KVv2(openbaotest.Mount)
	ctx := t.Context()
	if _, err := kv.Put(ctx, "org1/db", map[string]any{"key": "k", "value": secretstest.Value("old")}); err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "org1/db"); err != nil { // `bao kv delete`: metadata stays
		t.Fatal(err)
	}
	if _, _, err := m.Get(ctx, "org1", "db"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get of soft-deleted = %v, want ErrNotFound", err)
	}
	if names, err := m.List(ctx, "org1", ""); err != nil || len(names) != 0 {
		t.Fatalf("List with a soft-deleted secret = %q, %v; want empty", names, err)
	}
	if err := m.Delete(ctx, "org1", "db"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Delete of soft-deleted = %v, want ErrNotFound", err)
	}
	want := secrets.Secret{Key: "k", Value: secretstest.Value("new")}
	v, err := m.Create(ctx, "org1", "db", want)
	if err != nil || v != 2 {
		t.Fatalf("Create over soft-deleted = %d, %v; want version 2", v, err)
	}
	if got, _, err := m.Get(ctx, "org1", "db"); err != nil || got != want {
		t.Fatalf("Get = %v, %v", got, err)
	}
}

// wantChange waits for the next change and checks it.
func wantChange(t *testing.T, ch <-chan secrets.Change, org, name string, kind secrets.ChangeKind, version int64) {
	t.Helper()
	got := secretstest.NextChange(t, ch)
	if got.Org != org || got.Name != name || got.Kind != kind || (version != 0 && got.Version != version) {
		t.Fatalf("change = %+v, want %s %s/%s version %d", got, kind, org, name, version)
	}
}

// wantChanges takes len(want) changes from ch and checks they are want's, in any order (a
// want's Version 0 matches any version).
func wantChanges(t *testing.T, ch <-chan secrets.Change, want ...secrets.Change) {
	t.Helper()
	left := slices.Clone(want)
	for range want {
		got := secretstest.NextChange(t, ch)
		i := slices.IndexFunc(left, func(w secrets.Change) bool {
			return got.Org == w.Org && got.Name == w.Name && got.Kind == w.Kind && (w.Version == 0 || got.Version == w.Version)
		})
		if i < 0 {
			t.Fatalf("change = %+v, want one of %+v", got, left)
		}
		left = slices.Delete(left, i, i+1)
	}
}

// Writes made directly in OpenBao are found by the poll; the manager's own writes are announced
// once, at once, and not again by the poll; the first poll only takes a baseline.
func TestDirectWritesFoundByPoll(t *testing.T) {
	t.Parallel()
	s := openbaotest.StartServer(t)
	kv := s.Client().KVv2(openbaotest.Mount)
	ctx := t.Context()
	put := func(path, what string) {
		t.Helper()
		if _, err := kv.Put(ctx, path, map[string]any{"key": "k", "value": secretstest.Value(what)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []PollMode{PollScan, PollWalk} {
		t.Run(mode.String(), func(t *testing.T) {
			org := secretstest.Org(t)
			put(org+"/before", "existed before the manager") // baseline: never announced
			var logs testLog
			m := newManager(t, s, Config{PollInterval: 50 * time.Millisecond, PollMode: mode, Logger: logs.logger()})
			ch := m.Watch(ctx)
			waitPolls(t, m, 2)

			put(org+"/user/bob/node/n1/db", "direct 1")
			wantChange(t, ch, org, "user/bob/node/n1/db", secrets.Updated, 1)
			put(org+"/user/bob/node/n1/db", "direct 2")
			wantChange(t, ch, org, "user/bob/node/n1/db", secrets.Updated, 2)

			must(t, kv.Delete(ctx, org+"/user/bob/node/n1/db")) // soft delete
			wantChange(t, ch, org, "user/bob/node/n1/db", secrets.Deleted, 0)
			must(t, kv.Undelete(ctx, org+"/user/bob/node/n1/db", []int{2}))
			wantChange(t, ch, org, "user/bob/node/n1/db", secrets.Updated, 2)
			must(t, kv.DeleteMetadata(ctx, org+"/user/bob/node/n1/db"))
			wantChange(t, ch, org, "user/bob/node/n1/db", secrets.Deleted, 0)

			// Through the manager: announced once, at once; the polls that follow stay quiet.
			v, err := m.Put(ctx, org, "db", secrets.Secret{Key: "k", Value: secretstest.Value("via manager")})
			must(t, err)
			wantChange(t, ch, org, "db", secrets.Updated, v)
			must(t, m.Delete(ctx, org, "db"))
			wantChange(t, ch, org, "db", secrets.Deleted, 0)
			// Paths the agbot can not address are ignored.
			put(org+"/not a name", "ignored")
			put("no-org-segment", "ignored")
			waitPolls(t, m, 3)
			put(org+"/marker", "marker")
			wantChange(t, ch, org, "marker", secrets.Updated, 1)
			logs.checkNoCanary(t)
		})
	}
}

// Polls driven by hand: a secret deleted and written again between two polls (same version 1,
// a later created time) is an update; a soft delete and its undelete between two polls are
// nothing.
func TestChangesBetweenTwoPolls(t *testing.T) {
	t.Parallel()
	s := openbaotest.StartServer(t)
	kv := s.Client().KVv2(openbaotest.Mount)
	ctx := t.Context()
	for _, mode := range []PollMode{PollScan, PollWalk} {
		t.Run(mode.String(), func(t *testing.T) {
			org := secretstest.Org(t)
			m := newManager(t, s, Config{PollInterval: time.Hour, PollMode: mode})
			ch := m.Watch(ctx)
			waitPolls(t, m, 1) // the loop's baseline poll
			put := func(what string) {
				t.Helper()
				_, err := kv.Put(ctx, org+"/node/n2/x", map[string]any{"key": "k", "value": secretstest.Value(what)})
				must(t, err)
			}
			put("first life")
			must(t, m.pollOnce(ctx))
			wantChange(t, ch, org, "node/n2/x", secrets.Updated, 1)

			must(t, kv.DeleteMetadata(ctx, org+"/node/n2/x"))
			time.Sleep(1100 * time.Millisecond) // OpenBao's created_time has one-second resolution
			put("second life")
			must(t, m.pollOnce(ctx))
			wantChange(t, ch, org, "node/n2/x", secrets.Updated, 1)

			must(t, kv.Delete(ctx, org+"/node/n2/x"))
			must(t, kv.Undelete(ctx, org+"/node/n2/x", []int{1}))
			must(t, m.pollOnce(ctx))
			put("marker")
			must(t, m.pollOnce(ctx))
			wantChange(t, ch, org, "node/n2/x", secrets.Updated, 2)
		})
	}
}

// waitPolls waits until n more polls have completed.
func waitPolls(t testing.TB, m *Manager, n int) {
	t.Helper()
	start := m.polls.Load()
	deadline := time.Now().Add(30 * time.Second)
	for m.polls.Load() < start+int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d polls in 30s", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// OpenBao stopped mid-test: every call fails fast with ErrUnavailable, nothing panics, the poll
// keeps retrying; once a server answers again, calls work and the poll finds direct writes.
func TestVaultDown(t *testing.T) {
	t.Parallel()
	s := openbaotest.StartServer(t)
	var logs testLog
	m := newManager(t, s, Config{PollInterval: 50 * time.Millisecond, Logger: logs.logger()})
	ctx := t.Context()
	ch := m.Watch(ctx)
	sec := secrets.Secret{Key: "k", Value: secretstest.Value("before the outage")}
	_, err := m.Put(ctx, "org1", "db", sec)
	must(t, err)
	wantChange(t, ch, "org1", "db", secrets.Updated, 1)
	waitPolls(t, m, 1)

	s.Stop()
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := m.Put(ctx, "org1", "db", sec); return err }},
		{"Create", func() error { _, err := m.Create(ctx, "org1", "new", sec); return err }},
		{"Get", func() error { _, _, err := m.Get(ctx, "org1", "db"); return err }},
		{"Delete", func() error { return m.Delete(ctx, "org1", "db") }},
		{"List", func() error { _, err := m.List(ctx, "org1", ""); return err }},
	}
	for _, c := range calls {
		err := c.call()
		if !errors.Is(err, secrets.ErrUnavailable) {
			t.Fatalf("%s with OpenBao down = %v, want ErrUnavailable", c.name, err)
		}
		if !strings.Contains(err.Error(), "org1") {
			t.Errorf("%s error %q does not say what it was doing", c.name, err)
		}
	}
	// The poll fails meanwhile and keeps going; no change is invented.
	pollsBefore := m.polls.Load()
	time.Sleep(300 * time.Millisecond)
	if m.polls.Load() != pollsBefore {
		t.Fatal("a poll succeeded with OpenBao down")
	}
	select {
	case c := <-ch:
		t.Fatalf("change %+v while OpenBao is down", c)
	default:
	}

	s.Restart() // a dev server comes back empty, on the same address
	v, err := m.Put(ctx, "org1", "after", secrets.Secret{Key: "k", Value: secretstest.Value("after the outage")})
	if err != nil || v != 1 {
		t.Fatalf("Put after restart = %d, %v", v, err)
	}
	// The Put is announced, and the poll recovers (its backoff is at most 10s) and sees the
	// store as it now is: the secret from before is gone. Which comes first depends on when
	// the poll's retry falls; a direct write is then new.
	wantChanges(t, ch, secrets.Change{Org: "org1", Name: "after", Kind: secrets.Updated, Version: 1},
		secrets.Change{Org: "org1", Name: "db", Kind: secrets.Deleted})
	if _, err := s.Client().KVv2(openbaotest.Mount).Put(ctx, "org1/direct",
		map[string]any{"key": "k", "value": secretstest.Value("direct after outage")}); err != nil {
		t.Fatal(err)
	}
	wantChange(t, ch, "org1", "direct", secrets.Updated, 1)
	logs.checkNoCanary(t)
}

// The fallback to the LIST walk hinges on telling "this server has no detailed-metadata" (a
// 404 with a warning and no error, as HashiCorp Vault answers an unknown KV v2 path) from a
// missing mount (a 404 with an error). Both answers come from the real server here.
func TestUnsupportedDetection(t *testing.T) {
	s := openbaotest.StartServer(t)
	c := s.Client()
	scan := func(path string) error {
		resp, err := c.Logical().ReadRawWithDataWithContext(t.Context(), path, map[string][]string{"scan": {"true"}})
		if resp != nil {
			resp.Body.Close()
		}
		return err
	}
	if err := scan(openbaotest.Mount + "/no-such-endpoint/"); !isUnsupported(err) {
		t.Errorf("unknown KV v2 endpoint: isUnsupported(%v) = false, want true", err)
	}
	if err := scan("no-such-mount/detailed-metadata/"); err == nil || isUnsupported(err) {
		t.Errorf("missing mount: isUnsupported(%v) = true, want false", err)
	}
	if err := scan(openbaotest.Mount + "/detailed-metadata/"); err != nil {
		t.Errorf("OpenBao SCAN of detailed-metadata = %v, want it supported", err)
	}
}

func TestTokenRefused(t *testing.T) {
	s := openbaotest.StartServer(t)
	m, err := New(Config{Addr: s.Addr, Token: "not-a-token", PollInterval: time.Hour})
	must(t, err)
	defer m.Close()
	_, err = m.Put(t.Context(), "org1", "db", secrets.Secret{Key: "k", Value: secretstest.Value("refused")})
	if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "refused the agbot's token") {
		t.Fatalf("Put with a bad token = %v, want ErrUnavailable saying the token was refused", err)
	}
}

func TestMissingMount(t *testing.T) {
	s := openbaotest.StartServer(t)
	m := newManager(t, s, Config{Mount: "no-such-mount", PollInterval: time.Hour})
	_, err := m.Put(t.Context(), "org1", "db", secrets.Secret{Key: "k", Value: secretstest.Value("no mount")})
	if !errors.Is(err, secrets.ErrUnavailable) || !strings.Contains(err.Error(), "mount") {
		t.Fatalf("Put to a missing mount = %v, want ErrUnavailable naming the mount", err)
	}
}

// A renewable token with a 3 s TTL stays valid well past 3 s while the manager runs; an
// identical token nobody renews expires (the control that shows the test can fail).
func TestTokenRenewal(t *testing.T) {
	t.Parallel()
	s := openbaotest.StartServer(t)
	root := s.Client()
	renewable := true
	newToken := func() string {
		sec, err := root.Auth().Token().CreateWithContext(t.Context(), &vaultapi.TokenCreateRequest{
			Policies: []string{"root"}, TTL: "3s", ExplicitMaxTTL: "5m", Renewable: &renewable,
		})
		if err != nil {
			t.Fatal(err)
		}
		return sec.Auth.ClientToken
	}
	renewed, control := newToken(), newToken()
	var logs testLog
	m, err := New(Config{Addr: s.Addr, Token: renewed, PollInterval: time.Hour, Logger: logs.logger()})
	// The root token used above is not the manager's: only its own token is renewed.
	must(t, err)
	defer m.Close()

	time.Sleep(7 * time.Second)
	if _, err := m.Put(t.Context(), "org1", "db", secrets.Secret{Key: "k", Value: secretstest.Value("renewed")}); err != nil {
		t.Fatalf("Put after 7s with a renewed 3s token = %v", err)
	}
	c, err := openbaotest.NewClient(s.Addr, control)
	must(t, err)
	if _, err := c.Auth().Token().LookupSelfWithContext(t.Context()); err == nil {
		t.Fatal("the control token that nobody renewed is still valid after 7s: the test proves nothing")
	}
	if log := logs.String(); !strings.Contains(log, "token renewed") {
		t.Errorf("no renewal logged; log:\n%s", log)
	}
}

// countingTransport counts requests and response bytes, for the poll benchmark.
type countingTransport struct {
	inner    http.RoundTripper
	requests atomic.Int64
	bytes    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.requests.Add(1)
	resp, err := c.inner.RoundTrip(r)
	if resp != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.bytes}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// BenchmarkPoll measures one poll (what runs every PollInterval) against the number of secrets
// in the mount. The number of agreements does not enter: the poll knows none.
//
//	go test -run '^$' -bench Poll -benchtime 20x ./agbot/secrets/vault/
func BenchmarkPoll(b *testing.B) {
	s := openbaotest.StartServer(b)
	seeded := 0
	kv := s.Client().KVv2(openbaotest.Mount)
	for _, n := range []int{10, 100, 1000, 3000} {
		// Seed up to n secrets spread over the four levels of a few orgs.
		for ; seeded < n; seeded++ {
			org := fmt.Sprintf("org%d", seeded%4)
			name := []string{"s%d", "user/u%d/s", "node/n%d/s", "user/u/node/n%d/s"}[seeded%4]
			path := org + "/" + fmt.Sprintf(name, seeded)
			if _, err := kv.Put(context.Background(), path, map[string]any{"key": "k", "value": secretstest.Value("bench")}); err != nil {
				b.Fatal(err)
			}
		}
		for _, mode := range []PollMode{PollScan, PollWalk} {
			if mode == PollWalk && n > 1000 {
				continue // about two requests per secret: seconds per poll already at 1000
			}
			b.Run(fmt.Sprintf("mode=%s/secrets=%d", mode, n), func(b *testing.B) {
				ct := &countingTransport{inner: http.DefaultTransport.(*http.Transport).Clone()}
				m := newManager(b, s, Config{PollInterval: time.Hour, PollMode: mode, HTTPClient: &http.Client{Transport: ct}})
				waitPolls(b, m, 1) // the loop's own first poll (baseline), then it sleeps an hour
				ct.requests.Store(0)
				ct.bytes.Store(0)
				b.ResetTimer()
				for b.Loop() {
					if err := m.pollOnce(b.Context()); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if got := m.lastPoll.secrets; got != n {
					b.Fatalf("poll saw %d secrets, want %d", got, n)
				}
				b.ReportMetric(float64(ct.requests.Load())/float64(b.N), "requests/poll")
				b.ReportMetric(float64(ct.bytes.Load())/float64(b.N), "respbytes/poll")
			})
		}
	}
}
