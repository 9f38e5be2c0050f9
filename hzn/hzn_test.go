package hzn_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
)

var (
	buildOnce sync.Once
	hznBin    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if hznBin != "" {
		os.RemoveAll(filepath.Dir(hznBin))
	}
	os.Exit(code)
}

// buildHzn builds cmd/hzn once per test binary.
func buildHzn(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hzn-bin-")
		if err != nil {
			buildErr = err
			return
		}
		hznBin = filepath.Join(dir, "hzn")
		out, err := exec.Command("go", "build", "-o", hznBin, "github.com/edge-secrets/anax-agent/cmd/hzn").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err: err, out: string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return hznBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "go build hzn: " + e.err.Error() + "\n" + e.out }

// hub is a real agbot over HTTPS with the hzn binary pointed at it.
type hub struct {
	t   *testing.T
	bin string
	env []string
	dir string
}

// startHub runs agbot init (org, admin) and serves it on loopback.
func startHub(t *testing.T, org, admin, password string) *hub {
	t.Helper()
	bin := buildHzn(t)
	dir := t.TempDir()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: org, Admin: admin, Password: password, Hash: access.CheapParams}); err != nil {
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
	// Only what the tests set: no HZN_ORG_ID or credentials from the machine, and a HOME
	// without ~/.hzn/hzn.json.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"HZN_AGBOT_URL=https://" + ln.Addr().String(), "HZN_MGMT_HUB_CERT_PATH=" + filepath.Join(dir, agbot.CertFile)}
	return &hub{t: t, bin: bin, env: env, dir: t.TempDir()}
}

