package protocol

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func msgAt(typ MessageType, seq uint64, at time.Time) Message {
	m := meta(typ, agbotID, nodeID, seq)
	m.Time = at
	switch typ {
	case TypeProposal:
		return &Proposal{Meta: m}
	case TypeUpdate:
		return &Update{Meta: m}
	case TypeCancel:
		return &Cancel{Meta: m}
	case TypeResync:
		return &Resync{Meta: m}
	case TypeUpdateReply:
		return &UpdateReply{Meta: m}
	}
	panic(typ)
}

func TestTracker(t *testing.T) {
	type step struct {
		advance time.Duration // clock moves before the step
		typ     MessageType
		seq     uint64
		age     time.Duration // message time = now - age
		want    error         // from Commit; nil: applied
		end     bool          // call End instead of delivering
	}
	tests := []struct {
		name  string
		opts  TrackerOptions
		steps []step
	}{
		{"in order", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 2},
			{typ: TypeUpdate, seq: 3},
			{typ: TypeCancel, seq: 4},
		}},
		{"duplicate update is acknowledged, not applied", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 2},
			{typ: TypeUpdate, seq: 2, want: ErrDuplicate},
		}},
		{"stale update", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 3},
			{typ: TypeUpdate, seq: 2, want: ErrStale},
			{typ: TypeUpdate, seq: 1, want: ErrStale},
		}},
		{"gaps are allowed", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 10},
			{typ: TypeUpdate, seq: 11},
		}},
		{"proposal for a known agreement", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeProposal, seq: 1, want: ErrKnownAgreement},
			{typ: TypeProposal, seq: 9, want: ErrKnownAgreement},
		}},
		{"proposal expired", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1, age: 10*time.Minute + time.Second, want: ErrExpired},
		}},
		{"proposal just in time", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1, age: 10 * time.Minute},
		}},
		{"proposal TTL configurable", TrackerOptions{ProposalTTL: time.Minute}, []step{
			{typ: TypeProposal, seq: 1, age: 61 * time.Second, want: ErrExpired},
		}},
		{"proposal from the future", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1, age: -2 * time.Minute, want: ErrExpired},
		}},
		{"proposal within clock skew", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1, age: -time.Minute},
		}},
		{"updates do not expire", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{advance: 30 * 24 * time.Hour, typ: TypeUpdate, seq: 2, age: 29 * 24 * time.Hour},
		}},
		{"update for unknown agreement", TrackerOptions{}, []step{
			{typ: TypeUpdate, seq: 2, want: ErrUnknownAgreement},
		}},
		{"cancel retransmitted", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeCancel, seq: 2},
			{typ: TypeCancel, seq: 2, want: ErrDuplicate},
			{typ: TypeCancel, seq: 3, want: ErrDuplicate},
			{typ: TypeUpdate, seq: 3, want: ErrUnknownAgreement},
			{typ: TypeResync, seq: 3, want: ErrUnknownAgreement},
		}},
		{"proposal replayed after cancel", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeCancel, seq: 2},
			{advance: 5 * time.Minute, typ: TypeProposal, seq: 1, age: 5 * time.Minute, want: ErrKnownAgreement},
		}},
		{"ended agreement forgotten after TTL+skew", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{end: true},
			{advance: 11*time.Minute + time.Second, typ: TypeProposal, seq: 1},
		}},
		{"cancel ends whatever its sequence", TrackerOptions{}, []step{
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 5},
			{typ: TypeCancel, seq: 3},
			{typ: TypeUpdate, seq: 6, want: ErrUnknownAgreement},
		}},
		{"cancel for unknown agreement", TrackerOptions{}, []step{
			{typ: TypeCancel, seq: 3, want: ErrUnknownAgreement},
		}},
		{"resync needs a live agreement, no order", TrackerOptions{}, []step{
			{typ: TypeResync, seq: 1, want: ErrUnknownAgreement},
			{typ: TypeProposal, seq: 1},
			{typ: TypeUpdate, seq: 5},
			{typ: TypeResync, seq: 1},
			{typ: TypeResync, seq: 5},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: testTime}
			tc.opts.Now = clock.Now
			tr := NewTracker(tc.opts)
			for i, s := range tc.steps {
				clock.now = clock.now.Add(s.advance)
				if s.end {
					tr.End(agreement)
					continue
				}
				m := msgAt(s.typ, s.seq, clock.now.Add(-s.age))
				checkErr := tr.Check(m)
				err := tr.Commit(m)
				if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
					t.Fatalf("step %d %s %d: Commit = %v, want %v", i, s.typ, s.seq, err, s.want)
				}
				if !errors.Is(checkErr, s.want) && !(s.want == nil && checkErr == nil) {
					t.Fatalf("step %d %s %d: Check = %v, Commit = %v: must agree", i, s.typ, s.seq, checkErr, err)
				}
			}
		})
	}
}

func TestTrackerRestore(t *testing.T) {
	clock := &fakeClock{now: testTime}
	tr := NewTracker(TrackerOptions{Now: clock.Now})
	tr.Restore(agreement, 7)
	if got, ok := tr.LastSeq(agreement); !ok || got != 7 {
		t.Fatalf("LastSeq = %d, %v, want 7, true", got, ok)
	}
	for _, c := range []struct {
		seq  uint64
		want error
	}{{6, ErrStale}, {7, ErrDuplicate}, {8, nil}} {
		if err := tr.Check(msgAt(TypeUpdate, c.seq, testTime)); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
			t.Errorf("after Restore(7), update %d: %v, want %v", c.seq, err, c.want)
		}
	}
	// The agbot side: Restore(id, 0) when proposing, then replies apply in order.
	tr.Restore("a2", 0)
	r := &UpdateReply{Meta: meta(TypeUpdateReply, nodeID, agbotID, 1)}
	r.Agreement = "a2"
	if err := tr.Commit(r); err != nil {
		t.Errorf("reply 1 after Restore(0): %v", err)
	}
	tr.RestoreEnded("a3", testTime)
	p := msgAt(TypeProposal, 1, testTime)
	p.Head().Agreement = "a3"
	if err := tr.Check(p); !errors.Is(err, ErrKnownAgreement) {
		t.Errorf("proposal for restored ended agreement: %v, want ErrKnownAgreement", err)
	}
}

// TestTrackerConcurrentCommit: of many concurrent deliveries of one update exactly one applies.
func TestTrackerConcurrentCommit(t *testing.T) {
	tr := NewTracker(TrackerOptions{})
	tr.Restore(agreement, 1)
	var applied, dup atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := msgAt(TypeUpdate, 2, testTime)
			if err := tr.Check(m); err != nil && !errors.Is(err, ErrDuplicate) {
				t.Errorf("Check: %v", err)
				return
			}
			switch err := tr.Commit(m); {
			case err == nil:
				applied.Add(1)
			case errors.Is(err, ErrDuplicate):
				dup.Add(1)
			default:
				t.Errorf("Commit: %v", err)
			}
		}()
	}
	wg.Wait()
	if applied.Load() != 1 || dup.Load() != 15 {
		t.Errorf("applied %d, duplicates %d; want 1 and 15", applied.Load(), dup.Load())
	}
}
