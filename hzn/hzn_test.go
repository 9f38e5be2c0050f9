package hzn_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
)

// TestHznBinary drives the built hzn binary against a real agbot over HTTPS, as a user would.
func TestHznBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "hzn")
	build := exec.Command("go", "build", "-o", bin, "github.com/edge-secrets/anax-agent/cmd/hzn")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build hzn: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: "myorg", Admin: "admin", Password: "adminpw", Hash: access.CheapParams}); err != nil {
		t.Fatal(err)
	}
	srv, err := agbot.Open(agbot.Options{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hash: access.CheapParams})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	files := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	svc := write("service.json", `{"org":"myorg","url":"hello","version":"1.0.0","arch":"amd64",
 "deployment":{"services":{"web":{"image":"hello:1","secrets":{"db_password":{"description":"db"}}}}}}`)
	pol := write("policy.json", `{"service":{"name":"hello","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
 "constraints":["purpose == edge"],
 "secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"hello","serviceVersionRange":"[0.0.0,INFINITY)","enableNodeLevelSecrets":true,
   "secrets":[{"db_password":"db"}]}]}`)
	pat := write("pattern.json", `{"services":[{"serviceUrl":"hello","serviceOrgid":"myorg","serviceArch":"amd64","serviceVersions":[{"version":"1.0.0"}]}],
 "secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"hello","secrets":[{"db_password":"db"}]}]}`)
	valueFile := write("value", "canary-from-file")
	pwFile := write("erin-pw", "erin-pw\n")
	tokFile := write("node3-tok", "tok3\n")

	env := []string{"HZN_AGBOT_URL=https://" + ln.Addr().String(), "HZN_AGBOT_CA=" + filepath.Join(dir, agbot.CertFile), "HZN_ORG_ID=myorg"}
	run := func(auth, stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(env, "HZN_EXCHANGE_USER_AUTH="+auth)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	tests := []struct {
		name     string
		auth     string
		stdin    string
		args     []string
		wantOut  string // substring of stdout
		wantErr  string // substring of stderr
		wantCode int
	}{
		{"user create", "admin:adminpw", "", []string{"exchange", "user", "create", "bob", "bobpw"}, "user myorg/bob created (admin: false)\n", "", 0},
		{"admin create", "admin:adminpw", "", []string{"exchange", "user", "create", "--admin", "alice", "alicepw"}, "(admin: true)", "", 0},
		{"user create by non-admin", "bob:bobpw", "", []string{"exchange", "user", "create", "eve", "pw"}, "", "forbidden", 1},
		{"node create", "bob:bobpw", "", []string{"exchange", "node", "create", "-n", "node1:tok1"}, "node myorg/node1 created (owner bob)\n", "", 0},
		// Tokens and passwords off argv: from stdin ("-") or a file.
		{"user create password from stdin", "admin:adminpw", "dave-pw\n", []string{"exchange", "user", "create", "dave", "-"}, "user myorg/dave created", "", 0},
		{"user create password from a file", "admin:adminpw", "", []string{"exchange", "user", "create", "erin", "--password-file", pwFile}, "user myorg/erin created", "", 0},
		{"user create password twice", "admin:adminpw", "", []string{"exchange", "user", "create", "frank", "pw", "--password-file", pwFile}, "", "not both", 2},
		{"node create token from stdin", "bob:bobpw", "tok2\n", []string{"exchange", "node", "create", "-n", "node2:-"}, "node myorg/node2 created (owner bob)", "", 0},
		{"node create token from a file", "bob:bobpw", "", []string{"exchange", "node", "create", "-n", "node3", "--token-file", tokFile}, "node myorg/node3 created (owner bob)", "", 0},
		{"node create without a token", "bob:bobpw", "", []string{"exchange", "node", "create", "-n", "node4"}, "", "-n NODE needs :TOKEN, :- or --token-file FILE", 2},
		{"service publish", "admin:adminpw", "", []string{"exchange", "service", "publish", "-f", svc}, "service myorg/hello_1.0.0_amd64 published\n", "", 0},
		{"addpolicy warns of the missing secret", "admin:adminpw", "", []string{"exchange", "deployment", "addpolicy", "-f", pol, "pol1"}, "deployment policy myorg/pol1 added\n", `warning: secret "db"`, 0},
		{"listpolicy", "admin:adminpw", "", []string{"exchange", "deployment", "listpolicy"}, `"myorg/pol1"`, "", 0},
		{"pattern publish", "admin:adminpw", "", []string{"exchange", "pattern", "publish", "-f", pat, "-p", "pat1"}, "pattern myorg/pat1 published\n", "", 0},
		{"sm add", "admin:adminpw", "", []string{"secretsmanager", "secret", "add", "--secretKey", "dbuser", "--secretDetail", "canary-org", "db"}, `secret "db" added to org myorg (version 1)` + "\n", "", 0},
		{"sm add exists", "admin:adminpw", "", []string{"sm", "secret", "add", "--secretKey", "dbuser", "--secretDetail", "x", "db"}, "", "already exists in org myorg: use -O", 1},
		{"sm add -O from file", "admin:adminpw", "", []string{"sm", "secret", "add", "--secretKey", "dbuser", "-f", valueFile, "-O", "db"}, "(version 2)", "", 0},
		{"sm add node, flags after name", "admin:adminpw", "", []string{"sm", "secret", "add", "db", "--secretKey", "dbuser", "--secretDetail", "canary-node", "-n", "node1"}, `secret "node/node1/db" added`, "", 0},
		{"sm add user from stdin", "bob:bobpw", "canary-user\n", []string{"sm", "secret", "add", "--secretKey", "tok", "-f", "-", "user/bob/token"}, `secret "user/bob/token" added`, "", 0},
		{"sm add user node", "bob:bobpw", "", []string{"sm", "secret", "add", "--secretKey", "tok", "--secretDetail", "canary-un", "-n", "node1", "user/bob/token"}, `secret "user/bob/node/node1/token" added`, "", 0},
		{"sm list", "admin:adminpw", "", []string{"sm", "secret", "list"}, "[\n  \"db\"\n]\n", "", 0},
		{"password from stdin logs in", "dave:dave-pw", "", []string{"sm", "secret", "list"}, `"db"`, "", 0},
		{"password from a file logs in", "erin:erin-pw", "", []string{"sm", "secret", "list"}, `"db"`, "", 0},
		{"sm list node scope", "admin:adminpw", "", []string{"sm", "secret", "list", "node/node1"}, `"node/node1/db"`, "", 0},
		{"sm list one", "admin:adminpw", "", []string{"sm", "secret", "list", "db"}, `"db"`, "", 0},
		{"sm list missing", "admin:adminpw", "", []string{"sm", "secret", "list", "nope"}, "", "not found", 1},
		{"sm read", "admin:adminpw", "", []string{"sm", "secret", "read", "db"}, `"value": "canary-from-file"`, "", 0},
		{"sm read node", "admin:adminpw", "", []string{"sm", "secret", "read", "-n", "node1", "db"}, `"value": "canary-node"`, "", 0},
		{"sm read user stdin value", "bob:bobpw", "", []string{"sm", "secret", "read", "user/bob/token"}, `"value": "canary-user"`, "", 0},
		{"sm read forbidden", "bob:bobpw", "", []string{"sm", "secret", "read", "db"}, "", "forbidden", 1},
		{"sm read bad name", "admin:adminpw", "", []string{"sm", "secret", "read", "openhorizon/db"}, "", `must not start with "openhorizon/"`, 1},
		{"sm remove node", "admin:adminpw", "", []string{"sm", "secret", "remove", "-n", "node1", "db"}, `secret "node/node1/db" removed from org myorg`, "", 0},
		{"sm remove", "admin:adminpw", "", []string{"sm", "secret", "remove", "db"}, `secret "db" removed`, "", 0},
		{"sm remove missing", "admin:adminpw", "", []string{"sm", "secret", "remove", "db"}, "", "not found", 1},
		{"removepolicy", "admin:adminpw", "", []string{"exchange", "deployment", "removepolicy", "pol1"}, "deployment policy myorg/pol1 removed", "", 0},
		{"usage error", "admin:adminpw", "", []string{"sm", "secret", "add", "db"}, "", "--secretKey is required", 2},
		{"unknown command", "admin:adminpw", "", []string{"sm", "nope"}, "", `unknown command "nope"`, 2},
		{"wrong password", "admin:wrong", "", []string{"sm", "secret", "list"}, "", "HTTP 401", 1},
		{"help", "", "", []string{"sm", "secret", "add", "--help"}, "-secretKey string", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(tc.auth, tc.stdin, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("hzn %s\n exit %d (want %d)\n stdout %q (want %q)\n stderr %q (want %q)", strings.Join(tc.args, " "), code, tc.wantCode, out, tc.wantOut, errOut, tc.wantErr)
			}
			if tc.wantCode != 0 && out != "" {
				t.Errorf("failing command wrote to stdout: %q", out)
			}
		})
	}
	// The tokens read from stdin and from a file are the nodes' credentials.
	pem, err := os.ReadFile(filepath.Join(dir, agbot.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for node, tok := range map[string]string{"node2": "tok2", "node3": "tok3"} {
		req, _ := http.NewRequest("GET", "https://"+ln.Addr().String()+"/org/myorg/nodes/"+node, nil)
		req.SetBasicAuth("myorg/"+node, tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("node %s with token %q: HTTP %d, want 200", node, tok, resp.StatusCode)
		}
	}
}