// run runs hzn with extra environment and stdin, and returns stdout, stderr and the exit code.
func (h *hub) run(extraEnv []string, stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	cmd := exec.Command(h.bin, args...)
	cmd.Env = append(append([]string(nil), h.env...), extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func (h *hub) write(name, body string) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return p
}

// TestHznBinary drives the built hzn binary against a real agbot over HTTPS, as a user
// would, with anax's syntax: exchange publishing, secrets from files and stdin, prompts.
func TestHznBinary(t *testing.T) {
	h := startHub(t, "myorg", "admin", "adminpw")
	svc := h.write("service.json", `{"org":"myorg","url":"hello","version":"1.0.0","arch":"amd64",
 "deployment":{"services":{"web":{"image":"hello:1","secrets":{"db_password":{"description":"db"}}}}}}`)
	pol := h.write("policy.json", `{"service":{"name":"hello","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
 "constraints":["purpose == edge"],
 "secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"hello","serviceVersionRange":"[0.0.0,INFINITY)","enableNodeLevelSecrets":true,
   "secrets":[{"db_password":"db"}]}]}`)
	noConstraints := h.write("noconstraints.json", `{"service":{"name":"hello","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]}}`)
	pat := h.write("pattern.json", `{"name":"pat1","services":[{"serviceUrl":"hello","serviceOrgid":"myorg","serviceArch":"amd64","serviceVersions":[{"version":"1.0.0"}]}],
 "secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"hello","secrets":[{"db_password":"db"}]}]}`)
	valueFile := h.write("value", "canary-from-file")
	bobPwFile := h.write("bobpw", "bobpw\n")
	tokFile := h.write("node3-tok", "tok3\n")

	tests := []struct {
		name     string
		auth     string // HZN_EXCHANGE_USER_AUTH
		stdin    string
		args     []string
		wantOut  string // substring of stdout
		wantErr  string // substring of stderr
		wantCode int
	}{
		{"exchange version", "", "", []string{"exchange", "version"}, "2.126.1\n", "", 0},
		{"user create, password from a file", "admin:adminpw", "", []string{"exchange", "user", "create", "bob", "--password-file", bobPwFile}, "", "", 0},
		{"admin create -A", "admin:adminpw", "", []string{"ex", "user", "cr", "-A", "alice", "alicepw"}, "", "", 0},
		{"user create by non-admin", "bob:bobpw", "", []string{"exchange", "user", "create", "eve", "pw"}, "", "forbidden", 7},
		{"user list -a -N", "admin:adminpw", "", []string{"exchange", "user", "list", "-a", "-N"}, `"myorg/bob"`, "", 0},
		{"node create, token from stdin", "bob:bobpw", "tok1\n", []string{"exchange", "node", "create", "-n", "node1:-"}, "Node myorg/node1 created.", "", 0},
		{"user create, password from stdin", "admin:adminpw", "dave-pw\n", []string{"exchange", "user", "create", "dave", "-"}, "", "", 0},
		{"user create, password twice", "admin:adminpw", "", []string{"exchange", "user", "create", "frank", "pw", "--password-file", bobPwFile}, "", "not both", 1},
		{"node create, token from a file", "bob:bobpw", "", []string{"exchange", "node", "create", "-n", "node3", "--token-file", tokFile}, "Node myorg/node3 created.", "", 0},
		{"node create without a token", "bob:bobpw", "", []string{"exchange", "node", "create", "-n", "node4"}, "", "if node or token are specified then they both must be specified", 1},
		{"password from stdin logs in", "dave:dave-pw", "", []string{"sm", "secret", "list"}, "[", "", 0},
		{"password from a file logs in", "bob:bobpw", "", []string{"sm", "secret", "list"}, "[", "", 0},
		{"node list", "bob:bobpw", "", []string{"exchange", "node", "ls"}, `"myorg/node1"`, "", 0},
		{"service publish", "admin:adminpw", "", []string{"exchange", "service", "publish", "-f", svc}, "Service myorg/hello_1.0.0_amd64 published", "", 0},
		{"addpolicy refuses no constraints", "admin:adminpw", "", []string{"exchange", "deployment", "addpolicy", "-f", noConstraints, "pol0"}, "", "--no-constraints", 1},
		{"addpolicy warns of the missing secret", "admin:adminpw", "", []string{"exchange", "dep", "addp", "-f", pol, "pol1"}, "Deployment policy: myorg/pol1 added in the Horizon Exchange", `Warning: secret "db"`, 0},
		{"listpolicy", "admin:adminpw", "", []string{"exchange", "deployment", "listpolicy"}, `"myorg/pol1"`, "", 0},
		{"pattern publish, name from the file", "admin:adminpw", "", []string{"exchange", "pattern", "publish", "-f", pat}, "Pattern myorg/pat1 published", "", 0},
		{"sm add", "admin:adminpw", "", []string{"secretsmanager", "secret", "add", "--secretKey", "dbuser", "--secretDetail", "canary-org", "db"}, `Secret "db" successfully added to the secrets manager.`, "", 0},
		{"sm add exists: prompt answered n", "admin:adminpw", "n\n", []string{"sm", "secret", "add", "--secretKey", "dbuser", "-d", "x", "db"}, "already exists in the secrets manager. Do you want to overwrite? [y/N]: Exiting.", "", 0},
		{"sm add exists: prompt answered y, value from a file", "admin:adminpw", "y\n", []string{"sm", "secret", "add", "--secretKey", "dbuser", "-f", valueFile, "db"}, `Secret "db" successfully added`, "", 0},
		{"sm read after the prompt", "admin:adminpw", "", []string{"sm", "secret", "read", "db"}, `"value": "canary-from-file"`, "", 0},
		{"sm add node, flags after name", "admin:adminpw", "", []string{"secretmanager", "secret", "add", "db", "--secretKey", "dbuser", "--secretDetail", "canary-node", "-n", "node1"}, `Secret "node/node1/db" successfully added`, "", 0},
		{"sm add user from stdin", "bob:bobpw", "canary-user", []string{"sm", "secret", "add", "--secretKey", "tok", "-f", "-", "user/bob/token"}, `Secret "user/bob/token" successfully added`, "", 0},
		{"sm add user node, password from stdin", "", "bobpw\n", []string{"sm", "secret", "add", "-o", "myorg", "-u", "bob:-", "--secretKey", "tok", "--secretDetail", "canary-un", "--nodeId", "node1", "user/bob/token"}, `Secret "user/bob/node/node1/token" successfully added`, "", 0},
		{"stdin for both the password and the value", "", "x", []string{"sm", "secret", "add", "-o", "myorg", "-u", "bob:-", "--secretKey", "tok", "-f", "-", "user/bob/t2"}, "", "can not both be read from stdin", 1},
		{"sm list", "admin:adminpw", "", []string{"sm", "secret", "list"}, "[\n  \"db\"\n]\n", "", 0},
		{"sm list -a", "admin:adminpw", "", []string{"sm", "secret", "ls", "-a"}, `"user/bob/node/node1/token"`, "", 0},
		{"sm list -n", "admin:adminpw", "", []string{"sm", "secret", "list", "-n", "node1"}, `"node/node1/db"`, "", 0},
		{"sm list one", "admin:adminpw", "", []string{"sm", "secret", "list", "db"}, "{\n  \"exists\": true\n}\n", "", 0},
		{"sm list missing exits 1", "admin:adminpw", "", []string{"sm", "secret", "list", "nope"}, "{\n  \"exists\": false\n}\n", "", 1},
		{"sm read node", "admin:adminpw", "", []string{"sm", "secret", "read", "-n", "node1", "db"}, `"value": "canary-node"`, "", 0},
		{"sm read user stdin value", "bob:bobpw", "", []string{"sm", "secret", "read", "user/bob/token"}, `"value": "canary-user"`, "", 0},
		{"sm add keeps a trailing newline, as anax", "bob:bobpw", "canary-nl\n", []string{"sm", "secret", "add", "-O", "--secretKey", "k", "-f-", "user/bob/nl"}, "successfully added", "", 0},
		{"sm read the newline back", "bob:bobpw", "", []string{"sm", "secret", "read", "user/bob/nl"}, `"value": "canary-nl\n"`, "", 0},
		{"sm read forbidden", "bob:bobpw", "", []string{"sm", "secret", "read", "db"}, "", "Error: Permission denied", 7},
		{"sm read bad name", "admin:adminpw", "", []string{"sm", "secret", "read", "openhorizon/db"}, "", `must not start with "openhorizon/"`, 7},
		{"sm remove asks", "admin:adminpw", "n\n", []string{"sm", "secret", "remove", "db"}, "Are you sure you want to remove secret db from the secrets manager? [y/N]: Exiting.", "", 0},
		{"sm remove node", "admin:adminpw", "", []string{"sm", "secret", "rm", "-f", "-n", "node1", "db"}, `Secret "node/node1/db" successfully deleted from the secrets manager.`, "", 0},
		{"sm remove, answered y", "admin:adminpw", "y\n", []string{"sm", "secret", "remove", "db"}, `Secret "db" successfully deleted`, "", 0},
		{"sm remove missing", "admin:adminpw", "", []string{"sm", "secret", "remove", "-f", "db"}, "", "not found in the secrets manager, nothing to remove", 7},
		{"removepolicy -f", "admin:adminpw", "", []string{"exchange", "deployment", "removepolicy", "-f", "pol1"}, "Deployment policy myorg/pol1 removed", "", 0},
		{"kingpin usage error exits 1", "admin:adminpw", "", []string{"sm", "secret", "add", "db"}, "", "required flag(s) '--secretKey' not provided", 1},
		{"-f and -d together", "admin:adminpw", "", []string{"sm", "secret", "add", "--secretKey", "k", "-d", "v", "-f", valueFile, "db"}, "", "-f is mutually exclusive with --secretDetail.", 1},
		{"unknown command", "admin:adminpw", "", []string{"sm", "nope"}, "", `expected command but got "nope"`, 1},
		{"wrong password", "admin:wrong", "", []string{"sm", "secret", "list"}, "", "Failed to authenticate", 7},
		{"no credentials", "", "", []string{"sm", "secret", "list", "-o", "myorg"}, "", "exchange user authentication must be specified", 1},
		{"help", "", "", []string{"sm", "secret", "add", "--help"}, "--secretKey=SECRETKEY", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var env []string
			if tc.auth != "" {
				env = []string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=" + tc.auth}
			}
			out, errOut, code := h.run(env, tc.stdin, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("hzn %s\n exit %d (want %d)\n stdout %q (want %q)\n stderr %q (want %q)", strings.Join(tc.args, " "), code, tc.wantCode, out, tc.wantOut, errOut, tc.wantErr)
			}
			for _, canary := range []string{"canary-org", "canary-node", "canary-user", "canary-un", "canary-from-file", "canary-nl"} {
				if strings.Contains(errOut, canary) {
					t.Errorf("stderr holds a secret value: %q", errOut)
				}
			}
		})
	}
}

