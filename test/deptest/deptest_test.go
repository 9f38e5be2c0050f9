// Package deptest keeps the layering of the module true: which of the module's packages each
// package may import (directly, outside its tests). The rules are the ones the packages' doc
// comments state; a change that breaks one fails here with the rule it broke. Like Tailscale's
// tstest/deptest, it reads `go list`, so it sees what the compiler sees.
package deptest

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/edge-secrets/anax-agent/"

// allowed maps each package to the module packages it may import. A package missing from the
// table fails the test: a new package says where it sits. test/... and bench/... (harnesses
// and benchmarks of the whole product) may import anything.
var allowed = map[string][]string{
	// Leaves: the wire protocol and the platform layer import nothing of the module.
	"protocol":            {},
	"pki":                 {},
	"protocol/constraint": {},
	"platform/arch":       {},
	"platform/linux":      {},

	// The node side, bottom up.
	"secretfs":  {"platform/linux", "protocol"},
	"ess":       {"pki", "platform/linux", "protocol"},
	"container": {"ess", "protocol", "secretfs"},
	"agreement": {"container", "platform/arch", "protocol", "secretfs"},
	"agent":     {"agreement", "container", "ess", "platform/arch", "platform/linux", "protocol", "protocol/constraint", "secretfs"},

	// The agbot: never the node's packages.
	"agbot/access":                {},
	"agbot/park":                  {},
	"agbot/memtrim":               {},
	"agbot/exchange":              {"protocol"},
	"agbot/store":                 {"agbot/exchange", "protocol"},
	"agbot/secrets":               {"protocol"},
	"agbot/secrets/internal/feed": {"agbot/secrets"},
	"agbot/secrets/embedded":      {"agbot/secrets", "agbot/secrets/internal/feed"},
	"agbot/secrets/vault":         {"agbot/secrets", "agbot/secrets/internal/feed"},
	"agbot/secrets/secretstest":   {"agbot/secrets"},
	"agbot/engine":                {"agbot/access", "agbot/exchange", "agbot/secrets", "agbot/store", "protocol", "protocol/constraint"},
	"agbot/metrics":               {"agbot/engine"},
	"agbot/api":                   {"agbot/access", "agbot/engine", "agbot/exchange", "agbot/park", "agbot/secrets", "agbot/store", "protocol", "protocol/constraint"},
	"agbot":                       {"agbot/access", "agbot/api", "agbot/engine", "agbot/exchange", "agbot/memtrim", "agbot/park", "agbot/secrets", "agbot/secrets/embedded", "agbot/secrets/vault", "agbot/metrics", "agbot/store", "pki", "platform/linux", "protocol"},

	// The CLI talks HTTP to both; it shares only the wire types.
	"hzn": {"protocol", "platform/arch"},

	// Thin mains.
	"cmd/agbot":      {"agbot", "agbot/secrets", "agbot/secrets/vault"},
	"cmd/anax-agent": {"agent"},
	"cmd/hzn":        {"hzn"},
}

// imports lists every package of the module with its direct module imports (tests excluded).
func imports(t *testing.T, dir string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	got := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok {
			continue
		}
		got[pkg] = []string{}
		for _, imp := range f[1:] {
			if rel, ok := strings.CutPrefix(imp, module); ok {
				got[pkg] = append(got[pkg], rel)
			}
		}
	}
	return got
}

// violations returns one line per import the rules do not allow.
func violations(got map[string][]string) []string {
	var out []string
	for pkg, imps := range got {
		if strings.HasPrefix(pkg, "test/") || strings.HasPrefix(pkg, "bench") {
			continue
		}
		allow, ok := allowed[pkg]
		if !ok {
			out = append(out, pkg+": no rule in test/deptest: say which module packages it may import")
			continue
		}
		for _, imp := range imps {
			if !slices.Contains(allow, imp) {
				out = append(out, pkg+" imports "+imp+": not allowed (allowed: "+strings.Join(allow, ", ")+")")
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestImportRules(t *testing.T) {
	for _, v := range violations(imports(t, "../..")) {
		t.Error(v)
	}
}

// TestRulesCatchABreak shows the check can fail: the agbot importing the node's secret stores,
// or a leaf importing anything, is reported.
func TestRulesCatchABreak(t *testing.T) {
	tests := []struct {
		name string
		got  map[string][]string
		want string
	}{
		{"agbot imports secretfs", map[string][]string{"agbot/engine": {"secretfs"}}, "agbot/engine imports secretfs: not allowed"},
		{"protocol imports agent", map[string][]string{"protocol": {"agent"}}, "protocol imports agent: not allowed"},
		{"unknown package", map[string][]string{"util": {}}, "util: no rule"},
		{"harness may import anything", map[string][]string{"test/e2e": {"agent", "agbot"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := strings.Join(violations(tc.got), "\n")
			if tc.want == "" && v != "" || !strings.Contains(v, tc.want) {
				t.Errorf("violations = %q, want %q", v, tc.want)
			}
		})
	}
}

// storageUsers are the module packages that may import a storage engine: the agbot's engine
// and API see only agbot/store's opaque transaction, so bbolt and PostgreSQL serve them alike.
var storageUsers = map[string][]string{
	"go.etcd.io/bbolt":        {"agbot/store", "agbot/secrets/embedded", "agreement"},
	"github.com/jackc/pgx/v5": {"agbot/store", "agbot/secrets/embedded", "agbot"},
}

func TestStorageEngines(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(f[0], module)
		if !ok || strings.HasPrefix(pkg, "test/") || strings.HasPrefix(pkg, "bench") {
			continue
		}
		for _, imp := range f[1:] {
			for engine, users := range storageUsers {
				if (imp == engine || strings.HasPrefix(imp, engine+"/")) && !slices.Contains(users, pkg) {
					t.Errorf("%s imports %s: only %v may (the others use agbot/store)", pkg, imp, users)
				}
			}
		}
	}
}
