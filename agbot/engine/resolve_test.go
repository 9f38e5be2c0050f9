package engine

import (
	"slices"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
)

// candidates: the manager names tried for one bound secret on a node, best first.
func TestCandidates(t *testing.T) {
	tests := []struct {
		name  string
		bound exchange.BoundSecret
		node  string
		want  []string
	}{
		{"org level", exchange.BoundSecret{ManagerName: "db"}, "n1", []string{"db"}},
		{"org level, node level enabled", exchange.BoundSecret{ManagerName: "db", NodeLevel: true}, "n1", []string{"node/n1/db", "db"}},
		{"user level", exchange.BoundSecret{ManagerName: "user/bob/db"}, "n1", []string{"user/bob/db"}},
		{"user level, node level enabled", exchange.BoundSecret{ManagerName: "user/bob/db", NodeLevel: true}, "n1", []string{"user/bob/node/n1/db", "user/bob/db"}},
		{"invalid name: nothing to try", exchange.BoundSecret{ManagerName: "openhorizon/x"}, "n1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := candidates(tc.bound, tc.node); !slices.Equal(got, tc.want) {
				t.Errorf("candidates(%+v, %q) = %q, want %q", tc.bound, tc.node, got, tc.want)
			}
		})
	}
}

// affects: a change of a manager name matters to an agreement exactly when the name is one of
// its bound secrets' candidates on its node.
func TestAffects(t *testing.T) {
	a := &Agreement{Node: "n1", Bound: map[string]exchange.BoundSecret{
		"db_password": {ManagerName: "db", NodeLevel: true},
		"token":       {ManagerName: "user/bob/tok"},
	}}
	tests := []struct {
		name string
		want bool
	}{
		{"db", true},
		{"node/n1/db", true},
		{"node/n2/db", false},
		{"user/bob/tok", true},
		{"user/bob/node/n1/tok", false},
		{"other", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := affects(a, tc.name); got != tc.want {
				t.Errorf("affects(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// TestAffectsMatchesCandidates: the memo's answer (no candidates built) is the one the
// candidates give, for every pair of a set of manager names (org, user, node-specific, nested,
// invalid) as bindings, org or node level, on two nodes, against every name as the change.
func TestAffectsMatchesCandidates(t *testing.T) {
	names := []string{"db", "a/b", "user/bob/tok", "user/bob/a/b", "node/n1/db", "node/n2/db",
		"node/n1/a/b", "user/bob/node/n1/tok", "user/bob/node/n2/tok", "user/ann/tok", "tok",
		"user/bob/node/n1/a/b", "", "user/x", "node/n1", "openhorizon/db", "db/"}
	for _, bound := range names {
		for _, nodeLevel := range []bool{false, true} {
			for _, node := range []string{"n1", "n2"} {
				a := &Agreement{Node: node, Bound: map[string]exchange.BoundSecret{"s": {ManagerName: bound, NodeLevel: nodeLevel}}}
				for _, changed := range names {
					want := false
					for _, b := range a.Bound {
						want = want || indexOf(candidates(b, a.Node), changed) >= 0
					}
					if got := affects(a, changed); got != want {
						t.Errorf("binding %q (node level %v) on %s, change %q: affects = %v, candidates say %v", bound, nodeLevel, node, changed, got, want)
					}
				}
			}
		}
	}
}
