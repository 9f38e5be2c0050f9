package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testRekey: a second machine that has node1's token (a leaked token, a copied
// registration.json) can not take node1 over: its registration is refused with the rule and
// the real node keeps running. When node1's owner replaces the keys (hzn register -u), the old
// node gets a cancel it can read, stops its service, wipes its secrets and logs that its keys
// were replaced; the new machine gets the service. Tokens and passwords go through stdin.
func testRekey(t *testing.T, s *suite) {
	e := s.newEnv(t, "rekey", nil)
	admin := e.agbot.Admin
	if _, err := runHzn(e.ctx, s.bin.Hzn, e.agbot.Env(admin), strings.NewReader("bob-pw\n"), "exchange", "user", "create", "bob", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := runHzn(e.ctx, s.bin.Hzn, e.agbot.Env(bob), strings.NewReader("tok1\n"), "exchange", "node", "create", "-n", "node1:-"); err != nil {
		t.Fatal(err)
	}
	e.publishService("reader", map[string]string{"db_password": ""})
	e.addPolicy("readers", "reader", map[string]string{"db_password": "db"}, false)
	db := s.canaries.Next("rekey-db")
	e.putSecret(admin, "db", "dbkey", db, "")

	old := e.agent("old", "")
	e.register(old, "node1", "tok1")
	agOld, cOld := e.active(old, "reader")
	e.wantFiles(cOld, map[string]string{"db_password": file("dbkey", db, "")})

	// 1. The token alone, from another machine: refused, nothing changes on the real node.
	thief := e.agent("thief", "")
	pol := e.writeJSON("node-policy-thief.json", map[string]any{
		"properties": []any{map[string]any{"name": "zone", "value": "e2e"}}, "constraints": []string{}})
	out, err := thief.HznStdin(e.ctx, "tok1\n", "register", "-n", "node1:-", "--policy", pol)
	if err == nil || !strings.Contains(err.Error(), "the node token alone does not re-key a node") {
		t.Fatalf("token-only re-key: %q %v, want the refusal naming the rule", out, err)
	}
	if in, err := old.ActiveAgreement(e.ctx, "reader", 10*time.Second); err != nil || in.ID != agOld {
		t.Fatalf("after the refused re-key the old node runs %+v (%v), want %s", in, err, agOld)
	}
	e.wantFiles(cOld, map[string]string{"db_password": file("dbkey", db, "")})
	if list, err := thief.Agreements(); err != nil || len(list) != 0 {
		t.Fatalf("the thief has agreements %v (%v)", list, err)
	}

	// 2. The owner replaces the keys (password on stdin): the old node is told and stops.
	if out, err := thief.HznStdin(e.ctx, "bob-pw\n", "register", "-n", "node1:tok1", "-u", "bob:-", "--policy", pol); err != nil {
		t.Fatalf("re-key by the owner: %q %v", out, err)
	}
	logHas(t, old.LogPath, time.Minute, "NODE KEYS REPLACED", agOld)
	if err := Eventually(e.ctx, time.Minute, 200*time.Millisecond, func() error {
		list, err := old.Agreements()
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return fmt.Errorf("old node still has %d agreements", len(list))
		}
		cs, err := ContainersOf(context.Background(), s.docker, old.ID())
		if err != nil || len(cs) != 0 {
			return fmt.Errorf("old node still has %d containers (%v)", len(cs), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logHas(t, e.agbot.LogPath, time.Minute, "the node whose keys were replaced ended its agreement", agOld)
	agNew, cNew := e.active(thief, "reader")
	if agNew == agOld {
		t.Fatalf("the new keys got the old agreement id %s", agOld)
	}
	e.wantFiles(cNew, map[string]string{"db_password": file("dbkey", db, "")})
	e.scanLive(old, thief)

	// 3. Unregistering releases the keys: the token alone registers the node again.
	res, err := thief.Hzn(e.ctx, "unregister", "-f")
	if err != nil {
		t.Fatal(err)
	}
	e.wantClean(thief, true)
	if _, err := old.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(old, true)
	again := e.agent("again", "")
	e.register(again, "node1", "tok1")
	e.active(again, "reader")
	if _, err := again.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatalf("unregister after %q: %v", res, err)
	}
	e.wantClean(again, true)
}
