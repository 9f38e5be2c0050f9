package agbot_test

import (
	"testing"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
)

const other = "org2/admin2:admin2pw"

// addOrg2 stops the agbot, adds org2 with its admin, and starts it again.
func (h *harness) addOrg2() {
	h.stop()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: h.dir, Org: "org2", Admin: "admin2", Password: "admin2pw", Hash: access.CheapParams, DB: h.db}); err != nil {
		h.t.Fatal(err)
	}
	h.start()
}

// testMatrix checks every cell of caller x secret level x action.
func testMatrix(t *testing.T, env backendEnv) {
	h := newHarnessEnv(t, env)
	h.addOrg2()
	h.people()
	node := "myorg/node1:node1tok"

	levels := []struct {
		name, secret, scope, seeder string
	}{
		{"org", "db", "", admin},
		{"user", "user/bob/tok", "user/bob", bob},
		{"node", "node/node1/db", "node/node1", admin},
		{"user-node", "user/bob/node/node1/db", "user/bob/node/node1", bob},
	}
	const ok, no = 200, 403
	// want[caller][level] = codes for list, read, write, delete.
	want := map[string]map[string][4]int{
		"admin":      {"org": {ok, ok, ok, ok}, "user": {no, no, no, no}, "node": {ok, ok, ok, ok}, "user-node": {no, no, no, no}},
		"user":       {"org": {ok, no, no, no}, "user": {ok, ok, ok, ok}, "node": {no, no, no, no}, "user-node": {ok, ok, ok, ok}},
		"other user": {"org": {ok, no, no, no}, "user": {no, no, no, no}, "node": {no, no, no, no}, "user-node": {no, no, no, no}},
		"node":       {"org": {no, no, no, no}, "user": {no, no, no, no}, "node": {no, no, no, no}, "user-node": {no, no, no, no}},
		"other org":  {"org": {no, no, no, no}, "user": {no, no, no, no}, "node": {no, no, no, no}, "user-node": {no, no, no, no}},
	}
	callers := map[string]string{"admin": admin, "user": bob, "other user": carol, "node": node, "other org": other}
	actions := []string{"list", "read", "write", "delete"}
	for _, cname := range []string{"admin", "user", "other user", "node", "other org"} {
		for _, lv := range levels {
			for i, act := range actions {
				t.Run(cname+"/"+lv.name+"/"+act, func(t *testing.T) {
					h.t = t
					// Seed the secret as its rightful manager so read and delete have a target.
					h.mustDo(lv.seeder, "PUT", "/org/myorg/secrets/"+lv.secret, map[string]string{"key": "k", "value": "canary-matrix"}, 201, nil)
					var code int
					var body []byte
					switch act {
					case "list":
						code, body = h.do(callers[cname], "LIST", "/org/myorg/secrets/"+lv.scope, nil)
						if lv.scope == "" {
							code, body = h.do(callers[cname], "GET", "/org/myorg/secrets", nil)
						}
					case "read":
						code, body = h.do(callers[cname], "GET", "/org/myorg/secrets/"+lv.secret, nil)
					case "write":
						code, body = h.do(callers[cname], "PUT", "/org/myorg/secrets/"+lv.secret, map[string]string{"key": "k", "value": "canary-matrix-2"})
					case "delete":
						code, body = h.do(callers[cname], "DELETE", "/org/myorg/secrets/"+lv.secret, nil)
					}
					// anax's codes on success: PUT 201, DELETE 204.
					w := want[cname][lv.name][i]
					if w == ok && act == "write" {
						w = 201
					} else if w == ok && act == "delete" {
						w = 204
					}
					if code != w {
						t.Errorf("%s %s %s = %d %s, want %d", cname, act, lv.secret, code, body, w)
					}
				})
			}
		}
	}
	h.t = t

	t.Run("wrong password is 401", func(t *testing.T) {
		if code, _ := h.do("myorg/bob:nope", "GET", "/org/myorg/secrets", nil); code != 401 {
			t.Errorf("got %d, want 401", code)
		}
		if code, _ := h.do("", "GET", "/org/myorg/secrets", nil); code != 401 {
			t.Errorf("no auth: got %d, want 401", code)
		}
	})
	t.Run("user node secret for a node bob does not own", func(t *testing.T) {
		h.mustDo(carol, "PUT", "/org/myorg/nodes/node2", map[string]any{"token": "t2"}, 201, nil)
		if code, _ := h.do(bob, "PUT", "/org/myorg/secrets/user/bob/node/node2/db", map[string]string{"key": "k", "value": "v"}); code != 403 {
			t.Errorf("got %d, want 403", code)
		}
	})
	t.Run("names checked before storing", func(t *testing.T) {
		for _, tc := range []struct{ name, rule string }{
			{"a/../b", "'..' segments"},
			{"a//b", "empty"},
			{"openhorizon/x", "openhorizon/"},
			{"bad%20name", "byte"},
			{"user/bob", ""}, // a scope: PUT is refused as a collection
		} {
			code, body := h.do(admin, "PUT", "/org/myorg/secrets/"+tc.name, map[string]string{"key": "k", "value": "v"})
			if code != 400 || !contains(string(body), tc.rule) {
				t.Errorf("PUT %q = %d %s, want 400 naming %q", tc.name, code, body, tc.rule)
			}
		}
	})
	t.Run("create refuses an existing secret, PUT overwrites", func(t *testing.T) {
		h.mustDo(admin, "PUT", "/org/myorg/secrets/dup", map[string]string{"key": "k", "value": "v"}, 201, nil)
		h.mustDo(admin, "POST", "/org/myorg/secrets/dup", map[string]string{"key": "k", "value": "v"}, 409, nil)
		var got map[string]string
		h.mustDo(admin, "PUT", "/org/myorg/secrets/dup", map[string]string{"key": "k", "value": "canary-dup-2"}, 201, nil)
		h.mustDo(admin, "GET", "/org/myorg/secrets/dup", nil, 200, &got)
		if got["value"] != "canary-dup-2" {
			t.Errorf("value after PUT = %q", got["value"])
		}
		var ex map[string]bool
		h.mustDo(admin, "LIST", "/org/myorg/secrets/dup", nil, 200, &ex)
		if !ex["exists"] {
			t.Errorf("LIST on a secret: %v, want exists", ex)
		}
	})
	t.Run("oversize value", func(t *testing.T) {
		big := make([]byte, 70<<10)
		for i := range big {
			big[i] = 'a'
		}
		if code, _ := h.do(admin, "PUT", "/org/myorg/secrets/big", map[string]string{"key": "k", "value": string(big)}); code != 413 {
			t.Errorf("got %d, want 413", code)
		}
	})
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }
func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestMatrixEmbedded(t *testing.T) { testMatrix(t, backendEnv{}) }
