package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Node life cycle: registration (with new keys: farewells sealed to the old ones) and deletion.

// NodeRegistered records a node's registration and starts its agreements afresh, then
// reconciles the node. A registration is the node saying "this is me now":
//
//  1. Declined agreements (the node declined or cancelled them, e.g. `hzn unregister`) and
//     held ones are forgotten, so matching proposes them again under new agreement ids.
//     Without a registration a declined agreement stays declined: no proposal loop.
//  2. With keys other than the registered ones (the API allows that to the node's owner or
//     an org admin only), everything queued for the node is dropped (sealed to keys the
//     new node does not have), and every agreement the agbot still thinks proposed, agreed
//     or ending is forgotten, with a cancel sealed to the OLD keys queued for the old node
//     (a farewell: it stops its services and logs that its keys were replaced). Matching
//     then proposes new agreements to the new keys.
func (e *Engine) NodeRegistered(ctx context.Context, org, node string, keys *protocol.PublicKeys) error {
	id := NodeID(org, node)
	e.mu.Lock()
	old, _ := e.keys.PeerKeys(id)
	rekeyed := old == nil || old.Fingerprint() != keys.Fingerprint()
	e.keys.set(id, keys)
	var err error
	if rekeyed {
		err = e.dropQueued(org, node, "")
		e.retired.set(id, old)
	}
	p := &pass{e: e, now: time.Now()}
	var farewells []*Agreement
	for _, a := range e.live {
		if a.Org != org || a.Node != node {
			continue
		}
		switch {
		case a.State == StateDeclined || a.State == StateHeld:
			p.drop = append(p.drop, a)
		case rekeyed && old != nil:
			farewells = append(farewells, a)
			p.drop = append(p.drop, a)
		case rekeyed:
			p.cancel(a, "node registered again with new keys")
		}
	}
	if err == nil {
		p.farewell(org, node, old, farewells)
		err = p.commit()
	}
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("node %s registered: %w", id, err)
	}
	return e.ReconcileNode(ctx, org, node)
}

// farewell queues, for each agreement, a cancel sealed to the node's replaced keys old.
func (p *pass) farewell(org, node string, old *protocol.PublicKeys, ags []*Agreement) {
	if len(ags) == 0 {
		return
	}
	id := NodeID(org, node)
	ep := &protocol.Endpoint{ID: p.e.cfg.ID, Keys: p.e.cfg.Keys, Peers: protocol.StaticKeyRing{id: old}, Limits: p.e.cfg.Limits}
	for _, a := range ags {
		c := *a
		msg := &protocol.Cancel{Meta: p.meta(&c, protocol.TypeCancel),
			Reason: protocol.CancelKeysReplaced + ": the node's owner or an org admin registered other keys for " + id}
		env, err := ep.Seal(msg)
		if err != nil {
			p.e.log.Warn("seal failed", "agreement", c.ID, "type", protocol.TypeCancel, "err", err)
			continue
		}
		p.extra = append(p.extra, outgoing{org: org, node: node, m: store.Message{Agreement: c.ID, Type: string(protocol.TypeCancel),
			Seq: c.Seq, Envelope: env, Queued: p.now, Farewell: true}})
		p.e.log.Info("agreement cancelled on the node whose keys were replaced", "agreement", c.ID, "node", id,
			"service", c.Service, "old_keys", old.Fingerprint())
	}
}

// farewellAnswered opens a message the node's current keys do not verify with its replaced
// keys. It reports whether it was from them: then the old node's answer to a farewell
// cancel is acknowledged, and anything else refused.
func (e *Engine) farewellAnswered(org, node string, envelope []byte) (bool, error) {
	id := NodeID(org, node)
	old, err := e.retired.PeerKeys(id)
	if err != nil {
		return false, nil
	}
	ring := protocol.StaticKeyRing{id: old}
	ep := &protocol.Endpoint{ID: e.cfg.ID, Keys: e.cfg.Keys, Peers: ring, Limits: e.cfg.Limits,
		Agreements: protocol.DerivedAgreementKeys{ID: e.cfg.ID, Keys: e.cfg.Keys, Peers: ring}}
	msg, err := ep.Open(envelope)
	if err != nil {
		return false, nil
	}
	h := msg.Head()
	if _, ok := msg.(*protocol.CancelReply); !ok || h.From != id {
		return true, fmt.Errorf("%w: %s from %s signed with the node's replaced keys %s: only the answer to the cancel sent to them is accepted",
			ErrBadMessage, h.Type, id, old.Fingerprint())
	}
	mid, queued := e.q.find(id, h.Agreement, h.Seq, protocol.TypeCancel)
	if queued {
		if err := e.st.Update(func(tx store.Tx) error { _, err := e.st.RemoveTx(tx, org, node, mid); return err }); err != nil {
			return true, err
		}
		e.q.remove(id, mid)
	}
	e.log.Info("the node whose keys were replaced ended its agreement", "node", id, "agreement", h.Agreement, "was_queued", queued)
	return true, nil
}

// NodeDeleted forgets a node's agreements, queue and keys (node deleted, or its keys released).
func (e *Engine) NodeDeleted(org, node string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var drop []*Agreement
	for _, a := range e.live {
		if a.Org == org && a.Node == node {
			drop = append(drop, a)
		}
	}
	e.hold.mu.Lock()
	defer e.hold.mu.Unlock()
	rc := e.planSaved(nil, drop, nil, time.Now())
	err := e.st.Update(func(tx store.Tx) error {
		for _, a := range drop {
			_ = e.agreements.DeleteTx(tx, a.Org, a.ID)
		}
		_ = e.lastPoll.DeleteTx(tx, org, node)
		if err := rc.apply(tx, e.holdTable); err != nil {
			return err
		}
		return e.st.DropNodeTx(tx, org, node)
	})
	if err != nil {
		return err
	}
	rc.commit(&e.hold)
	for _, a := range drop {
		delete(e.live, a.ID)
	}
	e.seen.mu.Lock()
	delete(e.seen.m, NodeID(org, node))
	delete(e.seen.dirty, NodeID(org, node))
	e.seen.mu.Unlock()
	e.q.mu.Lock()
	delete(e.q.m, NodeID(org, node))
	e.q.mu.Unlock()
	e.keys.set(NodeID(org, node), nil)
	e.retired.set(NodeID(org, node), nil)
	return nil
}
