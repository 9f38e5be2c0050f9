package agreement

import (
	"context"
	"errors"
	"fmt"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Cancel ends an agreement the agbot cancelled: it stops and removes the containers, wipes the
// stores and deletes the state, then returns the reply to send. It is idempotent: a cancel for
// an agreement that is already gone is acknowledged as a duplicate. An error means the
// agreement could not be removed completely (it stays in the cancelling phase and is finished
// by a retried cancel or at start-up); no reply is sent then, so the agbot retries.
func (m *Manager) Cancel(ctx context.Context, c *protocol.Cancel) (*protocol.CancelReply, error) {
	if err := c.Validate(m.limits); err != nil {
		return nil, fmt.Errorf("invalid cancel: %w", err)
	}
	reply := &protocol.CancelReply{Meta: m.replyMeta(&c.Meta, protocol.TypeCancelReply), Status: protocol.StatusApplied}
	release, err := m.begin(c.Agreement)
	if err != nil {
		return nil, err
	}
	defer release()
	r, err := m.db.get(c.Agreement)
	if err != nil {
		return nil, err
	}
	if r == nil {
		reply.Status = protocol.StatusDuplicate
		m.log.Info("cancel for an agreement not (or no longer) here, acknowledged", "agreement", c.Agreement)
		return reply, nil
	}
	if r.Agbot != c.From {
		return nil, fmt.Errorf("cancel for agreement %q comes from %q, the agreement is with %q", c.Agreement, c.From, r.Agbot)
	}
	if err := m.end(ctx, r); err != nil {
		return nil, err
	}
	m.log.Info("cancelled agreement", "agreement", r.ID, "seq", c.Seq, "reason", c.Reason)
	return reply, nil
}

// End ends an agreement on the node's initiative (the node unregisters, or a service can not
// run any more) and returns the cancel to send to the agbot.
func (m *Manager) End(ctx context.Context, id, why string) (*protocol.Cancel, error) {
	release, err := m.begin(id)
	if err != nil {
		return nil, err
	}
	defer release()
	r, err := m.db.get(id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("agreement %q: %w", id, ErrNotFound)
	}
	if err := m.end(ctx, r); err != nil {
		return nil, err
	}
	m.log.Info("ended agreement", "agreement", r.ID, "reason", why)
	return &protocol.Cancel{
		Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeCancel, Agreement: r.ID,
			From: r.Node, To: r.Agbot, Seq: r.Sequence, Time: m.now().UTC()},
		Reason: reason(errors.New(why)),
	}, nil
}

// end runs a cancel: 1. persist the cancelling phase (a crash from here on is finished at
// start-up); 2. stop the containers; 3. wipe the stores; 4. delete the state, leaving a
// tombstone so that a replayed proposal can not start it again.
func (m *Manager) end(ctx context.Context, r *record) error {
	if r.Phase != PhaseCancelling {
		r.Phase = PhaseCancelling
		r.UpdatedAt = m.now().UTC()
		if err := m.db.put(r); err != nil {
			return err
		}
	}
	if err := m.teardown(ctx, r); err != nil {
		return fmt.Errorf("cancel agreement %q: %w", r.ID, err)
	}
	if err := m.db.end(r.ID, ended{Sequence: r.Sequence, At: m.now().UTC()}); err != nil {
		return err
	}
	m.tracker.End(r.ID)
	return nil
}
