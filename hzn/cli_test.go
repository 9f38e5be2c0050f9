package hzn

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSecretName(t *testing.T) {
	tests := []struct{ name, in, node, want string }{
		{"org", "db", "", "db"},
		{"trims slashes", "/db/", "", "db"},
		{"nested", "test/password1", "", "test/password1"},
		{"org with -n", "db", "n1", "node/n1/db"},
		{"nested with -n", "test/password1", "n1", "node/n1/test/password1"},
		{"user with -n", "user/bob/db", "n1", "user/bob/node/n1/db"},
		{"user dir with -n", "user/bob", "n1", "user/bob/node/n1"},
		{"empty with -n", "", "n1", "node/n1"},
		{"already node specific", "node/n2/db", "n1", "node/n2/db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := secretName(tc.in, tc.node); got != tc.want {
				t.Errorf("secretName(%q, %q) = %q, want %q", tc.in, tc.node, got, tc.want)
			}
		})
	}
}

func TestJoinDash(t *testing.T) {
	tests := []struct {
		name     string
		in, want []string
	}{
		{"short", []string{"add", "-f", "-", "x"}, []string{"add", "-f-", "x"}},
		{"long", []string{"--secretFile", "-"}, []string{"--secretFile=-"}},
		{"already joined", []string{"-f-"}, []string{"-f-"}},
		{"after --", []string{"--", "-"}, []string{"--", "-"}},
		{"argument, last", []string{"user", "create", "dave", "-"}, []string{"user", "create", "dave", "--", "-"}},
		{"argument before a flag", []string{"create", "dave", "-", "-A"}, []string{"create", "dave", "-", "-A"}},
		{"after a long flag with its value", []string{"--org=x", "-"}, []string{"--org=x", "--", "-"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := joinDash(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("joinDash(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestConfigFiles: /etc/default/horizon and hzn.json are read as anax reads them, later
// files win, and the process environment beats them all.
func TestConfigFiles(t *testing.T) {
	dir := t.TempDir()
	def := filepath.Join(dir, "horizon")
	os.WriteFile(def, []byte("# comment\nHZN_AGBOT_URL=http://127.0.0.1:1\nHZN_ORG_ID=fromdefault\nHZN_EXCHANGE_USER_AUTH = u:p\n"), 0o600)
	user := filepath.Join(dir, "hzn.json")
	os.WriteFile(user, []byte(`{"HZN_ORG_ID":"fromjson","MetadataVars":{"HZN_EXCHANGE_NODE_AUTH":"n:t"}}`), 0o600)
	tests := []struct {
		name  string
		env   map[string]string
		files []string
		want  map[string]string
	}{
		{"default file", nil, []string{def}, map[string]string{"HZN_AGBOT_URL": "http://127.0.0.1:1", "HZN_ORG_ID": "fromdefault", "HZN_EXCHANGE_USER_AUTH": "u:p"}},
		{"later file wins", nil, []string{def, user}, map[string]string{"HZN_ORG_ID": "fromjson", "HZN_EXCHANGE_NODE_AUTH": "n:t"}},
		{"environment wins", map[string]string{"HZN_ORG_ID": "fromenv"}, []string{def, user}, map[string]string{"HZN_ORG_ID": "fromenv"}},
		{"agbot URL from HZN_EXCHANGE_URL", map[string]string{"HZN_EXCHANGE_URL": "https://hub:3090/v1/"}, nil, map[string]string{"agbot": "https://hub:3090"}},
		{"HZN_AGBOT_URL wins", map[string]string{"HZN_EXCHANGE_URL": "https://hub:3090/v1", "HZN_AGBOT_URL": "https://ab:1/"}, nil, map[string]string{"agbot": "https://ab:1"}},
		{"missing files are skipped", nil, []string{filepath.Join(dir, "none")}, map[string]string{"HZN_ORG_ID": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vars, err := loadConfig(tc.files)
			if err != nil {
				t.Fatal(err)
			}
			c := &cli{env: Env{Getenv: func(k string) string { return tc.env[k] }}, vars: vars}
			for k, want := range tc.want {
				got := c.get(k)
				if k == "agbot" {
					got = c.agbotURL()
				}
				if got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
	// The agbot URL from /etc/default/horizon is the one hzn calls.
	var out, errb strings.Builder
	code := Run([]string{"sm", "secret", "list"}, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }, ConfigFiles: []string{def}})
	if code != ExitHTTP || !strings.Contains(errb.String(), "http://127.0.0.1:1") {
		t.Errorf("hzn with HZN_AGBOT_URL from the file: %d %q", code, errb.String())
	}
}
