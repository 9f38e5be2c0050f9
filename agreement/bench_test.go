package agreement

import (
	"fmt"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// BenchmarkUpdate measures the manager's own cost of one applied update (two fsynced bbolt
// transactions, digests, sequence checks) over fake stores and containers.
func BenchmarkUpdate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		secrets []string
	}{
		{"one store", []string{"db_password"}},
		{"two stores", []string{"api_token", "tls_cert"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b)
			if rep := e.m.Propose(e.ctx, e.proposal("ag1", values("1"))); rep.Status != protocol.StatusAccepted {
				b.Fatal(rep.Reason)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				u := e.update("ag1", uint64(i+2), false, values(fmt.Sprint(i), tc.secrets...))
				if rep := e.m.Update(e.ctx, u); rep.Status != protocol.StatusApplied {
					b.Fatal(rep.Reason)
				}
			}
		})
	}
}
