package agreement

import (
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// BenchmarkAgreementKeyLookup: the agent's key lookup, once per message opened and per
// reply sealed.
func BenchmarkAgreementKeyLookup(b *testing.B) {
	e := newEnv(b)
	p := e.proposal("ag1", values("1"))
	p.AgreementKey = protocol.NewAgreementKey()
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		b.Fatal(rep.Reason)
	}
	for b.Loop() {
		if e.m.AgreementKey(agbotID, "ag1") == nil {
			b.Fatal("no key")
		}
	}
}
