package protocol

import "testing"

// BenchmarkSealOpen: one proposal with 10 secrets sealed by the agbot and opened (decrypt,
// verify, decode, validate) by the node, classic X25519 and hybrid ML-KEM-768+X25519.
func BenchmarkSealOpen(b *testing.B) {
	for _, kem := range []struct {
		name   string
		hybrid bool
	}{{"classic", false}, {"hybrid", true}} {
		p := newParties(b, kem.hybrid)
		m := proposalWithSecrets(10)
		env, err := p.agbot.Seal(m)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("proposal10/"+kem.name+"/seal+open", func(b *testing.B) {
			b.SetBytes(int64(len(env)))
			for b.Loop() {
				env, err := p.agbot.Seal(m)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proposal10/"+kem.name+"/seal", func(b *testing.B) {
			for b.Loop() {
				if _, err := p.agbot.Seal(m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("proposal10/"+kem.name+"/open", func(b *testing.B) {
			for b.Loop() {
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			}
		})
		u := testUpdate()
		b.Run("update1/"+kem.name+"/seal+open", func(b *testing.B) {
			for b.Loop() {
				env, err := p.agbot.Seal(u)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTracker: Check+Commit of one update, the agent's per-message replay guard.
func BenchmarkTracker(b *testing.B) {
	tr := NewTracker(TrackerOptions{})
	tr.Restore(agreement, 1)
	u := testUpdate()
	for b.Loop() {
		u.Seq++
		if err := tr.Check(u); err != nil {
			b.Fatal(err)
		}
		if err := tr.Commit(u); err != nil {
			b.Fatal(err)
		}
	}
}
