package engine

import (
	"fmt"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
)

// BenchmarkAffects is the walk a secret change makes over the live agreements: 1,000
// services on one node (a gateway, as in make soak's stream) and 1,000 nodes with one service
// each (a fleet), each agreement with an org-level and a node-level binding.
func BenchmarkAffects(b *testing.B) {
	for _, tc := range []struct {
		name  string
		nodes int
	}{{"1000-services-one-node", 1}, {"1000-nodes", 1000}} {
		b.Run(tc.name, func(b *testing.B) {
			var live []*Agreement
			for i := range 1000 {
				live = append(live, &Agreement{Node: fmt.Sprintf("n%d", i%tc.nodes), Bound: map[string]exchange.BoundSecret{
					"db":    {ManagerName: "db"},
					"token": {ManagerName: "user/bob/tok", NodeLevel: true},
				}})
			}
			b.ReportAllocs()
			for b.Loop() {
				m := newAffectsMemo("hot")
				n := 0
				for _, a := range live {
					if m.affects(a) {
						n++
					}
				}
				if n != 0 {
					b.Fatal("an unrelated change affects agreements")
				}
			}
		})
	}
}
