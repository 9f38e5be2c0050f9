package agbot_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAnaxContract: the calls anax's hzn makes get anax's codes and bodies: the secure
// secrets API (201, 204, JSON-string refusals worded as anax's, LIST shapes, allsecrets,
// nested names) and the Exchange's user and node routes under /v1.
func TestAnaxContract(t *testing.T) {
	h := newHarness(t, nil)
	h.people()
	tests := []struct {
		name         string
		auth, method string
		path         string
		body         any
		code         int
		want         string // substring of the raw body ("" for none)
		jsonString   bool   // the body is a JSON string (anax's refusal)
	}{
		{"PUT creates: 201", admin, "PUT", "/org/myorg/secrets/test/password1", map[string]string{"key": "k", "value": "canary-anax-1"}, 201, "", false},
		{"PUT again updates: 201", admin, "PUT", "/org/myorg/secrets/test/password1", map[string]string{"key": "k", "value": "canary-anax-2"}, 201, "", false},
		{"nested 3 parts", admin, "PUT", "/org/myorg/secrets/test/more-passwords/password2", map[string]string{"key": "k", "value": "canary-anax-3"}, 201, "", false},
		{"LIST org lists nested names", admin, "LIST", "/org/myorg/secrets", nil, 200, `"test/more-passwords/password2"`, false},
		{"LIST a directory is not a secret", admin, "LIST", "/org/myorg/secrets/test", nil, 200, `{"exists":false}`, false},
		{"LIST a nested secret", admin, "LIST", "/org/myorg/secrets/test/password1", nil, 200, `{"exists":true}`, false},
		{"GET a nested secret", admin, "GET", "/org/myorg/secrets/test/password1", nil, 200, `"value":"canary-anax-2"`, false},
		{"allsecrets", admin, "LIST", "/org/myorg/allsecrets", nil, 200, `"test/password1"`, false},
		{"allsecrets as a user: no other scopes", bob, "LIST", "/org/myorg/allsecrets", nil, 200, `"test/password1"`, false},
		{"GET a scope", admin, "GET", "/org/myorg/secrets/user/admin", nil, 400, "Incorrect secret name provided", true},
		{"GET user", admin, "GET", "/org/myorg/secrets/user", nil, 400, "User must be specified in the API path", true},
		{"GET node", admin, "GET", "/org/myorg/secrets/node", nil, 400, "Node must be specified in the API path", true},
		{"read missing", admin, "GET", "/org/myorg/secrets/fake-password", nil, 404, `No secret(s) found under secret name \"fake-password\"`, true},
		{"user reads org", bob, "GET", "/org/myorg/secrets/test/password1", nil, 403, `Permission denied, user \"myorg/bob\" cannot read secret`, true},
		{"admin writes a user's", admin, "PUT", "/org/myorg/secrets/user/bob/x", map[string]string{"key": "k", "value": "canary-anax-4"}, 403, "Permission denied", true},
		{"wrong password", "myorg/admin:nope", "LIST", "/org/myorg/secrets", nil, 401, "Failed to authenticate", true},
		{"bad segment", admin, "GET", "/org/myorg/secrets/a//b", nil, 400, "must not have empty", true},
		{"DELETE: 204", admin, "DELETE", "/org/myorg/secrets/test/password1", nil, 204, "", false},
		{"DELETE missing: 404", admin, "DELETE", "/org/myorg/secrets/test/password1", nil, 404, "No secret(s) found", true},

		{"exchange version", "", "GET", "/v1/admin/version", nil, 200, "2.126.1", false},
		{"exchange user create", admin, "POST", "/v1/orgs/myorg/users/userdevuser1", map[string]any{"password": "pw1", "admin": false, "hubAdmin": false, "email": ""}, 201, `"code":"ok"`, false},
		{"exchange user create again", admin, "POST", "/v1/orgs/myorg/users/userdevuser1", map[string]any{"password": "pw1"}, 409, `"code":"already_exists"`, false},
		{"exchange hub admin refused", admin, "POST", "/v1/orgs/myorg/users/hub", map[string]any{"password": "pw", "hubAdmin": true}, 400, "hubAdmin", false},
		{"exchange user create by a user", bob, "POST", "/v1/orgs/myorg/users/eve", map[string]any{"password": "pw"}, 403, `"code":"access_denied"`, false},
		{"exchange user list one", "myorg/userdevuser1:pw1", "GET", "/v1/orgs/myorg/users/userdevuser1", nil, 200, `"users":{"myorg/userdevuser1":`, false},
		{"exchange user list", admin, "GET", "/v1/orgs/myorg/users", nil, 200, `"myorg/bob":`, false},
		{"exchange wrong password", "myorg/admin:nope", "GET", "/v1/orgs/myorg/users", nil, 401, `"code":"invalid_credentials"`, false},
		{"exchange node create", bob, "PUT", "/v1/orgs/myorg/nodes/node9", map[string]any{"token": "tok9", "name": "node9", "nodeType": "device", "arch": "amd64", "publicKey": ""}, 201, `"code":"ok"`, false},
		{"exchange node as itself", "myorg/node9:tok9", "GET", "/v1/orgs/myorg/nodes/node9", nil, 200, `"nodes":{"myorg/node9":`, false},
		{"exchange cluster node refused", bob, "PUT", "/v1/orgs/myorg/nodes/c1", map[string]any{"token": "t", "nodeType": "cluster"}, 400, "device nodes only", false},
		{"exchange node remove", bob, "DELETE", "/v1/orgs/myorg/nodes/node9", nil, 204, "", false},
		{"exchange user remove", admin, "DELETE", "/v1/orgs/myorg/users/userdevuser1", nil, 204, "", false},
		{"exchange user remove missing", admin, "DELETE", "/v1/orgs/myorg/users/userdevuser1", nil, 404, `"code":"not_found"`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			code, raw := h.do(tc.auth, tc.method, tc.path, tc.body)
			body := strings.TrimSpace(string(raw))
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("%s %s = %d %s, want %d holding %q", tc.method, tc.path, code, body, tc.code, tc.want)
			}
			var s string
			if isString := json.Unmarshal(raw, &s) == nil; isString != tc.jsonString {
				t.Errorf("body %s: JSON string %v, want %v", body, isString, tc.jsonString)
			}
			if code == 204 && len(raw) != 0 {
				t.Errorf("204 with a body: %s", raw)
			}
			if code >= 400 && strings.Contains(body, "canary-") {
				t.Errorf("a refusal repeats a value: %s", body)
			}
		})
	}
	h.t = t
}
