package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestParseNodePolicy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, p NodePolicy)
	}{
		{"empty file", "", "", nil},
		{"anax shape", `{"properties":[{"name":"zone","value":"a"},{"name":"gpu","value":true},{"name":"cores","value":4}],"constraints":["purpose == edge"]}`, "",
			func(t *testing.T, p NodePolicy) {
				if len(p.Properties) != 3 || len(p.Constraints) != 1 {
					t.Errorf("got %d properties, %d constraints, want 3 and 1", len(p.Properties), len(p.Constraints))
				}
			}},
		{"typed property", `{"properties":[{"name":"zone","value":"a","type":"string"}]}`, "", nil},
		{"unknown field", `{"properties":[],"constrains":[]}`, `unknown field "constrains"`, nil},
		{"unnamed property", `{"properties":[{"value":1}]}`, "properties[0].name: must be 1..256 bytes", nil},
		{"duplicate property", `{"properties":[{"name":"a","value":1},{"name":"a","value":2}]}`, `properties[1].name "a": listed twice`, nil},
		{"object value", `{"properties":[{"name":"a","value":{"x":1}}]}`, `properties[0] "a": value must be a string, number or boolean`, nil},
		{"bad constraint", `{"constraints":["zone =="]}`, "constraints", nil},
		{"not JSON", `{"properties":`, "node policy", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseNodePolicy([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseNodePolicy: %v", err)
				}
				if tc.check != nil {
					tc.check(t, p)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %v does not wrap ErrInvalidRequest", err)
			}
		})
	}
}

func TestNodePolicyAdmit(t *testing.T) {
	p, err := ParseNodePolicy([]byte(`{"constraints":["openhorizon.service.url == reader"]}`))
	if err != nil {
		t.Fatal(err)
	}
	admit, err := p.admit()
	if err != nil {
		t.Fatal(err)
	}
	if err := admit(map[string]any{"openhorizon.service.url": "reader"}); err != nil {
		t.Errorf("reader refused: %v", err)
	}
	if err := admit(map[string]any{"openhorizon.service.url": "other"}); err == nil || !strings.Contains(err.Error(), "does not hold") {
		t.Errorf("other admitted or unclear: %v", err)
	}
	if admit, _ := (NodePolicy{}).admit(); admit != nil {
		t.Error("a policy without constraints must admit everything (nil)")
	}
}

func testRegistration(t *testing.T) *Registration {
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	return &Registration{Org: "o", Node: "n", Token: "tok", Arch: "amd64", AgbotURL: "https://a:1", AgbotID: "agbot",
		AgbotKeys: keys.Public(), AgbotFingerprint: keys.Public().Fingerprint(), RegisteredAt: time.Unix(1700000000, 0).UTC(),
		Policy: NodePolicy{Properties: []Property{{Name: "zone", Value: "a"}}}}
}

func TestRegistrationFile(t *testing.T) {
	dir := t.TempDir()
	if err := prepareStateDir(dir); err != nil {
		t.Fatal(err)
	}
	if r, err := loadRegistration(dir); err != nil || r != nil {
		t.Fatalf("empty dir: %v %v, want nothing", r, err)
	}
	want := testRegistration(t)
	if err := saveRegistration(dir, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, registrationFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("registration file mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	got, err := loadRegistration(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != "o/n" || got.Token != "tok" || !got.AgbotKeys.Equal(want.AgbotKeys) || !got.RegisteredAt.Equal(want.RegisteredAt) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if info := got.Info(); strings.Contains(mustJSON(t, info), "tok") {
		t.Errorf("NodeInfo shows the token: %s", mustJSON(t, info))
	}

	t.Run("readable by others", func(t *testing.T) {
		os.Chmod(filepath.Join(dir, registrationFile), 0o644)
		defer os.Chmod(filepath.Join(dir, registrationFile), 0o600)
		if _, err := loadRegistration(dir); err == nil || !strings.Contains(err.Error(), "want 0600") {
			t.Errorf("0644 file: %v, want a refusal naming the mode", err)
		}
	})
	t.Run("incomplete", func(t *testing.T) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, registrationFile), []byte(`{"org":"o","node":"n"}`), 0o600)
		if _, err := loadRegistration(d); err == nil || !strings.Contains(err.Error(), "incomplete") {
			t.Errorf("incomplete file: %v", err)
		}
	})
	t.Run("symlink", func(t *testing.T) {
		d := t.TempDir()
		os.Symlink(filepath.Join(dir, registrationFile), filepath.Join(d, registrationFile))
		if _, err := loadRegistration(d); err == nil {
			t.Error("a symlinked registration file was followed")
		}
	})
	t.Run("forget", func(t *testing.T) {
		if _, err := protocol.LoadOrCreateKeys(filepath.Join(dir, nodeKeysFile)); err != nil {
			t.Fatal(err)
		}
		if err := forgetRegistration(dir); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{registrationFile, nodeKeysFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still there after forget: %v", f, err)
			}
		}
		if err := forgetRegistration(dir); err != nil {
			t.Errorf("forget twice: %v", err)
		}
	})
}

func TestValidToken(t *testing.T) {
	for _, tc := range []struct {
		tok string
		ok  bool
	}{{"t", true}, {"a b:c", true}, {"", false}, {strings.Repeat("x", 1025), false}, {"a\nb", false}, {"a\x00b", false}} {
		if err := validToken(tc.tok); (err == nil) != tc.ok {
			t.Errorf("validToken(%q) = %v, want ok=%v", tc.tok, err, tc.ok)
		}
	}
}

func TestAgentID(t *testing.T) {
	a, b := AgentID("/var/lib/anax-agent"), AgentID("/var/lib/anax-agent/")
	if a != b {
		t.Errorf("same dir, different ids: %s %s", a, b)
	}
	if c := AgentID("/var/lib/anax-agent-2"); c == a {
		t.Errorf("different dirs, same id %s", a)
	}
	if !strings.HasPrefix(a, "anax-agent-") || strings.ContainsAny(a, " ,") {
		t.Errorf("id %q is not a valid container label value", a)
	}
}

// TestUserCredential: hzn register -u takes [ORG/]USER:PASSWORD; the org defaults to the
// node's; malformed forms are refused with the field named, never echoing the password.
func TestUserCredential(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{"none", "", "", ""},
		{"user in the node's org", "bob:pw", "o/bob:pw", ""},
		{"user with org", "o2/admin:pw", "o2/admin:pw", ""},
		{"password with a colon", "bob:a:b", "o/bob:a:b", ""},
		{"no password", "bob", "", "user: must be [ORG/]USER:PASSWORD"},
		{"empty password", "bob:", "", "user: must be [ORG/]USER:PASSWORD"},
		{"control character", "bob:p\nw", "", "user: the password must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := userCredential("o", tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("userCredential(%q) = %q, %v; want an ErrInvalidRequest naming %q", tc.in, got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "p\nw") {
					t.Error("the error repeats the password")
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("userCredential(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
