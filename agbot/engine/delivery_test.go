package engine

import (
	"slices"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// A farewell (a cancel sealed to a node's replaced keys) is offered until FarewellTTL has
// passed since it was queued, then handed back for removal: a replaced node that is gone
// for good does not leave it queued forever. Other cancels are never dropped that way.
func TestFarewellExpires(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		farewell bool
		at       time.Time
		offered  bool
		removed  bool
	}{
		{"farewell within the TTL", true, t0.Add(FarewellTTL - time.Minute), true, false},
		{"farewell past the TTL", true, t0.Add(FarewellTTL + time.Minute), false, true},
		{"ordinary cancel past the TTL", false, t0.Add(FarewellTTL + time.Minute), true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var q queues
			q.init(time.Second, time.Minute)
			q.push("o/n", store.Message{ID: 1, Agreement: "ag", Type: string(protocol.TypeCancel), Seq: 2, Queued: t0, Farewell: tc.farewell})
			out, _, done := q.take("o/n", 0, tc.at, nil)
			if got := len(out) == 1; got != tc.offered {
				t.Errorf("offered = %v, want %v", got, tc.offered)
			}
			if got := slices.Contains(done, 1); got != tc.removed {
				t.Errorf("removed = %v (done %v), want %v", got, done, tc.removed)
			}
			if _, still := q.find("o/n", "ag", 2, protocol.TypeCancel); still == tc.removed {
				t.Errorf("still queued = %v, want %v", still, !tc.removed)
			}
		})
	}
}

// Removing an acknowledged message clears its slot: the queue's array must not keep the
// message and its sealed envelope alive (it did, one message per node, 4 KiB each).
func TestRemoveFreesTheSlot(t *testing.T) {
	var q queues
	q.init(time.Second, time.Minute)
	q.push("o/n", store.Message{ID: 1, Agreement: "ag", Type: string(protocol.TypeUpdate), Seq: 1})
	q.push("o/n", store.Message{ID: 2, Agreement: "ag", Type: string(protocol.TypeUpdate), Seq: 2})
	for _, id := range []uint64{1, 2} {
		if !q.remove("o/n", id) {
			t.Fatalf("message %d not removed", id)
		}
	}
	nq := q.m["o/n"]
	for i, m := range nq.msgs[:cap(nq.msgs)] {
		if m != nil {
			t.Errorf("slot %d still holds message %d", i, m.ID)
		}
	}
}
