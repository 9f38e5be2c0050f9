package ess

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

type fixture struct {
	t      testing.TB
	root   string
	logs   *bytes.Buffer
	values map[string]map[string]protocol.SecretValue // store -> name -> value
	mu     sync.Mutex
	counts map[string]int
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	testenv.RequireRoot(t)
	f := &fixture{t: t, root: filepath.Join(t.TempDir(), "ess"), logs: &bytes.Buffer{},
		values: map[string]map[string]protocol.SecretValue{}, counts: map[string]int{}}
	t.Cleanup(func() { linux.UnmountAll(f.root) })
	return f
}

func (f *fixture) open() *Server {
	f.t.Helper()
	s, err := Open(Options{Root: f.root, Logger: slog.New(slog.NewTextHandler(f.logs, nil)),
		Read: func(id, name string) (protocol.SecretValue, error) {
			v, ok := f.values[id][name]
			if !ok {
				return v, ErrNotFound
			}
			return v, nil
		},
		Count: func(op, result string) { f.mu.Lock(); f.counts[op+" "+result]++; f.mu.Unlock() },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

// client talks to a store's socket as the service would: curl --unix-socket --cacert -u id:token.
type client struct {
	http *http.Client
	auth credentials
}

func (f *fixture) client(m Mounts) *client {
	f.t.Helper()
	ca, err := os.ReadFile(m.CertFile)
	if err != nil {
		f.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		f.t.Fatal("cert.pem holds no certificate")
	}
	var c credentials
	raw, err := os.ReadFile(m.AuthFile)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		f.t.Fatal(err)
	}
	sock := filepath.Join(m.SocketDir, socketName)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
	}
	f.t.Cleanup(tr.CloseIdleConnections)
	return &client{http: &http.Client{Transport: tr}, auth: c}
}

func (c *client) do(t *testing.T, method, path string, auth *credentials) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://localhost"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != nil {
		req.SetBasicAuth(auth.ID, auth.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAPI(t *testing.T) {
	f := newFixture(t)
	s := f.open()
	f.values["svc-a"] = map[string]protocol.SecretValue{"db": {Key: "user", Value: "CANARY-ess-db"}, "tok": {Value: "CANARY-ess-tok"}}
	ma, err := s.Attach("svc-a", 1000, 1001)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := s.Attach("svc-b", 1002, 1002)
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.client(ma), f.client(mb)
	wrong := credentials{ID: a.auth.ID, Token: strings.Repeat("0", 64)}
	s.Changed("svc-a", []string{"tok", "db"})

	steps := []struct {
		name         string
		c            *client
		method, path string
		auth         *credentials
		code         int
		body         string
	}{
		{"no credentials", a, "GET", "/api/v1/secrets", nil, 401, "Unauthorized\n"},
		{"wrong token", a, "GET", "/api/v1/secrets", &wrong, 401, "Unauthorized\n"},
		{"another container's credentials", a, "GET", "/api/v1/secrets", &b.auth, 401, "Unauthorized\n"},
		{"own credentials on another container's socket", b, "GET", "/api/v1/secrets/db", &a.auth, 401, "Unauthorized\n"},
		{"updated names", a, "GET", "/api/v1/secrets", &a.auth, 200, "[\n  \"db\",\n  \"tok\"\n]"},
		{"other store has none", b, "GET", "/api/v1/secrets", &b.auth, 404, ""},
		{"read", a, "GET", "/api/v1/secrets/db", &a.auth, 200, "{\n  \"key\": \"user\",\n  \"value\": \"CANARY-ess-db\"\n}"},
		{"read unknown", a, "GET", "/api/v1/secrets/nope", &a.auth, 404, "Secret not found.\n"},
		{"odd name", a, "GET", "/api/v1/secrets/a%20b", &a.auth, 400, ""},
		{"ack without received", a, "POST", "/api/v1/secrets/db", &a.auth, 400, "received=true is required\n"},
		{"ack received=false", a, "POST", "/api/v1/secrets/db?received=false", &a.auth, 400, "received=true is required\n"},
		{"ack", a, "POST", "/api/v1/secrets/db?received=true", &a.auth, 201, ""},
		{"ack again", a, "POST", "/api/v1/secrets/db?received=true", &a.auth, 404, ""},
		{"one left", a, "GET", "/api/v1/secrets", &a.auth, 200, "[\n  \"tok\"\n]"},
		{"wrong method", a, "DELETE", "/api/v1/secrets/tok", &a.auth, 405, ""},
		{"traversal", a, "GET", "/api/v1/secrets/..%2F..%2Fetc%2Fpasswd", &a.auth, 400, ""},
		{"nested traversal", a, "GET", "/api/v1/secrets/x%2F..%2Fdb", &a.auth, 400, ""},
		{"NUL in name", a, "GET", "/api/v1/secrets/db%00", &a.auth, 400, ""},
		{"long name", a, "GET", "/api/v1/secrets/" + strings.Repeat("n", 4096), &a.auth, 400, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, body := st.c.do(t, st.method, st.path, st.auth)
			if code != st.code || (st.body != "" && body != st.body) {
				t.Errorf("%s %s = %d %q, want %d %q", st.method, st.path, code, body, st.code, st.body)
			}
		})
	}
	if strings.Contains(f.logs.String(), "CANARY") || strings.Contains(f.logs.String(), a.auth.Token) {
		t.Errorf("a value or a token reached the log:\n%s", f.logs.String())
	}
	if f.counts["list 401"] != 3 || f.counts["ack 201"] != 1 {
		t.Errorf("counts %v: want list 401 three times, ack 201 once", f.counts)
	}
	// A huge body is never read: the answer comes, the server goes on.
	req, _ := http.NewRequest("POST", "https://localhost/api/v1/secrets/tok?received=true", io.LimitReader(zeros{}, 64<<20))
	req.SetBasicAuth(a.auth.ID, a.auth.Token)
	if resp, err := a.http.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Errorf("ack with a 64 MiB body: %d, want 201", resp.StatusCode)
		}
	}
	if code, _ := a.do(t, "GET", "/api/v1/secrets", &a.auth); code != 404 {
		t.Errorf("after the huge request: %d, want 404 (all acknowledged)", code)
	}
	for k := range f.counts {
		if strings.Contains(k, "db") || strings.Contains(k, "tok") {
			t.Errorf("a metric label names a secret: %q", k)
		}
	}
}

