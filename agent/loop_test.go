package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBackoffBounds(t *testing.T) {
	limit := 30 * time.Second
	for n := 1; n <= 20; n++ {
		want := min(500*time.Millisecond<<min(n-1, 10), limit)
		for range 50 {
			d := backoff(n, limit)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if d := backoff(3, 100*time.Millisecond); d > 100*time.Millisecond {
		t.Errorf("backoff above its cap: %v", d)
	}
}

// TestDispatcher: one agreement's messages run one at a time in arrival order; another
// agreement's run meanwhile; a message waiting or running is not queued twice.
func TestDispatcher(t *testing.T) {
	var mu sync.Mutex
	var order []string
	blockA := make(chan struct{})
	startedA := make(chan struct{}, 1)
	doneB := make(chan struct{})
	d := newDispatcher(4, func(_ context.Context, m polledMessage) func(bool) {
		if m.Agreement == "A" && m.Seq == 1 {
			startedA <- struct{}{}
			<-blockA
		}
		mu.Lock()
		order = append(order, fmt.Sprintf("%s%d", m.Agreement, m.Seq))
		mu.Unlock()
		if m.Agreement == "B" {
			close(doneB)
		}
		return nil
	})
	d.submit(polledMessage{ID: 1, Agreement: "A", Type: "proposal", Seq: 1})
	<-startedA
	d.submit(polledMessage{ID: 2, Agreement: "A", Type: "update", Seq: 2})
	d.submit(polledMessage{ID: 2, Agreement: "A", Type: "update", Seq: 2})   // offered again: dropped
	d.submit(polledMessage{ID: 1, Agreement: "A", Type: "proposal", Seq: 1}) // running: dropped
	d.submit(polledMessage{ID: 3, Agreement: "B", Type: "proposal", Seq: 1})
	<-doneB // B ran while A1 was still blocked
	close(blockA)
	if err := d.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(order, ",")
	}
	if o := got(); o != "B1,A1,A2" {
		t.Errorf("order %s, want B1,A1,A2", o)
	}
	// Done messages may come again (the agbot resends until acknowledged).
	d.submit(polledMessage{ID: 2, Agreement: "A", Type: "update", Seq: 2})
	d.wait(context.Background())
	if o := got(); o != "B1,A1,A2,A2" {
		t.Errorf("after a resend: %s", o)
	}
}

// TestDiff: a change to content, mode, owner, a link, a missing or new entry is found;
// the agent's own baseline compared with itself is clean.
func TestDiff(t *testing.T) {
	base := &snapshot{id: "s", entries: map[string]entry{
		"/p/db":        {mode: 0o400, uid: 1000, gid: 1000, mac: [32]byte{1}, hasMAC: true},
		"/v/..data":    {mode: fs.ModeSymlink | 0o777, link: "..g2"},
		"/v/..data/db": {mode: 0o400, uid: 1000, gid: 1000, mac: [32]byte{1}, hasMAC: true},
	}}
	clone := func(f func(map[string]entry)) *snapshot {
		m := map[string]entry{}
		for k, v := range base.entries {
			m[k] = v
		}
		f(m)
		return &snapshot{id: "s", entries: m}
	}
	id := func(p string) string { return p }
	tests := []struct {
		name     string
		now      *snapshot
		want     string
		fixable  bool
		wantNone bool
	}{
		{"unchanged", clone(func(map[string]entry) {}), "", false, true},
		{"content", clone(func(m map[string]entry) { e := m["/p/db"]; e.mac = [32]byte{2}; m["/p/db"] = e }), "content changed", false, false},
		{"mode", clone(func(m map[string]entry) { e := m["/p/db"]; e.mode = 0o644; m["/p/db"] = e }), "mode 0644, want 0400", true, false},
		{"owner", clone(func(m map[string]entry) { e := m["/p/db"]; e.uid = 0; m["/p/db"] = e }), "owner 0:1000, want 1000:1000", true, false},
		{"link", clone(func(m map[string]entry) { e := m["/v/..data"]; e.link = "..g1"; m["/v/..data"] = e }), "link target changed", false, false},
		{"missing", clone(func(m map[string]entry) { m["/p/db"] = entry{mode: fs.ModeIrregular} }), "missing", false, false},
		{"gone", clone(func(m map[string]entry) { delete(m, "/v/..data/db") }), "missing", false, false},
		{"appeared", clone(func(m map[string]entry) { m["/v/extra"] = entry{mode: 0o644} }), "appeared", true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diff(base, tc.now, id)
			if tc.wantNone {
				if len(got) != 0 {
					t.Fatalf("diff = %+v, want none", got)
				}
				return
			}
			if len(got) != 1 || got[0].what != tc.want || (got[0].fix != nil) != tc.fixable {
				t.Fatalf("diff = %+v, want one %q (fixable %v)", got, tc.want, tc.fixable)
			}
		})
	}
}

func TestUnderSystemd(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if UnderSystemd(env(nil)) {
		t.Error("no systemd variables: JSON logs")
	}
	if !UnderSystemd(env(map[string]string{"INVOCATION_ID": "x"})) || !UnderSystemd(env(map[string]string{"JOURNAL_STREAM": "8:1"})) {
		t.Error("under systemd: text logs")
	}
	var b strings.Builder
	lvl := new(slog.LevelVar)
	NewLogger(&b, lvl, true).Info("hello", "k", 1)
	if !json.Valid([]byte(strings.TrimSpace(b.String()))) {
		t.Errorf("JSON logger wrote %q", b.String())
	}
}

func TestWriteErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: node", ErrInvalidRequest), 400},
		{ErrNotRegistered, 404},
		{fmt.Errorf("%w as o/n", ErrRegistered), 409},
		{fmt.Errorf("%w: fp", ErrAgbotKey), 502},
		{fmt.Errorf("%w: down", ErrAgbot), 502},
		{errors.New("disk"), 500},
	} {
		rec := httptest.NewRecorder()
		writeError(rec, tc.err)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("writeError(%v) = %d %s, want %d", tc.err, rec.Code, rec.Body, tc.code)
		}
	}
}

// TestAgbotClient runs the client against a stand-in for the agbot's node endpoints.
func TestAgbotClient(t *testing.T) {
	keys, _ := protocol.GenerateKeys()
	other, _ := protocol.GenerateKeys()
	fingerprint := keys.Public().Fingerprint()
	var gotAuth, gotQuery, gotUser string
	var released []byte
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agbot", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(agbotInfo{ID: "ab", PublicKeys: keys.Public(), Fingerprint: fingerprint})
	})
	mux.HandleFunc("PUT /org/o/nodes/liar/registration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(agbotInfo{ID: "ab", PublicKeys: other.Public(), Fingerprint: fingerprint})
	})
	mux.HandleFunc("PUT /org/o/nodes/n/registration", func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		if p != "tok" {
			w.WriteHeader(401)
			w.Write([]byte(`{"code":401,"error":"bad node token"}`))
			return
		}
		gotAuth, gotUser = u, r.Header.Get(userAuthHeader)
		json.NewEncoder(w).Encode(agbotInfo{ID: "ab", PublicKeys: keys.Public(), Fingerprint: fingerprint})
	})
	mux.HandleFunc("DELETE /org/o/nodes/n/registration", func(w http.ResponseWriter, r *http.Request) {
		released, _ = io.ReadAll(r.Body)
		w.Write([]byte(`{"node":"n","released":true}`))
	})
	mux.HandleFunc("GET /org/o/nodes/n/msgs", func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		w.Write([]byte(`{"messages":[{"id":7,"agreementId":"ag","type":"update","seq":3,"envelope":"e30="}]}`))
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	c, err := newAgbotClient(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	c.http = srv.Client()
	ctx := context.Background()

	in, err := c.info(ctx)
	if err != nil || in.Fingerprint != fingerprint {
		t.Fatalf("info: %+v %v", in, err)
	}
	reg := &Registration{Org: "o", Node: "n", Token: "tok"}
	if _, err := c.register(ctx, reg, registrationBody{}, ""); err != nil || gotAuth != "o/n" || gotUser != "" {
		t.Fatalf("register: %v (auth user %q, user header %q)", err, gotAuth, gotUser)
	}
	// With the owner's credentials (hzn register -u): Basic in the user header, the node
	// token still the request's own credentials.
	if _, err := c.register(ctx, reg, registrationBody{}, "o/bob:bobpw"); err != nil || gotAuth != "o/n" ||
		gotUser != "Basic "+base64.StdEncoding.EncodeToString([]byte("o/bob:bobpw")) {
		t.Fatalf("register with a user: %v (auth user %q, user header %q)", err, gotAuth, gotUser)
	}
	// Releasing the keys: a statement the agbot verifies with the registered keys.
	if held, err := c.release(ctx, reg, keys); err != nil || !held {
		t.Fatalf("release: %v %v", held, err)
	}
	var rel struct {
		Time      time.Time `json:"time"`
		Signature []byte    `json:"signature"`
	}
	if err := json.Unmarshal(released, &rel); err != nil {
		t.Fatalf("release body %s: %v", released, err)
	}
	if err := protocol.VerifyKeyRelease(keys.Public(), "o/n", rel.Time, time.Now(), rel.Signature); err != nil {
		t.Errorf("release does not verify: %v", err)
	}
	if err := protocol.VerifyKeyRelease(other.Public(), "o/n", rel.Time, time.Now(), rel.Signature); err == nil {
		t.Error("release verifies with other keys")
	}
	bad := &Registration{Org: "o", Node: "n", Token: "wrong"}
	if _, err := c.register(ctx, bad, registrationBody{}, ""); httpStatus(err) != 401 || !strings.Contains(err.Error(), "bad node token") {
		t.Errorf("wrong token: %v", err)
	}
	liar := &Registration{Org: "o", Node: "liar", Token: "tok"}
	if _, err := c.register(ctx, liar, registrationBody{}, ""); !errors.Is(err, ErrAgbotKey) {
		t.Errorf("answer whose keys do not match its fingerprint: %v, want ErrAgbotKey", err)
	}
	msgs, err := c.poll(ctx, reg, 6, 2*time.Second)
	if err != nil || len(msgs) != 1 || msgs[0].ID != 7 || string(msgs[0].Envelope) != "{}" {
		t.Fatalf("poll: %+v %v", msgs, err)
	}
	if gotQuery != "wait=2&after=6" {
		t.Errorf("poll query %q", gotQuery)
	}
	if _, err := newAgbotClient("", ""); !errors.Is(err, ErrConfig) {
		t.Errorf("no URL: %v", err)
	}
	if _, err := newAgbotClient("https://x", "/nonexistent.pem"); !errors.Is(err, ErrConfig) {
		t.Errorf("missing CA: %v", err)
	}
	// A registration.json from before http was refused does not make the node talk in clear.
	if _, err := newAgbotClient("http://agbot.example:3090", ""); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "https") {
		t.Errorf("http URL: %v, want a refusal naming https", err)
	}
}