// TestRegisterCreatesNode: register -u creates the node on the agbot with the user's
// credentials before asking the agent, as anax's register does; an existing node is left
// alone. (The agent here is absent, so the command then fails with anax's HTTP exit code.)
func TestRegisterCreatesNode(t *testing.T) {
	h := startHub(t, "myorg", "admin", "adminpw")
	noAgent := []string{"HZN_AGENT_SOCKET=" + h.write("no-agent.sock", "")}
	tests := []struct {
		name    string
		args    []string
		wantOut string
	}{
		{"creates the node", []string{"register", "-n", "edge9:tok9", "-o", "myorg", "-u", "admin:adminpw", "-p", "pat"}, "Node myorg/edge9 created on the agbot."},
		{"leaves an existing node", []string{"register", "-n", "edge9:tok9", "-o", "myorg", "-u", "admin:adminpw"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.run(noAgent, "", tc.args...)
			if code != 5 || !strings.Contains(out, tc.wantOut) || (tc.wantOut == "" && strings.Contains(out, "created")) {
				t.Errorf("hzn %q = %d %q %q; want exit 5 (no agent) and %q", tc.args, code, out, errOut, tc.wantOut)
			}
		})
	}
	out, errOut, code := h.run([]string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=admin:adminpw"}, "", "exchange", "node", "list", "edge9")
	if code != 0 || !strings.Contains(out, `"myorg/edge9"`) || !strings.Contains(out, `"owner": "admin"`) {
		t.Errorf("node edge9 on the agbot: %d %q %q", code, out, errOut)
	}
	// The token given to register is the node's: the node authenticates with it.
	out, errOut, code = h.run([]string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=edge9:tok9"}, "", "sm", "secret", "list")
	if code != 7 || !strings.Contains(errOut, "node credentials") {
		t.Errorf("node edge9 authenticating with tok9: %d %q %q; want the node's refusal (nodes can not use the secrets API)", code, out, errOut)
	}
}

// TestNodeTokensOffArgv: the tokens read from stdin and from a file are the nodes'
// credentials on the agbot.
func TestNodeTokensOffArgv(t *testing.T) {
	h := startHub(t, "myorg", "admin", "adminpw")
	tokFile := h.write("tok3", "tok3\n")
	user := []string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=admin:adminpw"}
	for _, args := range [][]string{{"exchange", "node", "create", "-n", "node2:-"}, {"exchange", "node", "create", "-n", "node3", "--token-file", tokFile}} {
		if out, errOut, code := h.run(user, "tok2\n", args...); code != 0 {
			t.Fatalf("hzn %q = %d %q %q", args, code, out, errOut)
		}
	}
	for node, tok := range map[string]string{"node2": "tok2", "node3": "tok3"} {
		// A node's credentials are refused by the secrets API with the node rule, not 401.
		_, errOut, code := h.run([]string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=" + node + ":" + tok}, "", "sm", "secret", "list")
		if code != 7 || !strings.Contains(errOut, "node credentials") {
			t.Errorf("node %s with token %q: %d %q; want the node rule (authenticated)", node, tok, code, errOut)
		}
	}
}

// TestSecretStatus: hzn sm secret status prints the agbot's rollout summary (-o json: the whole
// answer), authorised like read: a user can not see an org secret's rollout. The rollout data
// itself is tested with real agents in agbot and test/reliability.
func TestSecretStatus(t *testing.T) {
	h := startHub(t, "myorg", "admin", "adminpw")
	admin := []string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=admin:adminpw"}
	if _, errOut, code := h.run(admin, "", "exchange", "user", "create", "bob", "bobpw"); code != 0 {
		t.Fatalf("user create: %d %s", code, errOut)
	}
	if _, errOut, code := h.run(admin, "v1\n", "sm", "secret", "add", "--secretKey", "k", "-f", "-", "db_password"); code != 0 {
		t.Fatalf("add: %d %s", code, errOut)
	}
	tests := []struct {
		name     string
		env      []string
		args     []string
		code     int
		out, err string
	}{
		{"summary", admin, []string{"sm", "secret", "status", "db_password"}, 0, "db_password: not delivered to any agreement", ""},
		{"json", admin, []string{"sm", "secret", "status", "--output", "json", "db_password"}, 0, `"summary": "db_password: not delivered to any agreement"`, ""},
		{"node filter", admin, []string{"sm", "secret", "status", "-n", "node1", "db_password"}, 0, "not delivered", ""},
		{"a user may not see an org secret's rollout", []string{"HZN_ORG_ID=myorg", "HZN_EXCHANGE_USER_AUTH=bob:bobpw"}, []string{"sm", "secret", "status", "db_password"}, 7, "", "Error: forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.run(tc.env, "", tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
				t.Fatalf("hzn %q = %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errOut, tc.code, tc.out, tc.err)
			}
			if strings.Contains(out+errOut, "v1") && tc.code == 0 && !strings.Contains(tc.out, "v1") {
				t.Error("the status printed the secret's value")
			}
		})
	}
}