func TestFilesAndRestart(t *testing.T) {
	f := newFixture(t)
	s := f.open()
	m, err := s.Attach("svc", 1000, 1001)
	if err != nil {
		t.Fatal(err)
	}
	s.Changed("svc", []string{"x"})
	checks := []struct {
		path     string
		mode     os.FileMode
		uid, gid uint32
	}{
		{m.AuthFile, 0o400, 1000, 1001},
		{m.CertFile, 0o444, 0, 0},
		{m.SocketDir, os.ModeDir | 0o500, 1000, 1001},
		{filepath.Join(m.SocketDir, socketName), os.ModeSocket | 0o600, 1000, 1001},
	}
	for _, c := range checks {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&(os.ModeType|os.ModePerm) != c.mode || st.Uid != c.uid || st.Gid != c.gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	if mem, _ := linux.IsMemoryFS(m.AuthFile); !mem {
		t.Error("the credentials are not on tmpfs")
	}
	before := f.client(m)
	ca1, _ := os.ReadFile(m.CertFile)

	// The agent restarts: same credentials, same CA, the updated name is still listed.
	s.Close()
	s2 := f.open()
	m2, ok := s2.Mounts("svc")
	if !ok || m2 != m {
		t.Fatalf("after a restart: mounts %+v %v, want %+v", m2, ok, m)
	}
	if ca2, _ := os.ReadFile(m.CertFile); !bytes.Equal(ca1, ca2) {
		t.Error("the CA changed across a restart: running containers would no longer trust the API")
	}
	after := f.client(m2)
	if code, body := after.do(t, "GET", "/api/v1/secrets", &before.auth); code != 200 || !strings.Contains(body, `"x"`) {
		t.Errorf("after a restart: %d %q, want the updated name with the old credentials", code, body)
	}

	// Prune drops a store whose secret store is gone; Detach leaves nothing.
	s2.Prune(func(id string) bool { return false })
	if _, err := os.Stat(filepath.Dir(m.AuthFile)); !os.IsNotExist(err) {
		t.Errorf("store directory after Prune: %v", err)
	}
	if err := s2.Detach("svc"); err != nil {
		t.Errorf("Detach of a detached store: %v", err)
	}
}

func TestManyConnectionsDoNotBlockOthers(t *testing.T) {
	f := newFixture(t)
	s := f.open()
	ma, err := s.Attach("busy", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := s.Attach("quiet", 1000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	// A hostile container opens far more connections than it may and sends nothing.
	var conns []net.Conn
	for range 4 * maxConns {
		c, err := net.Dial("unix", filepath.Join(ma.SocketDir, socketName))
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b := f.client(mb)
	if code, _ := b.do(t, "GET", "/api/v1/secrets", &b.auth); code != 404 {
		t.Errorf("another container's API answers %d while one is flooded, want 404", code)
	}
	if len(conns) == 0 {
		t.Fatal("no connection could be made")
	}
	t.Logf("%d idle connections held on the busy socket", len(conns))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestManyStores: a node with hundreds of services (the 1,000-service load test found the root
// full at 512 stores with a 4 MiB tmpfs).
func TestManyStores(t *testing.T) {
	f := newFixture(t)
	s := f.open()
	const n = 1200
	for i := range n {
		if _, err := s.Attach(fmt.Sprintf("s%04d", i), 1000, 1000); err != nil {
			t.Fatalf("store %d of %d: %v", i+1, n, err)
		}
	}
	for i := range n {
		if err := s.Detach(fmt.Sprintf("s%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
}
