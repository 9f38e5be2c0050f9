package reliability

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/test/e2e"
)

// apiEnv is a real agbot process (agbot init, agbot serve) with two orgs, users, nodes, a
// service, a policy and an agreement node1 accepted.
type apiEnv struct {
	t        *testing.T
	b        *e2e.Agbot
	client   *http.Client
	info     api.AgbotInfo
	node1    *party
	agID     string
	accepted []byte // node1's sealed acceptance of its proposal, for a replay
}

const (
	admin  = "myorg/admin:adminpw"
	bob    = "myorg/bob:bobpw"
	carol  = "myorg/carol:carolpw"
	node1  = "myorg/node1:tok1"
	node2  = "myorg/node2:tok2"
	admin2 = "org2/admin2:admin2pw"
)

func newAPIEnv(t *testing.T) *apiEnv {
	bin := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	b, err := e2e.NewAgbot(ctx, bin, dir, "myorg", "admin", "adminpw", nil)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin.Agbot, "init", "--data-dir", b.Dir, "--org", "org2", "--admin", "admin2:admin2pw").CombinedOutput(); err != nil {
		t.Fatalf("agbot init org2: %v: %s", err, out)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("agbot did not stop cleanly: %v", err)
		}
	})
	pem, err := os.ReadFile(b.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	e := &apiEnv{t: t, b: b, client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}}
	e.must(admin, "POST", "/org/myorg/users/bob", `{"password":"bobpw"}`, 201)
	e.must(admin, "POST", "/org/myorg/users/carol", `{"password":"carolpw"}`, 201)
	e.must(bob, "PUT", "/org/myorg/nodes/node1", `{"token":"tok1"}`, 201)
	e.must(carol, "PUT", "/org/myorg/nodes/node2", `{"token":"tok2"}`, 201)
	e.must(admin, "PUT", "/org/myorg/secrets/db", `{"key":"k","value":"`+canaryDB+`"}`, 201)
	e.must(admin, "PUT", "/org/myorg/secrets/node/node1/db", `{"key":"k","value":"`+canaryDB+`-node1"}`, 201)
	e.must(bob, "PUT", "/org/myorg/secrets/user/bob/api", `{"key":"t","value":"`+canaryTok+`"}`, 201)
	e.must(admin2, "PUT", "/org/org2/secrets/db", `{"key":"k","value":"`+canaryDB+`-org2"}`, 201)
	e.must(admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"reader","version":"1.0.0","arch":"amd64",
		"deployment":{"services":{"web":{"image":"localhost/reader:1","secrets":{"db_password":{}}}}}}`, 201)
	e.must(admin, "PUT", "/org/myorg/business/policies/pol", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
		"constraints":["purpose == edge"],"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64",
		"serviceVersionRange":"[0.0.0,INFINITY)","enableNodeLevelSecrets":true,"secrets":[{"db_password":"db"}]}]}`, 201)
	raw := e.must("", "GET", "/agbot", "", 200)
	if err := json.Unmarshal(raw, &e.info); err != nil {
		t.Fatal(err)
	}
	// node1 registers, gets its proposal and accepts it: a live agreement.
	e.node1 = newParty(t, "myorg/node1")
	reg := toJSON(t, map[string]any{"publicKeys": e.node1.keys.Public(), "arch": "amd64",
		"properties": []any{map[string]any{"name": "purpose", "value": "edge"}}})
	e.must(node1, "PUT", "/org/myorg/nodes/node1/registration", string(reg), 200)
	ep := &protocol.Endpoint{ID: e.node1.id, Keys: e.node1.keys, Peers: protocol.StaticKeyRing{e.info.ID: e.info.PublicKeys}, Agreements: &protocol.AgreementKeyMap{}}
	var msgs api.Messages
	if err := json.Unmarshal(e.must(node1, "GET", "/org/myorg/nodes/node1/msgs?wait=10", "", 200), &msgs); err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("node1 poll: %v, %d messages", err, len(msgs.Messages))
	}
	m, err := ep.Open(msgs.Messages[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	p := m.(*protocol.Proposal)
	e.agID = p.Agreement
	reply, err := ep.Seal(&protocol.ProposalReply{Meta: p.ReplyMeta(protocol.TypeProposalReply), Status: protocol.StatusAccepted})
	if err != nil {
		t.Fatal(err)
	}
	e.must(node1, "POST", "/org/myorg/nodes/node1/msgs", string(reply), 204)
	e.accepted = reply
	return e
}

// do sends a request as auth ("org/id:password"; "" none; "RAW:<header>" an Authorization
// header as given).
func (e *apiEnv) do(auth, method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.b.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	if h, ok := strings.CutPrefix(auth, "RAW:"); ok {
		req.Header.Set("Authorization", h)
	} else if auth != "" {
		u, p, _ := strings.Cut(auth, ":")
		req.SetBasicAuth(u, p)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

func (e *apiEnv) must(auth, method, path, body string, want int) []byte {
	e.t.Helper()
	code, raw := e.do(auth, method, path, []byte(body))
	if code != want {
		e.t.Fatalf("%s %s as %q = %d %s, want %d", method, path, auth, code, raw, want)
	}
	return raw
}

// state is everything a refused call must leave as it was, read through the API by the
// parties allowed to read it.
func (e *apiEnv) state() string {
	var b strings.Builder
	for _, r := range []struct{ auth, path string }{
		{admin, "/org/myorg/secrets"}, {admin, "/org/myorg/secrets/db"}, {admin, "/org/myorg/secrets/node/node1"},
		{admin, "/org/myorg/secrets/node/node1/db"}, {bob, "/org/myorg/secrets/user/bob"}, {bob, "/org/myorg/secrets/user/bob/api"},
		{carol, "/org/myorg/secrets/user/carol"}, {admin, "/org/myorg/users"}, {admin, "/org/myorg/nodes"},
		{admin, "/org/myorg/services"}, {admin, "/org/myorg/business/policies"}, {admin, "/org/myorg/patterns"},
		{admin, "/org/myorg/agreements"}, {admin2, "/org/org2/secrets"}, {admin2, "/org/org2/secrets/db"},
		{admin2, "/org/org2/users"}, {admin2, "/org/org2/nodes"},
	} {
		method := "GET"
		if strings.Contains(r.path, "/secrets/") && !strings.HasSuffix(r.path, "/db") && !strings.HasSuffix(r.path, "/api") {
			method = "LIST" // a scope (user/U, node/N) is listed with LIST, as anax; GET reads one secret
		}
		code, raw := e.do(r.auth, method, r.path, nil)
		fmt.Fprintf(&b, "%s %d %s\n", r.path, code, raw)
	}
	return b.String()
}

type apiCase struct {
	name         string
	auth, method string
	path         string
	body         []byte
	want         []int  // acceptable status codes
	mention      string // a word the error must hold ("" to skip)
}

// TestHostileAPI: crafted calls against a real agbot process: wrong and malformed
// credentials, callers acting outside their rights or their org, path-like, reserved and
// look-alike names, broken, oversize and deeply nested bodies, and hostile envelopes on the
// node endpoints. Each gets a 4xx whose error names the rule and repeats no secret value;
// the agbot's state, read back through the API, is unchanged; the agbot keeps serving.
func TestHostileAPI(t *testing.T) {
	e := newAPIEnv(t)
	c := func(name, auth, method, path, body string, mention string, want ...int) apiCase {
		return apiCase{name: name, auth: auth, method: method, path: path, body: []byte(body), want: want, mention: mention}
	}
	sec := `{"key":"k","value":"` + canaryDB + `-hostile"}`
	cases := []apiCase{
		// 1. Credentials.
		c("no credentials", "", "GET", "/org/myorg/secrets", "", "Basic auth", 401),
		c("malformed Basic header", "RAW:Basic !!!", "GET", "/org/myorg/secrets", "", "Basic auth", 401),
		c("Bearer token", "RAW:Bearer abc", "GET", "/org/myorg/secrets", "", "Basic auth", 401),
		c("user without org", "admin:adminpw", "GET", "/org/myorg/secrets", "", "org/user", 401),
		c("org without user", "myorg/:adminpw", "GET", "/org/myorg/secrets", "", "org/user", 401),
		c("wrong password", "myorg/admin:wrong", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("empty password", "myorg/admin:", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("password with NUL", "myorg/admin:adminpw\x00", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("100 KB password", "myorg/admin:"+strings.Repeat("p", 100<<10), "GET", "/org/myorg/secrets", "", "", 401, 431),
		c("unknown user", "myorg/mallory:x", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("unknown org", "nope/admin:adminpw", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("org name case", "MyOrg/admin:adminpw", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("user name case", "myorg/Admin:adminpw", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),
		c("another org's admin password", "myorg/admin:admin2pw", "PUT", "/org/myorg/secrets/x", sec, "wrong credentials", 401),
		c("node with a wrong token", "myorg/node1:nope", "GET", "/org/myorg/nodes/node1/msgs?wait=0", "", "wrong credentials", 401),
		c("node token as a user password", "myorg/bob:tok1", "GET", "/org/myorg/secrets", "", "wrong credentials", 401),

		// 2. Rights: roles, ownership and orgs.
		c("node lists secrets", node1, "GET", "/org/myorg/secrets", "", "node", 403),
		c("node reads an org secret", node1, "GET", "/org/myorg/secrets/db", "", "node", 403),
		c("node writes its node secret", node1, "PUT", "/org/myorg/secrets/node/node1/db", sec, "node", 403),
		c("user reads an org secret's value", bob, "GET", "/org/myorg/secrets/db", "", "", 403),
		c("user writes an org secret", bob, "PUT", "/org/myorg/secrets/db", sec, "", 403),
		c("user deletes an org secret", bob, "DELETE", "/org/myorg/secrets/db", "", "", 403),
		c("user writes a node secret", bob, "PUT", "/org/myorg/secrets/node/node1/x", sec, "", 403),
		c("user reads another user's secret", carol, "GET", "/org/myorg/secrets/user/bob/api", "", "", 403),
		c("user lists another user's secrets", carol, "LIST", "/org/myorg/secrets/user/bob", "", "", 403),
		c("user writes another user's secret", carol, "PUT", "/org/myorg/secrets/user/bob/api", sec, "", 403),
		c("user deletes another user's secret", carol, "DELETE", "/org/myorg/secrets/user/bob/api", "", "", 403),
		c("user writes for a node of another owner", bob, "PUT", "/org/myorg/secrets/user/bob/node/node2/x", sec, "", 403),
		c("admin reads a user's secret", admin, "GET", "/org/myorg/secrets/user/bob/api", "", "", 403),
		c("admin writes a user's secret", admin, "PUT", "/org/myorg/secrets/user/bob/api", sec, "", 403),
		c("admin writes for another org's user", admin, "PUT", "/org/myorg/secrets/user/admin2/x", sec, "", 403),
		c("other org's admin lists", admin2, "GET", "/org/myorg/secrets", "", "org", 403),
		c("other org's admin reads", admin2, "GET", "/org/myorg/secrets/db", "", "org", 403),
		c("other org's admin writes", admin2, "PUT", "/org/myorg/secrets/db", sec, "org", 403),
		c("other org's admin deletes", admin2, "DELETE", "/org/myorg/secrets/db", "", "org", 403),
		c("admin reads another org", admin, "GET", "/org/org2/secrets/db", "", "org", 403),
		c("admin writes another org", admin, "PUT", "/org/org2/secrets/x", sec, "org", 403),
		c("admin creates a user in another org", admin, "POST", "/org/org2/users/eve", `{"password":"x"}`, "org", 403),
		c("admin creates a node in another org", admin, "PUT", "/org/org2/nodes/evil", `{"token":"x"}`, "org", 403),
		c("admin lists another org's nodes", admin, "GET", "/org/org2/nodes", "", "org", 403),
		c("admin deletes another org's policy", admin, "DELETE", "/org/org2/business/policies/pol", "", "org", 403, 404),
		c("user creates a user", bob, "POST", "/org/myorg/users/eve", `{"password":"x"}`, "admin", 403),
		c("user makes itself admin", bob, "PUT", "/org/myorg/users/bob", `{"password":"bobpw","admin":true}`, "admin", 403),
		c("user deletes a node of another owner", carol, "DELETE", "/org/myorg/nodes/node1", "", "", 403),
		c("user re-tokens a node of another owner", carol, "PUT", "/org/myorg/nodes/node1", `{"token":"mine"}`, "", 403),
		c("node polls another node's messages", node2, "GET", "/org/myorg/nodes/node1/msgs?wait=0", "", "node1", 401, 403),
		c("user polls a node's messages", bob, "GET", "/org/myorg/nodes/node1/msgs?wait=0", "", "node", 403),
		c("node registers as another node", node1, "PUT", "/org/myorg/nodes/node2/registration", `{}`, "node2", 403),
		c("node publishes a service", node1, "POST", "/org/myorg/services", `{}`, "node", 403),

		// 3. Bodies.
		c("body not JSON", admin, "PUT", "/org/myorg/secrets/x", "not json", "JSON", 400),
		c("empty body", admin, "PUT", "/org/myorg/secrets/x", "", "empty", 400),
		c("body an array", admin, "PUT", "/org/myorg/secrets/x", `["k","v"]`, "", 400),
		c("unknown field", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":"v","owner":"bob"}`, "owner", 400),
		c("value a number", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":5}`, "value", 400),
		c("value an object", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":{"v":"`+canaryDB+`"}}`, "value", 400),
		c("missing key", admin, "PUT", "/org/myorg/secrets/x", `{"value":"`+canaryDB+`"}`, "key", 400),
		c("value over 64 KiB", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":"`+canaryDB+strings.Repeat("v", 64<<10)+`"}`, "limit", 413),
		c("body of 10 MiB", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":"`+strings.Repeat("v", 10<<20)+`"}`, "bytes", 413),
		c("deeply nested body", admin, "PUT", "/org/myorg/secrets/x", strings.Repeat("[", 60000)+strings.Repeat("]", 60000), "", 400, 413),
		c("trailing garbage", admin, "PUT", "/org/myorg/secrets/x", `{"key":"k","value":"v"}{"key":"k2"}`, "", 400),
		c("invalid UTF-8 in value", admin, "PUT", "/org/myorg/secrets/x", "{\"key\":\"k\",\"value\":\"\xff\xfe\"}", "", 400),
		c("user body with unknown field", admin, "POST", "/org/myorg/users/eve", `{"password":"x","org":"org2"}`, "org", 400),
		c("node body without token", admin, "PUT", "/org/myorg/nodes/node9", `{}`, "token", 400),
		c("user without password", admin, "POST", "/org/myorg/users/eve", `{}`, "password", 400),
		c("PUT on a collection", admin, "PUT", "/org/myorg/secrets/node/node1", sec, "collection", 400),
		c("DELETE on a collection", admin, "DELETE", "/org/myorg/secrets/user/bob", "", "collection", 400),
		c("PATCH", admin, "PATCH", "/org/myorg/secrets/db", sec, "", 405),
		c("TRACE", admin, "TRACE", "/org/myorg/secrets/db", "", "", 405),

		// 4. Publishing with bad service secret names and bindings.
		c("service declaring ../x", admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"evil","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1","secrets":{"../x":{}}}}}}`, "secret name", 400),
		c("service declaring etc", admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"evil","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1","secrets":{"etc":{}}}}}}`, "reserved", 400),
		c("service declaring a look-alike", admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"evil","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1","secrets":{"dв_password":{}}}}}}`, "secret name", 400),
		c("service with onUpdate exec", admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"evil","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1","secrets":{"s":{"onUpdate":"exec:/bin/sh"}}}}}}`, "onUpdate", 400),
		c("service image with a space", admin, "POST", "/org/myorg/services", `{"org":"myorg","url":"evil2","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1 --privileged"}}}}`, "image", 400),
		c("service of another org", admin, "POST", "/org/myorg/services", `{"org":"org2","url":"evil","version":"1.0.0","arch":"amd64",
			"deployment":{"services":{"web":{"image":"x:1"}}}}`, "org", 400, 403),
		c("policy binding ../x", admin, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"../x"}]}]}`, "secret", 400),
		c("policy binding a scope, not a name", admin, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"user/bob"}]}]}`, "secret", 400),
		c("policy binding openhorizon/ prefix", admin, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"openhorizon/db"}]}]}`, "", 400),
		c("user publishes a policy binding an org secret", bob, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"db"}]}]}`, "org admins only", 403),
		c("user publishes a pattern binding an org secret", bob, "PUT", "/org/myorg/patterns/evil", `{"services":[{"serviceUrl":"reader","serviceOrgid":"myorg","serviceArch":"amd64","serviceVersions":[{"version":"1.0.0"}]}],
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"db"}]}]}`, "org admins only", 403),
		c("user publishes a policy binding another user's secret", carol, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"user/bob/api"}]}]}`, "only by that user", 403),
		c("admin publishes a policy binding a user's secret", admin, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"secretBinding":[{"serviceOrgid":"myorg","serviceUrl":"reader","serviceArch":"amd64","serviceVersionRange":"[0.0.0,INFINITY)","secrets":[{"db_password":"user/bob/api"}]}]}`, "only by that user", 403),
		c("policy with a broken constraint", admin, "PUT", "/org/myorg/business/policies/evil", `{"service":{"name":"reader","org":"myorg","arch":"*","serviceVersions":[{"version":"1.0.0"}]},
			"constraints":["purpose == (("]}`, "constraint", 400),
		c("user name path-like", admin, "POST", "/org/myorg/users/a:b", `{"password":"x"}`, "user", 400),
		c("node name 300 bytes", admin, "PUT", "/org/myorg/nodes/"+strings.Repeat("n", 300), `{"token":"x"}`, "node", 400),
		c("node name with colon", admin, "PUT", "/org/myorg/nodes/a:b", `{"token":"x"}`, "node", 400),

		// 5. Node endpoints.
		c("poll wait 61", node1, "GET", "/org/myorg/nodes/node1/msgs?wait=61", "", "wait", 400),
		c("poll wait -1", node1, "GET", "/org/myorg/nodes/node1/msgs?wait=-1", "", "wait", 400),
		c("poll after not a number", node1, "GET", "/org/myorg/nodes/node1/msgs?wait=0&after=x", "", "after", 400),
		c("reply not JSON", node1, "POST", "/org/myorg/nodes/node1/msgs", "garbage", "", 400),
		c("reply empty", node1, "POST", "/org/myorg/nodes/node1/msgs", "", "", 400),
		c("reply of 2 MiB", node1, "POST", "/org/myorg/nodes/node1/msgs", strings.Repeat("x", 2<<20), "", 413),
		c("reply deeply nested", node1, "POST", "/org/myorg/nodes/node1/msgs", strings.Repeat("[", 100000)+strings.Repeat("]", 100000), "", 400),
		c("registration with a short signing key", node1, "PUT", "/org/myorg/nodes/node1/registration",
			`{"publicKeys":{"signing":"AAAA","x25519":"AAAA"},"arch":"amd64"}`, "signing", 400),
		c("registration without keys", node1, "PUT", "/org/myorg/nodes/node1/registration", `{"arch":"amd64"}`, "publicKeys", 400),
		c("registration with an unknown pattern", node1, "PUT", "/org/myorg/nodes/node1/registration",
			string(toJSON(t, map[string]any{"publicKeys": e.node1.keys.Public(), "arch": "amd64", "pattern": "org2/evil"})), "pattern", 400),
		// The node token alone must not replace node1's keys (that would cancel its
		// agreements and send every value to the token holder), nor release them.
		c("node token alone re-keys the node", node1, "PUT", "/org/myorg/nodes/node1/registration",
			string(toJSON(t, map[string]any{"publicKeys": newParty(t, "myorg/node1").keys.Public(), "arch": "amd64",
				"properties": []any{map[string]any{"name": "purpose", "value": "edge"}}})), "the node token alone does not re-key a node", 403),
		c("key release signed by other keys", node1, "DELETE", "/org/myorg/nodes/node1/registration",
			keyRelease(t, newParty(t, "x").keys, time.Now()), "not signed by its registered keys", 403),
		c("key release an hour old", node1, "DELETE", "/org/myorg/nodes/node1/registration",
			keyRelease(t, e.node1.keys, time.Now().Add(-time.Hour)), "clock", 403),
		c("key release by another node", node2, "DELETE", "/org/myorg/nodes/node1/registration",
			keyRelease(t, e.node1.keys, time.Now()), "node1", 403),
		c("key release by the owner's password", bob, "DELETE", "/org/myorg/nodes/node1/registration",
			keyRelease(t, e.node1.keys, time.Now()), "itself", 403),
	}
	// Bad secret-manager names, each on a write by the org admin. Nested names ("x/y",
	// "node/node1/x/y") are anax's and valid.
	badManagerNames := []string{"a/../b", "a//b", "./x", "x/.", "..", "%2e%2e", "%2e%2e/x", "user/bob/../../x", "node//x", "user//x",
		"openhorizon/db", "user", "node", "user/bob/node", "a/b/c/d/e/f/g/h/i", strings.Repeat("a", 256),
		"node/" + strings.Repeat("n", 256) + "/x", "a%20b", "a%0Ab", "a%00b", "d%C3%A9", "d%D0%B2_password", "%EF%BD%84b",
		"db%E2%80%8B", "a:b", "node/a:b/x", "user/bob:x/y", "a%5Cb", "db%3Bx"}
	for _, n := range badManagerNames {
		cases = append(cases, c("manager name "+n, admin, "PUT", "/org/myorg/secrets/"+n, sec, "", 400, 404))
	}
	// Hostile envelopes posted by node1 (its own credentials) to the agbot.
	ag := e.agID
	reply := func(seq uint64, st protocol.ReplyStatus) map[string]any {
		return asMap(t, &protocol.UpdateReply{Meta: protocol.Meta{Version: 1, Type: protocol.TypeUpdateReply, Agreement: ag, From: e.node1.id,
			To: e.info.ID, Seq: seq, Time: time.Now().UTC()}, Status: st})
	}
	envTo := func(f forge) string { return string(f.seal(t)) }
	toAgbot := agbotRecipient(t, e.info)
	cases = append(cases,
		c("reply signed by another key", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: toAgbot, body: toJSON(t, reply(2, protocol.StatusApplied)), signWith: newParty(t, "x").sign}), "signature", 400, 401, 403),
		c("reply from another node's id", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: &party{id: "myorg/node2", keys: e.node1.keys, sign: e.node1.sign}, to: toAgbot, body: toJSON(t, reply(2, protocol.StatusApplied))}), "", 400, 401, 403),
		c("reply to another agbot", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: &party{id: "agbot@elsewhere", pub: toAgbot.pub}, body: toJSON(t, reply(2, protocol.StatusApplied))}), "", 400, 403),
		c("reply for an unknown agreement", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: toAgbot, body: toJSON(t, func() map[string]any {
				m := reply(2, protocol.StatusApplied)
				m["agreementId"] = "ffffffffffffffffffffffffffffffff"
				return m
			}())}), "agreement", 400, 404, 409),
		// An update acknowledgement that answers no message outstanding now (a replay, or a
		// sequence never sent) changes nothing and is answered 409 (engine.ErrNothingOutstanding).
		c("update reply for an update never sent", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: toAgbot, body: toJSON(t, reply(7, protocol.StatusApplied))}), "acknowledges no outstanding message", 409),
		c("captured proposal reply replayed", node1, "POST", "/org/myorg/nodes/node1/msgs", string(e.accepted), "", 204, 400, 409),
		c("a proposal sent to the agbot", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: toAgbot, body: toJSON(t, func() map[string]any {
				m := reply(2, protocol.StatusApplied)
				m["type"] = "proposal"
				return m
			}())}), "", 400, 403),
		c("reply with an unknown status", node1, "POST", "/org/myorg/nodes/node1/msgs",
			envTo(forge{from: e.node1, to: toAgbot, body: toJSON(t, reply(2, "pwned"))}), "status", 400),
	)

	before := e.state()
	for _, hc := range cases {
		t.Run(hc.name, func(t *testing.T) {
			code, raw := e.do(hc.auth, hc.method, hc.path, hc.body)
			if !slices.Contains(hc.want, code) {
				t.Errorf("%s %s = %d %s, want one of %v", hc.method, hc.path, code, trim(raw), hc.want)
			}
			// 431 is net/http's own (headers past the agbot's 64 KiB MaxHeaderBytes),
			// answered before the API sees the request: plain text, naming the rule.
			if code >= 400 && code != 405 && code != 404 && code != 431 {
				// A JSON string on the secrets API (anax's), an api.Error elsewhere.
				if msg := api.ErrorMessage(raw); !json.Valid(raw) || msg == "" {
					t.Errorf("the refusal has no error message: %s", trim(raw))
				} else if hc.mention != "" && !strings.Contains(strings.ToLower(msg), strings.ToLower(hc.mention)) {
					t.Errorf("error %q does not name %q", msg, hc.mention)
				}
			}
			if bytes.Contains(raw, []byte("CANARY-")) {
				t.Errorf("the answer repeats a secret value")
			}
			if after := e.state(); after != before {
				t.Errorf("the agbot's state changed:\n%s", diffLines(before, after))
				before = after
			}
		})
	}
	t.Logf("%d hostile API calls, each answered with its error and no change", len(cases))
	if len(cases) < 100 {
		t.Errorf("the API corpus has %d cases, want at least 100", len(cases))
	}
	// Still serving, and the log holds no value.
	e.must(admin, "PUT", "/org/myorg/secrets/after", `{"key":"k","value":"`+canaryDB+`-after"}`, 201)
	if done, err := e.b.Proc().Exited(); done {
		t.Fatalf("the agbot exited: %v", err)
	}
	logb, err := os.ReadFile(e.b.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logb, []byte("CANARY-")) {
		t.Errorf("the agbot log holds a secret value")
	}
	if n := bytes.Count(logb, []byte("audit")); n < 50 {
		t.Errorf("the agbot log has %d audit lines, want the refusals audited", n)
	}
}

// keyRelease is the body of DELETE .../registration for node1, signed with keys at at.
func keyRelease(t testing.TB, keys *protocol.PrivateKeys, at time.Time) string {
	return string(toJSON(t, api.KeyRelease{Time: at, Signature: protocol.SignKeyRelease(keys, "myorg/node1", at)}))
}

// agbotRecipient is the agbot as a recipient for the forger (its public keys only).
func agbotRecipient(t testing.TB, info api.AgbotInfo) *party {
	if info.PublicKeys == nil {
		t.Fatal("GET /agbot gave no public keys")
	}
	return &party{id: info.ID, pub: info.PublicKeys}
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "  - "+trim([]byte(x)), "  + "+trim([]byte(y)))
		}
	}
	return strings.Join(out, "\n")
}
