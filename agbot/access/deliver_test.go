package access

import (
	"errors"
	"testing"
)

// TestDeliver: every cell of policy owner x node owner x name level of the delivery rule.
func TestDeliver(t *testing.T) {
	admin := Caller{Org: "o", ID: "admin", Admin: true}
	bob := Caller{Org: "o", ID: "bob"}
	carol := Caller{Org: "o", ID: "carol"}
	other := Caller{Org: "o2", ID: "admin2", Admin: true}
	gone := Caller{ID: "deleted"}
	owners := map[string]string{"n1": "bob", "n2": "carol", "na": "admin"}
	owns := func(_, node string) string { return owners[node] }
	org := Target{Org: "o", Name: "db"}
	node := func(n string) Target { return Target{Org: "o", Node: n, Name: "db"} }
	user := func(u string) Target { return Target{Org: "o", User: u, Name: "db"} }
	userNode := func(u, n string) Target { return Target{Org: "o", User: u, Node: n, Name: "db"} }
	const ok, fresh, no = "ok", "fresh", "no"
	for _, tc := range []struct {
		name             string
		owner, nodeOwner Caller
		t                Target
		want             string
	}{
		{"admin policy, org secret, user's node", admin, bob, org, ok},
		{"admin policy, org secret, admin's node", admin, admin, org, ok},
		{"user policy, org secret (Bob's attack)", bob, bob, org, no},
		{"other org's admin, org secret", other, bob, org, no},
		{"deleted owner, org secret", gone, bob, org, no},
		{"admin policy, node secret, admin's node", admin, admin, node("na"), ok},
		{"admin policy, node secret, user's node: only fresh versions", admin, bob, node("n1"), fresh},
		{"user policy, node secret", bob, bob, node("n1"), no},
		{"admin policy, node secret, deleted owner's node", admin, gone, node("n1"), no},
		{"user policy, own secret, own node", bob, bob, user("bob"), ok},
		{"user policy, own secret, another's node", bob, carol, user("bob"), no},
		{"admin policy, a user's secret", admin, bob, user("bob"), no},
		{"user policy, another user's secret", carol, bob, user("bob"), no},
		{"user policy, own node secret, own node", bob, bob, userNode("bob", "n1"), ok},
		{"user policy, own node secret for another's node", bob, carol, userNode("bob", "n2"), no},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Deliver(tc.owner, tc.nodeOwner, tc.t, owns)
			got := ok
			switch {
			case err != nil:
				got = no
				if !errors.Is(err, ErrForbidden) {
					t.Errorf("refusal %v does not wrap ErrForbidden", err)
				}
			case g.FreshOnly:
				got = fresh
			}
			if got != tc.want {
				t.Errorf("Deliver = %s (%v), want %s", got, err, tc.want)
			}
		})
	}
	t.Run("fresh versions", func(t *testing.T) {
		g := Grant{FreshOnly: true}
		if g.Fresh(3, 3) || g.Fresh(2, 3) || !g.Fresh(4, 3) || !g.Fresh(1, 0) || !(Grant{}).Fresh(1, 5) {
			t.Error("Fresh: a version is fresh only when newer than the one found at creation")
		}
	})
}
