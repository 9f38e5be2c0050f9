package hzn

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeAgent serves the agent's local API on a unix socket and records what hzn sent.
type fakeAgent struct {
	sock string
	mu   sync.Mutex
	reqs []string
	body map[string]any
}

func newFakeAgent(t *testing.T) *fakeAgent {
	f := &fakeAgent{sock: filepath.Join(t.TempDir(), "api.sock")}
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	registered := true
	mux := http.NewServeMux()
	record := func(r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.Path)
		if r.Body != nil {
			b, _ := io.ReadAll(r.Body)
			if len(b) > 0 {
				json.Unmarshal(b, &f.body)
			}
		}
	}
	mux.HandleFunc("GET /node", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		if !registered {
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"node is not registered"}`))
			return
		}
		w.Write([]byte(`{"id":"o/n1","agbotId":"ab","agbotFingerprint":"SHA256:x"}`))
	})
	for path, body := range map[string]string{
		"/node/policy":    `{"properties":[{"name":"zone","value":"a"}],"constraints":[],"deployment":{"properties":[{"name":"openhorizon.cpu","value":2}]}}`,
		"/node/userinput": `[{"serviceOrgid":"o","serviceUrl":"s","inputs":[{"name":"GREETING","value":"hi"}]}]`,
	} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			record(r)
			if !registered {
				w.WriteHeader(404)
				w.Write([]byte(`{"error":"node is not registered"}`))
				return
			}
			w.Write([]byte(body))
		})
	}
	mux.HandleFunc("POST /node", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(201)
		w.Write([]byte(`{"id":"o/n1","agbotId":"ab","agbotFingerprint":"SHA256:x"}`))
	})
	mux.HandleFunc("DELETE /node", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		registered = false
		w.Write([]byte(`{"node":"o/n1","cancelled":["a1","a2"],"notDelivered":["a2"]}`))
	})
	mux.HandleFunc("GET /agreement", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Write([]byte(`[{"id":"a1","instance":"a1-web","agbot":"ab","phase":"active","service":{"org":"o","url":"hello","version":"1.0.0","arch":"amd64"},"secrets":[{"name":"db","digest":"abc"}]}]`))
	})
	mux.HandleFunc("GET /agreement/{id}", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.WriteHeader(404)
		w.Write([]byte(`{"error":"agreement \"x\": agreement not found"}`))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Write([]byte(`{"registered":true,"secretfs":{"mode":"mount-swap"}}`))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

func runAgentCmd(t *testing.T, f *fakeAgent, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	env := map[string]string{"HZN_AGENT_SOCKET": f.sock}
	code := Main(args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func TestAgentCommands(t *testing.T) {
	f := newFakeAgent(t)
	pol := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(pol, []byte(`{"properties":[{"name":"zone","value":"a"}],"constraints":[]}`), 0o600)
	ui := filepath.Join(t.TempDir(), "ui.json")
	os.WriteFile(ui, []byte(`[{"serviceOrgid":"o","serviceUrl":"s","inputs":[{"name":"GREETING","value":"hi"}]}]`), 0o600)

	tests := []struct {
		name     string
		stdin    string
		args     []string
		code     int
		out, err string
		req      string
	}{
		{"register", "", []string{"register", "-n", "n1:tok", "--policy", pol, "--pattern", "o/p"}, 0, "Node o/n1 registered with agbot ab (its key SHA256:x is pinned).\nHorizon node is registered.", "", "POST /node"},
		{"register, token from stdin", "tok\n", []string{"reg", "-n", "n1:-", "o", "p"}, 0, "Horizon node is registered.", "", "POST /node"},
		{"register, -o and the org argument", "", []string{"register", "-n", "n1:tok", "-o", "o", "o", "p"}, 1, "", "-o and -p are mutually exclusive with <nodeorg> and <pattern> arguments.", ""},
		{"register without token", "", []string{"register", "-n", "n1"}, 1, "", "the node token is missing", ""},
		{"register with a missing policy file", "", []string{"register", "-n", "n1:t", "--policy", "/nonexistent"}, 4, "", "--policy", ""},
		{"register -f with user input", "", []string{"register", "-n", "n1:t", "-f", ui}, 0, "Horizon node is registered.", "", "POST /node"},
		{"register -f with a missing file", "", []string{"register", "-n", "n1:t", "-f", "/nonexistent"}, 4, "", "--input-file", ""},
		{"register -s waits for the service", "", []string{"register", "-n", "n1:t", "-s", "hello", "--serviceorg", "o", "-t", "5"}, 0, "Service o/hello is started.", "", "GET /agreement"},
		{"node list", "", []string{"node", "list"}, 0, `"id": "n1"`, "", "GET /node"},
		{"policy list", "", []string{"policy", "list"}, 0, "\"name\": \"openhorizon.cpu\",\n", "", "GET /node/policy"},
		{"userinput list", "", []string{"u", "ls"}, 0, "\"serviceUrl\": \"s\"", "", "GET /node/userinput"},
		{"agreement list", "", []string{"agreement", "list"}, 0, `"current_agreement_id": "a1"`, "", "GET /agreement"},
		{"agreement list keeps digests", "", []string{"ag", "ls"}, 0, `"digest": "abc"`, "", "GET /agreement"},
		{"agreement list -r", "", []string{"agreement", "list", "-r"}, 0, "[]", "", ""},
		{"agreement list ID", "", []string{"agreement", "list", "x"}, 7, "", "agreement not found (HTTP 404)", "GET /agreement/x"},
		{"agent status", "", []string{"agent", "status"}, 0, `"mode": "mount-swap"`, "", "GET /status"},
		{"unregister -r without credentials", "", []string{"unregister", "-f", "-r"}, 5, "", "-r removes the node from the agbot", "GET /node"},
		{"unregister answered no", "n\n", []string{"unregister"}, 0, "[y/N]: Exiting.", "", "GET /node"},
		{"unregister answered yes", "y\n", []string{"unreg"}, 0, "node o/n1 unregistered: 2 agreements cancelled, secrets wiped (1 cancels not delivered", "", "DELETE /node"},
		{"node list after", "", []string{"node", "ls"}, 0, `"state": "unconfigured"`, "", "GET /node"},
		{"policy list after", "", []string{"pol", "ls"}, 0, "\"deployment\": {\n    \"properties\": null,", "", "GET /node/policy"},
		{"userinput list after", "", []string{"userinput", "list"}, 0, "[]\n", "", "GET /node/userinput"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			f.reqs = nil
			f.mu.Unlock()
			code, out, errOut := runAgentCmd(t, f, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
				t.Fatalf("hzn %q = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errOut, tc.code, tc.out, tc.err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.req != "" && (len(f.reqs) == 0 || f.reqs[len(f.reqs)-1] != tc.req) {
				t.Errorf("requests %q, want the last to be %q", f.reqs, tc.req)
			}
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.body == nil {
		t.Fatal("no request body recorded")
	}
}

func TestRegisterBody(t *testing.T) {
	f := newFakeAgent(t)
	pol := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(pol, []byte(`{"properties":[{"name":"zone","value":"a"}],"constraints":["x == 1"]}`), 0o600)
	if code, _, errOut := runAgentCmd(t, f, "", "register", "-n", "n1:se:cret", "-o", "myorg", "--policy", pol, "--pattern", "myorg/p"); code != 0 {
		t.Fatalf("register: %d %s", code, errOut)
	}
	b := f.body
	if b["node"] != "n1" || b["token"] != "se:cret" || b["org"] != "myorg" || b["pattern"] != "myorg/p" {
		t.Errorf("body %v", b)
	}
	p, _ := b["policy"].(map[string]any)
	if cs, _ := p["constraints"].([]any); len(cs) != 1 {
		t.Errorf("policy not passed through: %v", b["policy"])
	}
}

func TestAgentSocketMissing(t *testing.T) {
	var out, errb strings.Builder
	env := map[string]string{"HZN_AGENT_SOCKET": filepath.Join(t.TempDir(), "none.sock")}
	code := Main([]string{"agent", "status"}, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] })
	if code != ExitHTTP || !strings.Contains(errb.String(), "HZN_AGENT_SOCKET") {
		t.Errorf("no agent: %d %q", code, errb.String())
	}
}

// TestRegisterCredentialForms: the node token and the -u password come from argv (anax's
// form), from the first line of stdin ("-") or from a file; conflicting forms are input errors
// (anax's exit 1), a missing file a file error (4).
func TestRegisterCredentialForms(t *testing.T) {
	f := newFakeAgent(t)
	dir := t.TempDir()
	write := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokFile, pwFile, empty := write("tok", "tok-file\n"), write("pw", "pw-file\r\n"), write("empty", "")
	tests := []struct {
		name, stdin string
		args        []string
		code        int
		token, user string // body fields wanted (code 0)
		err         string // stderr wanted (code != 0)
	}{
		{"token on argv", "", []string{"-n", "n1:tok"}, 0, "tok", "", ""},
		{"token from stdin", "tok-stdin\nrest\n", []string{"-n", "n1:-"}, 0, "tok-stdin", "", ""},
		{"token from a file", "", []string{"-n", "n1", "--token-file", tokFile}, 0, "tok-file", "", ""},
		{"user on argv", "", []string{"-n", "n1:tok", "-u", "bob:pw"}, 0, "tok", "bob:pw", ""},
		{"user password from stdin", "pw-stdin\n", []string{"-n", "n1:tok", "-u", "bob:-"}, 0, "tok", "bob:pw-stdin", ""},
		{"user password from a file", "", []string{"-n", "n1:tok", "-u", "myorg/bob", "--password-file", pwFile}, 0, "tok", "myorg/bob:pw-file", ""},
		{"token from stdin and password from a file", "t2\n", []string{"-n", "n1:-", "-u", "bob", "--password-file", pwFile}, 0, "t2", "bob:pw-file", ""},
		{"both from stdin", "x\ny\n", []string{"-n", "n1:-", "-u", "bob:-"}, 1, "", "", "can not both be read from stdin"},
		{"token on argv and in a file", "", []string{"-n", "n1:tok", "--token-file", tokFile}, 1, "", "", "not both"},
		{"empty stdin", "", []string{"-n", "n1:-"}, 1, "", "", "must be one non-empty line"},
		{"empty token file", "", []string{"-n", "n1", "--token-file", empty}, 1, "", "", "must be one non-empty line"},
		{"missing token file", "", []string{"-n", "n1", "--token-file", filepath.Join(dir, "none")}, 4, "", "", "node token file"},
		{"user without password", "", []string{"-n", "n1:tok", "-u", "bob"}, 1, "", "", "want -u USER:PASSWORD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.mu.Lock()
			f.body = nil
			f.mu.Unlock()
			code, _, errOut := runAgentCmd(t, f, tc.stdin, append([]string{"register"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errOut, tc.err) {
				t.Fatalf("hzn register %q = %d, stderr %q; want %d, %q", tc.args, code, errOut, tc.code, tc.err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.code != 0 {
				if f.body != nil {
					t.Errorf("a refused command reached the agent: %v", f.body)
				}
				return
			}
			if user, _ := f.body["user"].(string); f.body["token"] != tc.token || user != tc.user {
				t.Errorf("body token %q user %q, want %q %q", f.body["token"], user, tc.token, tc.user)
			}
		})
	}
}
