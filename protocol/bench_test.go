package protocol

import (
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time. Benchmarks report it per op next to wall
// time: on a shared 2-core machine wall time mostly measures the neighbours.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loop runs body b.N times and reports CPU µs per op.
func loop(b *testing.B, body func()) {
	start := cpuTime()
	for b.Loop() {
		body()
	}
	b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

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
			loop(b, func() {
				env, err := p.agbot.Seal(m)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("proposal10/"+kem.name+"/seal", func(b *testing.B) {
			loop(b, func() {
				if _, err := p.agbot.Seal(m); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("proposal10/"+kem.name+"/open", func(b *testing.B) {
			loop(b, func() {
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			})
		})
		u := testUpdate()
		b.Run("update1/"+kem.name+"/seal+open", func(b *testing.B) {
			loop(b, func() {
				env, err := p.agbot.Seal(u)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.node.Open(env); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkUpdateExchange: one update and its acknowledgement, the agbot's side (seal the
// update, open the reply) and the node's (open the update, wrap the reply), with the update
// sealed to the node's hybrid key and the reply signed, against both sealed with the
// agreement's key.
func BenchmarkUpdateExchange(b *testing.B) {
	keyed := keyedParties(b)
	plain := newParties(b, true)
	u, reply := testUpdate(), allMessages()["update_reply"]
	for _, c := range []struct {
		name string
		p    *parties
		seal func(Message) ([]byte, error)
	}{{"hybrid", plain, plain.agbot.Seal}, {"agreement-key", keyed, keyed.agbot.SealAgreement}} {
		uEnv, err := c.seal(u)
		if err != nil {
			b.Fatal(err)
		}
		rEnv, err := c.p.node.Wrap(reply)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("agbot/"+c.name, func(b *testing.B) {
			loop(b, func() {
				if _, err := c.seal(u); err != nil {
					b.Fatal(err)
				}
				if _, err := c.p.agbot.Open(rEnv); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("node/"+c.name, func(b *testing.B) {
			loop(b, func() {
				if _, err := c.p.node.Open(uEnv); err != nil {
					b.Fatal(err)
				}
				if _, err := c.p.node.Wrap(reply); err != nil {
					b.Fatal(err)
				}
			})
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
