package reliability

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// TestFullFilesystems: a secret store's tmpfs too small for the new versions, and the state
// dir on a file system with no space left. Either way an update is applied whole or not at
// all: the running container reads every old value or every new one, the reply says which,
// and once there is room again the same update applies.
func TestFullFilesystems(t *testing.T) {
	t.Run("store tmpfs full", func(t *testing.T) {
		const size = 60 << 10
		n := newNode(t, "", 256<<10)
		old := map[string]string{"a": canaryValue("full-a-v1", size), "b": canaryValue("full-b-v1", size), "c": canaryValue("full-c-v1", size)}
		id := uniqueID("f111a1")
		if r := n.propose(id, old); r.Status != protocol.StatusAccepted {
			t.Fatalf("proposal: %s %s", r.Status, r.Reason)
		}
		n.wantReads(id, old, "after the proposal")
		// Three new 60 KiB versions do not fit next to the three current ones in 256 KiB.
		nw := map[string]string{"a": canaryValue("full-a-v2", size), "b": canaryValue("full-b-v2", size), "c": canaryValue("full-c-v2", size)}
		r := n.update(id, 2, nw)
		if r.Status != protocol.StatusFailed {
			t.Fatalf("update into a full store: %s %q, want failed", r.Status, r.Reason)
		}
		if !strings.Contains(strings.ToLower(r.Reason), "space") {
			t.Errorf("the failure reason %q does not say the store is out of space", r.Reason)
		}
		if strings.Contains(r.Reason, "CANARY-") {
			t.Errorf("the failure reason repeats a value")
		}
		n.wantReads(id, old, "after the failed update")
		if info, _ := n.m.Agreement(id); info.Sequence != 1 {
			t.Errorf("after the failed update the agreement is at %d, want 1", info.Sequence)
		}
		// The same sequence with values that fit applies.
		small := map[string]string{"a": canaryValue("full-a-v3", 100), "b": canaryValue("full-b-v3", 100), "c": canaryValue("full-c-v3", 100)}
		if r := n.update(id, 2, small); r.Status != protocol.StatusApplied {
			t.Fatalf("update that fits: %s %q", r.Status, r.Reason)
		}
		n.wantReads(id, small, "after the update that fits")
	})

	t.Run("state dir full", func(t *testing.T) {
		fsdir := mountTmpfs(t, "1m")
		n := newNode(t, fsdir+"/state", 0)
		id := uniqueID("f222b2")
		cur := map[string]string{"a": canaryValue("state-a-1", 64), "b": canaryValue("state-b-1", 64)}
		if r := n.propose(id, cur); r.Status != protocol.StatusAccepted {
			t.Fatalf("proposal: %s %s", r.Status, r.Reason)
		}
		free := fill(t, fsdir)
		seq, failed := uint64(1), 0
		// Updates while no byte is free: each applies whole or fails whole (bbolt may find
		// room in pages it freed, so both happen).
		for i := 2; i <= 12; i++ {
			nw := map[string]string{"a": canaryValue(fmt.Sprintf("state-a-%d", i), 64), "b": canaryValue(fmt.Sprintf("state-b-%d", i), 64)}
			r := n.update(id, seq+1, nw)
			switch r.Status {
			case protocol.StatusApplied:
				seq++
				cur = nw
			case protocol.StatusFailed:
				failed++
				if strings.Contains(r.Reason, "CANARY-") {
					t.Errorf("the failure reason repeats a value")
				}
			default:
				t.Fatalf("update %d on a full state dir: %s %q", seq+1, r.Status, r.Reason)
			}
			n.wantReads(id, cur, fmt.Sprintf("after update %d (%s)", seq+1, r.Status))
			if info, _ := n.m.Agreement(id); info.Sequence != seq {
				t.Errorf("the agreement is at %d, want %d", info.Sequence, seq)
			}
		}
		// A proposal whose state needs room the file system does not have: declined, and
		// nothing of it is left (store, container, agreement).
		big := map[string]string{}
		for i := range 40 {
			big[fmt.Sprintf("s%02d_%s", i, strings.Repeat("n", 200))] = canaryValue(fmt.Sprintf("state-big-%d", i), 64)
		}
		id2 := uniqueID("f333c3")
		r2 := n.propose(id2, big)
		if r2.Status != protocol.StatusDeclined {
			t.Fatalf("a proposal on a full state dir: %s %q, want declined", r2.Status, r2.Reason)
		}
		if strings.Contains(r2.Reason, "CANARY-") {
			t.Errorf("the decline reason repeats a value")
		}
		if _, err := n.m.Agreement(id2); err == nil {
			t.Errorf("the declined proposal left its agreement")
		}
		if stores, _ := n.fs.Stores(); len(stores) != 1 {
			t.Errorf("the declined proposal left %d stores, want 1 (the first agreement's)", len(stores))
		}
		if cs, _ := n.worker.List(n.ctx); len(cs) != 1 {
			t.Errorf("the declined proposal left %d containers, want 1", len(cs))
		}
		n.wantReads(id, cur, "after the declined proposal")
		// Room again: the next update applies, and a restart keeps it all.
		free()
		nw := map[string]string{"a": canaryValue("state-a-final", 64), "b": canaryValue("state-b-final", 64)}
		if r := n.update(id, seq+1, nw); r.Status != protocol.StatusApplied {
			t.Fatalf("update after freeing space: %s %q", r.Status, r.Reason)
		}
		n.close()
		n.open()
		if info, err := n.m.Agreement(id); err != nil || info.Sequence != seq+1 {
			t.Errorf("after a restart: %v, sequence %d, want %d", err, info.Sequence, seq+1)
		}
		n.wantReads(id, nw, "after a restart")
		// Room for the big one too, under a new agreement id.
		if r := n.propose(uniqueID("f444d4"), big); r.Status != protocol.StatusAccepted {
			t.Errorf("the big proposal with room: %s %q", r.Status, r.Reason)
		}
		t.Logf("on the full state dir %d of 11 updates failed, the others applied whole (bbolt reuses freed pages); the proposal was declined: %s", failed, r2.Reason)
	})
}

// uniqueID makes a 32-hex agreement id ending in tag and unique to this run: container names
// derive from agreement ids and are global on the engine, so a fixed id would collide with a
// concurrent or crashed earlier run.
func uniqueID(tag string) string {
	b := make([]byte, 13)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b) + tag
}
