package protocol

import (
	"fmt"
	"sync"
	"time"
)

// Defaults of TrackerOptions.
const (
	DefaultProposalTTL = 10 * time.Minute
	DefaultClockSkew   = time.Minute
)

// TrackerOptions configure a Tracker. Zero values mean the defaults.
type TrackerOptions struct {
	// ProposalTTL: a proposal made longer ago than this is refused (ErrExpired). Updates do
	// not expire while the agreement lives.
	ProposalTTL time.Duration
	// ClockSkew: how far in the future a proposal may be dated.
	ClockSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Tracker is a receiver's replay and order guard: per agreement the last sequence applied,
// and for a while after an agreement ended, a tombstone so that a captured proposal can not
// start it again. It keeps no secret. It is safe for concurrent use.
//
// Use: err := t.Check(m); ErrDuplicate → acknowledge again and do nothing; another error →
// refuse; nil → apply, then t.Commit(m) (which re-checks, so of two concurrent deliveries
// of one message only one commits).
type Tracker struct {
	opts TrackerOptions

	mu        sync.Mutex
	live      map[string]uint64 // agreement → last sequence applied
	ended     map[string]tombstone
	lastPrune time.Time
}

type tombstone struct {
	until time.Time
}

// NewTracker returns an empty tracker.
func NewTracker(o TrackerOptions) *Tracker {
	if o.ProposalTTL <= 0 {
		o.ProposalTTL = DefaultProposalTTL
	}
	if o.ClockSkew <= 0 {
		o.ClockSkew = DefaultClockSkew
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Tracker{opts: o, live: map[string]uint64{}, ended: map[string]tombstone{}}
}

// Check says whether m may be applied now: nil (apply), ErrDuplicate (already applied: ack
// again), or a refusal wrapping ErrKnownAgreement, ErrStale, ErrExpired or
// ErrUnknownAgreement.
func (t *Tracker) Check(m Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.check(m)
}

func (t *Tracker) check(m Message) error {
	h := m.Head()
	id := quote(h.Agreement)
	last, live := t.live[h.Agreement]
	gone, ended := t.ended[h.Agreement]
	if ended && t.opts.Now().After(gone.until) {
		ended = false
	}
	if h.Type == TypeProposal {
		if live || ended {
			return fmt.Errorf("proposal for agreement %s: %w", id, ErrKnownAgreement)
		}
		now := t.opts.Now()
		if age := now.Sub(h.Time); age > t.opts.ProposalTTL {
			return fmt.Errorf("proposal for agreement %s made %s ago, time to live %s: %w", id, age.Round(time.Second), t.opts.ProposalTTL, ErrExpired)
		}
		if ahead := h.Time.Sub(now); ahead > t.opts.ClockSkew {
			return fmt.Errorf("proposal for agreement %s dated %s in the future (clock skew allowed %s): %w", id, ahead.Round(time.Second), t.opts.ClockSkew, ErrExpired)
		}
		return nil
	}
	cancel := h.Type == TypeCancel || h.Type == TypeCancelReply
	if !live {
		// A retransmitted cancel (or its reply) for an ended agreement is acknowledged
		// again; anything else for it is unknown.
		if ended && cancel {
			return fmt.Errorf("%s %d for ended agreement %s: %w", h.Type, h.Seq, id, ErrDuplicate)
		}
		return fmt.Errorf("%s for agreement %s: %w", h.Type, id, ErrUnknownAgreement)
	}
	if h.Type == TypeResync || cancel {
		// A resync is a request naming the last sequence its sender applied, not a step.
		// Ending is final and either side may do it, whatever its sequence: agreement ids
		// are never reused, so an old cancel can only end the agreement it was made for.
		return nil
	}
	switch {
	case h.Seq < last:
		return fmt.Errorf("%s %d for agreement %s, last applied %d: %w", h.Type, h.Seq, id, last, ErrStale)
	case h.Seq == last:
		return fmt.Errorf("%s %d for agreement %s: %w", h.Type, h.Seq, id, ErrDuplicate)
	}
	return nil
}

// Commit records that m was applied. It re-checks first and returns the same errors as
// Check, recording nothing then. A cancel or cancel reply ends the agreement.
func (t *Tracker) Commit(m Message) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.check(m); err != nil {
		return err
	}
	h := m.Head()
	switch h.Type {
	case TypeResync:
		return nil
	case TypeCancel, TypeCancelReply:
		t.end(h.Agreement)
	default:
		t.live[h.Agreement] = h.Seq
	}
	return nil
}

// End ends an agreement (e.g. this side cancelled it): later messages for it are unknown,
// a retransmitted cancel or cancel reply is a duplicate, and a proposal reusing its id is
// refused for ProposalTTL+ClockSkew, after which such a proposal would be expired anyway.
func (t *Tracker) End(agreement string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.end(agreement)
}

func (t *Tracker) end(agreement string) {
	now := t.opts.Now()
	delete(t.live, agreement)
	t.ended[agreement] = tombstone{until: now.Add(t.opts.ProposalTTL + t.opts.ClockSkew)}
	if now.Sub(t.lastPrune) > time.Minute {
		t.lastPrune = now
		for id, ts := range t.ended {
			if now.After(ts.until) {
				delete(t.ended, id)
			}
		}
	}
}

// Restore records a live agreement's last applied sequence, e.g. from the state DB after a
// restart, or on the agbot when it sends a proposal (Restore(id, 0) so that the reply with
// sequence 1 applies).
func (t *Tracker) Restore(agreement string, lastSeq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ended, agreement)
	t.live[agreement] = lastSeq
}

// RestoreEnded records an agreement that ended at the given time, after a restart.
func (t *Tracker) RestoreEnded(agreement string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.live, agreement)
	t.ended[agreement] = tombstone{until: at.Add(t.opts.ProposalTTL + t.opts.ClockSkew)}
}

// LastSeq returns the last sequence applied for a live agreement.
func (t *Tracker) LastSeq(agreement string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.live[agreement]
	return s, ok
}
