package protocol

import (
	"reflect"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	for _, hybrid := range []bool{false, true} {
		p := newParties(t, hybrid)
		for name, m := range allMessages() {
			t.Run(name+map[bool]string{false: "/classic", true: "/hybrid"}[hybrid], func(t *testing.T) {
				from, to := p.agbot, p.node
				if m.Head().From == nodeID {
					from, to = p.node, p.agbot
				}
				env, err := from.Seal(m)
				if err != nil {
					t.Fatalf("Seal: %v", err)
				}
				hdr, err := PeekHeader(env)
				if err != nil {
					t.Fatalf("PeekHeader: %v", err)
				}
				wantKEM := KEMX25519
				if hybrid {
					wantKEM = KEMMLKEM768X25519
				}
				if hdr.KEM != wantKEM {
					t.Errorf("KEM = %s, want %s", hdr.KEM, wantKEM)
				}
				got, err := to.Open(env)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !reflect.DeepEqual(got, m) {
					t.Errorf("Open = %#v, want %#v", got, m)
				}
			})
		}
	}
}
