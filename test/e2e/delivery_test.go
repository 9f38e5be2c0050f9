package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/openbaotest"
)

const (
	bob   = "bob:bob-pw"
	carol = "carol:carol-pw"
)

// testDelivery is the seed document end to end on two nodes of different owners, with the
// embedded secrets manager or with a real OpenBao:
//   - org-, user- and node-level secrets reach the right nodes only;
//   - /<name> and /open-horizon-secrets/<name>: content (JSON and value_only), owner, mode,
//     read-only;
//   - an update is visible without a restart, with no empty or torn read meanwhile;
//   - a node-specific secret takes over and, deleted, falls back;
//   - deletion rules: a secret in use with no fallback is refused (409) unless forced, which
//     cancels its agreements and leaves nothing on the nodes;
//   - unregister (answering the prompt, and with -f) leaves nothing.
func testDelivery(t *testing.T, s *suite, withVault bool) {
	name := "delivery-embedded"
	var vault *Vault
	if withVault {
		name = "delivery-openbao"
		addr, token := openbaotest.Start(t)
		tokenFile := filepath.Join(s.dir, name+"-vault-token")
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		vault = &Vault{Addr: addr, TokenFile: tokenFile}
	}
	e := s.newEnv(t, name, vault)
	admin := e.agbot.Admin

	// People and nodes: bob owns nodeA, carol owns nodeB.
	e.hzn(admin, "exchange", "user", "create", "bob", "bob-pw")
	e.hzn(admin, "exchange", "user", "create", "carol", "carol-pw")
	e.hzn(bob, "exchange", "node", "create", "-n", "nodeA:tokA")
	e.hzn(carol, "exchange", "node", "create", "-n", "nodeB:tokB")

	// Services and policies: "reader" (org + node-level), "personal" (bob's user-level secret).
	e.publishService("reader", map[string]string{"db_password": "", "api_token": "value_only"})
	e.publishService("personal", map[string]string{"mine": ""})
	e.addPolicy("readers", "reader", map[string]string{"db_password": "db", "api_token": "token"}, true)
	e.addPolicyAs(bob, "personal", "personal", map[string]string{"mine": "user/bob/mine"}, false)

	orgDB1, orgDB2 := s.canaries.Next(name+"-org-db-v1"), s.canaries.Next(name+"-org-db-v2")
	orgToken := s.canaries.Next(name + "-org-token")
	nodeADB := s.canaries.Next(name + "-nodeA-db")
	nodeBDB := s.canaries.Next(name + "-nodeB-db")
	bobMine := s.canaries.Next(name + "-bob-mine")
	e.putSecret(admin, "db", "dbkey", orgDB1, "")
	e.putSecret(admin, "token", "tokkey", orgToken, "")
	e.putSecret(admin, "db", "dbkey", nodeADB, "nodeA")
	e.putSecret(bob, "user/bob/mine", "minekey", bobMine, "")

	a := e.agent("nodeA", "")
	b := e.agent("nodeB", "")
	e.register(a, "nodeA", "tokA")
	e.register(b, "nodeB", "tokB")

	agA, cA := e.active(a, "reader")
	_, cAmine := e.active(a, "personal")
	agB, cB := e.active(b, "reader")

	// 1. The right values on the right nodes: node-specific on A only, bob's secret on bob's
	// node only (carol's node is held at the agbot and gets nothing).
	e.wantFiles(cA, map[string]string{"db_password": file("dbkey", nodeADB, ""), "api_token": file("tokkey", orgToken, "value_only")})
	e.wantFiles(cB, map[string]string{"db_password": file("dbkey", orgDB1, ""), "api_token": file("tokkey", orgToken, "value_only")})
	e.wantFiles(cAmine, map[string]string{"mine": file("minekey", bobMine, "")})
	var agreements []struct {
		Service string `json:"service"`
		State   string `json:"state"`
	}
	if code, err := e.agbot.Do(org+"/"+admin, "GET", "/org/"+org+"/nodes/nodeB/agreements", nil, &agreements); err != nil || code != 200 {
		t.Fatalf("agbot agreements of nodeB: %d %v", code, err)
	}
	for _, ag := range agreements {
		if strings.HasPrefix(ag.Service, "personal") && ag.State != "held" {
			t.Errorf("carol's node got bob's service in state %s, want held", ag.State)
		}
	}
	if list, err := b.Agreements(); err != nil || len(list) != 1 {
		t.Errorf("nodeB agreements = %d (%v), want only the reader", len(list), err)
	}

	// 2. Owner and mode, at both paths; read-only.
	st, err := Stat(e.ctx, s.docker, cA, "/db_password", "/api_token", "/open-horizon-secrets/db_password", "/open-horizon-secrets/api_token", "/open-horizon-secrets")
	if err != nil {
		t.Fatal(err)
	}
	for p, fs := range st {
		wantMode := "0400"
		if fs.Dir {
			wantMode = "0500"
		}
		if fs.UID != 1000 || fs.GID != 1000 || fs.Mode != wantMode {
			t.Errorf("%s: %d:%d mode %s, want 1000:1000 mode %s", p, fs.UID, fs.GID, fs.Mode, wantMode)
		}
	}
	out, err := Exec(e.ctx, s.docker, cA, "/prog", "write", "/db_password", "/open-horizon-secrets/db_password")
	if err != nil {
		t.Fatal(err)
	}
	var writes map[string]string
	json.Unmarshal(out, &writes)
	for p, res := range writes {
		if res == "written" {
			t.Errorf("the container could write %s", p)
		}
	}

	// 3. Update: B sees the new org value without a restart, no empty or torn read; A keeps its
	// node-specific value.
	before := e.startInfo(cB)
	hammer := StartHammer(e.ctx, s.docker, cB, 3*time.Second, "/db_password", "/open-horizon-secrets/db_password")
	time.Sleep(500 * time.Millisecond)
	wait, err := Watch(e.ctx, s.docker, cB, "/db_password", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.putSecret(admin, "db", "dbkey", orgDB2, "")
	ch, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	if ch.Content != file("dbkey", orgDB2, "") || ch.Bad != 0 {
		t.Errorf("update seen as %s with %d bad reads", s.canaries.Describe(ch.Content), ch.Bad)
	}
	t.Logf("org secret update visible in the container %s after the write began", time.Unix(0, ch.SeenAt).Sub(start).Round(time.Millisecond))
	h, err := hammer()
	if err != nil {
		t.Fatal(err)
	}
	allowed := []string{file("dbkey", orgDB1, ""), file("dbkey", orgDB2, "")}
	if h.Errors != 0 || h.Empty != 0 || h.Reads < 100 {
		t.Errorf("continuous read during the update: %d reads, %d errors (%s), %d empty", h.Reads, h.Errors, h.FirstError, h.Empty)
	}
	for f, contents := range h.Contents {
		for _, c := range contents {
			if !slices.Contains(allowed, c) {
				t.Errorf("%s read a torn or foreign content %s", f, s.canaries.Describe(c))
			}
		}
	}
	if after := e.startInfo(cB); after != before {
		t.Errorf("the container restarted: %s -> %s", before, after)
	}
	e.wantFiles(cB, map[string]string{"db_password": file("dbkey", orgDB2, "")})
	e.wantFiles(cA, map[string]string{"db_password": file("dbkey", nodeADB, "")})

	// 4. Node-specific on B: switch, then fall back.
	e.putSecret(admin, "db", "dbkey", nodeBDB, "nodeB")
	e.waitFile(cB, "/db_password", file("dbkey", nodeBDB, ""), 30*time.Second)
	e.wantFiles(cA, map[string]string{"db_password": file("dbkey", nodeADB, "")})
	e.hzn(admin, "sm", "secret", "remove", "-f", "-n", "nodeB", "db")
	e.waitFile(cB, "/db_password", file("dbkey", orgDB2, ""), 30*time.Second)
	e.waitFile(cB, "/open-horizon-secrets/db_password", file("dbkey", orgDB2, ""), 5*time.Second)
	if after := e.startInfo(cB); after != before {
		t.Errorf("the container restarted: %s -> %s", before, after)
	}
	e.scanLive(a, b)

	// 5. Deletion rules: "token" has no fallback and both nodes use it.
	if _, err := e.agbot.Hzn(e.ctx, admin, "sm", "secret", "remove", "-f", "token"); err == nil || !strings.Contains(err.Error(), "--cancel-agreements") {
		t.Fatalf("removing a secret in use: %v, want a 409 naming its users", err)
	} else if !strings.Contains(err.Error(), agA) && !strings.Contains(err.Error(), "nodeA") {
		t.Errorf("the 409 does not name what uses the secret: %v", err)
	}
	e.wantFiles(cA, map[string]string{"api_token": file("tokkey", orgToken, "value_only")})
	e.hzn(admin, "sm", "secret", "remove", "-f", "--cancel-agreements", "token")
	// Both reader agreements end; the personal one stays.
	for _, x := range []struct {
		a  *Agent
		ag string
	}{{a, agA}, {b, agB}} {
		err := Eventually(e.ctx, time.Minute, 100*time.Millisecond, func() error {
			list, err := x.a.Agreements()
			if err != nil {
				return err
			}
			for _, in := range list {
				if in.ID == x.ag {
					return errString("agreement " + in.ID + " still there (" + string(in.Phase) + ")")
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", x.a.Name, err)
		}
	}
	e.wantClean(b, false)
	if list, _ := a.Agreements(); len(list) != 1 || list[0].Service.URL != "personal" {
		t.Errorf("nodeA after the forced delete: %d agreements, want the personal one", len(list))
	}

	// 6. Unregister: A answers the prompt, B uses -f.
	if out, err := a.HznStdin(e.ctx, "n\n", "unregister"); err != nil || !strings.Contains(out, "Exiting.") {
		t.Fatalf("unregister answered no: %q %v", out, err)
	}
	if st, _ := a.Status(); !st.Registered {
		t.Fatal("answering no unregistered the node")
	}
	if out, err := a.HznStdin(e.ctx, "y\n", "unregister"); err != nil || !strings.Contains(out, "unregistered: 1 agreements cancelled") {
		t.Fatalf("unregister: %q %v", out, err)
	}
	e.wantClean(a, true)
	if _, err := b.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(b, true)
	// anax's answer for an unregistered node: state "unconfigured", exit 0.
	if out, err := a.Hzn(e.ctx, "node", "list"); err != nil || !strings.Contains(out, `"state": "unconfigured"`) {
		t.Errorf("node list after unregister: %q, %v; want state unconfigured", out, err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
