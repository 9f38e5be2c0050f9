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
		{"unknown field", `{"properties":[],"constrains":[]}`, `field constrains: is not a field`, nil},
		{"nested unknown field", `{"deployment":{"properties":[],"constrains":[]}}`, `field deployment.constrains`, nil},
		{"nested bad constraint", `{"deployment":{"constraints":["zone =="]}}`, "deployment.constraints", nil},
		{"allowPrivileged not a bool", `{"properties":[{"name":"openhorizon.allowPrivileged","value":"yes"}]}`, "must be true or false", nil},
		{"management section", `{"management":{"properties":[{"name":"a","value":1}]}}`, "", nil},
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

// TestAnaxNodePolicies: anax's node policy files (top level and nested deployment) parse, and
// the effective deployment policy merges the sections as anax does.
func TestAnaxNodePolicies(t *testing.T) {
	for _, tc := range []struct {
		file      string
		props     map[string]any
		nCons     int
		privilege bool
	}{
		{"input_files__compcheck__node_policy.json", map[string]any{"purpose": "network-testing", "group": "bluenode"}, 2, false},
		{"input_files__compcheck__node_policy2.json", map[string]any{"purpose": "network-testing", "group": "bluenode"}, 3, false},
		{"input_files__k8s_deploy__node.policy.json", map[string]any{"purpose": "network-testing"}, 0, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "anax", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			p, err := ParseNodePolicy(b)
			if err != nil {
				t.Fatalf("ParseNodePolicy: %v", err)
			}
			eff := p.Effective()
			got := map[string]any{}
			for _, prop := range eff.Properties {
				got[prop.Name] = prop.Value
			}
			if len(got) != len(tc.props) || len(eff.Constraints) != tc.nCons {
				t.Fatalf("effective = %+v, want properties %v and %d constraints", eff, tc.props, tc.nCons)
			}
			for k, v := range tc.props {
				if got[k] != v {
					t.Errorf("property %s = %v, want %v", k, got[k], v)
				}
			}
			if _, err := p.admit(); err != nil {
				t.Fatalf("admit: %v", err)
			}
		})
	}
}

// TestNodePolicyDeploymentWins: the deployment section's property wins over the top level's,
// and both sections' constraints must hold.
func TestNodePolicyDeploymentWins(t *testing.T) {
	p, err := ParseNodePolicy([]byte(`{"properties":[{"name":"zone","value":"a"},{"name":"openhorizon.allowPrivileged","value":false}],"constraints":["x == 1"],
		"deployment":{"properties":[{"name":"zone","value":"b"},{"name":"openhorizon.allowPrivileged","value":true}],"constraints":["y == 2"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.allowPrivileged() {
		t.Error("deployment's openhorizon.allowPrivileged true did not win")
	}
	props := p.reportedProperties("amd64", nodeFacts{CPUs: 4, MemoryMB: 2048, HardwareID: "hw"})
	want := map[string]any{"zone": "b", PropAllowPrivileged: true, PropCPU: 4, PropMemory: int64(2048), PropArch: "amd64", PropHardwareID: "hw"}
	if len(props) != len(want) {
		t.Fatalf("reported %v, want %v", props, want)
	}
	for _, prop := range props {
		if want[prop.Name] != prop.Value {
			t.Errorf("reported %s = %v, want %v", prop.Name, prop.Value, want[prop.Name])
		}
	}
	admit, err := p.admit()
	if err != nil {
		t.Fatal(err)
	}
	if err := admit(map[string]any{"x": 1, "y": 2}); err != nil {
		t.Errorf("both constraints hold, refused: %v", err)
	}
	if err := admit(map[string]any{"x": 1, "y": 3}); err == nil {
		t.Error("the deployment section's constraint was not applied")
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

// TestNodeUserInputForms: anax's node user input file in its current form (anax's own
// test/gov node_ui.json) and its older services/variables form; global is refused.
func TestNodeUserInputForms(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "anax", "input_files__compcheck__node_ui.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cur NodeUserInput
	if err := cur.UnmarshalJSON(b); err != nil {
		t.Fatalf("current form: %v", err)
	}
	if len(cur) != 1 || cur[0].ServiceURL != "https://bluehorizon.network/services/locgps" || len(cur[0].Inputs) != 4 {
		t.Fatalf("current form = %+v", cur)
	}
	if err := validateUserInput(cur); err != nil {
		t.Fatalf("validate: %v", err)
	}
	var old NodeUserInput
	if err := old.UnmarshalJSON([]byte(`{"services":[{"org":"IBM","url":"svc","versionRange":"[1.0.0,INFINITY)","variables":{"b":1,"a":"x"}}]}`)); err != nil {
		t.Fatalf("old form: %v", err)
	}
	if len(old) != 1 || old[0].ServiceOrgid != "IBM" || len(old[0].Inputs) != 2 || old[0].Inputs[0].Name != "a" {
		t.Fatalf("old form = %+v", old)
	}
	for name, doc := range map[string]string{
		"global":        `{"global":[{"type":"LocationAttributes","variables":{"lat":1}}]}`,
		"unknown field": `[{"serviceOrgid":"o","serviceUrl":"u","input":[]}]`,
	} {
		var u NodeUserInput
		if err := u.UnmarshalJSON([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := validateUserInput(NodeUserInput{{ServiceOrgid: "o", ServiceURL: "u", Inputs: []protocol.InputValue{{Name: "HZN_DEVICE_ID", Value: "x"}}}}); err == nil {
		t.Error("node input replacing a platform variable was accepted")
	}
}
