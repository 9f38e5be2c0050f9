package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// queues hold every node's unacknowledged messages in memory (mirroring the store's outbox)
// and wake the node's waiting polls when one arrives.
type queues struct {
	retry, maxRetry time.Duration
	mu              sync.Mutex
	m               map[string]*nodeQueue
}

type nodeQueue struct {
	msgs    []*queued
	waiters []*poll // polls to wake when a message arrives (woken once, then dropped)
}

type queued struct {
	store.Message
	offered  int       // times handed to a poll
	nextSend time.Time // when an offered, unacknowledged message is offered again
}

func (q *queues) init(retry, maxRetry time.Duration) {
	q.retry, q.maxRetry, q.m = retry, maxRetry, map[string]*nodeQueue{}
}

func (q *queues) get(node string) *nodeQueue {
	nq := q.m[node]
	if nq == nil {
		nq = &nodeQueue{}
		q.m[node] = nq
	}
	return nq
}

func (q *queues) restore(node string, m store.Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nq := q.get(node)
	nq.msgs = append(nq.msgs, &queued{Message: m})
}

func (q *queues) push(node string, m store.Message) {
	q.mu.Lock()
	nq := q.get(node)
	nq.msgs = append(nq.msgs, &queued{Message: m})
	ws := nq.waiters
	nq.waiters = nil
	q.mu.Unlock()
	for _, p := range ws {
		go p.check() // never under the caller's locks: a check may reseal a proposal
	}
}

// unwatch drops a poll that no longer waits.
func (q *queues) unwatch(node string, p *poll) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if nq := q.m[node]; nq != nil {
		nq.waiters = slices.DeleteFunc(nq.waiters, func(w *poll) bool { return w == p })
	}
}

// remove drops a message; it reports whether it was queued.
func (q *queues) remove(node string, id uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	nq := q.m[node]
	if nq == nil {
		return false
	}
	for i, m := range nq.msgs {
		if m.ID == id {
			// slices.Delete clears the freed tail slot: the array must not keep the
			// acknowledged message (and its sealed envelope) alive.
			nq.msgs = slices.Delete(nq.msgs, i, i+1)
			return true
		}
	}
	return false
}

// find returns the queued message of agreement ag with sequence seq and type typ: a reply
// acknowledges only the kind of message it answers.
func (q *queues) find(node, ag string, seq uint64, typ protocol.MessageType) (uint64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if nq := q.m[node]; nq != nil {
		for _, m := range nq.msgs {
			if m.Agreement == ag && m.Seq == seq && m.Type == string(typ) {
				return m.ID, true
			}
		}
	}
	return 0, false
}

// FarewellTTL is how long a cancel sealed to a node's replaced keys waits for the old node.
const FarewellTTL = 24 * time.Hour

// take returns the messages to offer now, or, when there are none, registers w (when not
// nil) to be woken by the next message and returns the time of the next due resend. It also
// returns the cancel_replies the client has polled past
// (id <= after): nothing acknowledges a reply, so receiving it is its end; and the farewell
// cancels older than FarewellTTL. They are gone from the memory queue and the caller
// removes them from the store.
func (q *queues) take(node string, after uint64, now time.Time, w *poll) ([]store.Message, time.Time, []uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	nq := q.get(node)
	var out []store.Message
	var next time.Time
	var done []uint64
	keep := nq.msgs[:0]
	for _, m := range nq.msgs {
		if m.Farewell && now.Sub(m.Queued) > FarewellTTL {
			done = append(done, m.ID) // the replaced node never answered: it is gone
			continue
		}
		if m.Type == string(protocol.TypeCancelReply) {
			if m.ID <= after {
				done = append(done, m.ID)
				continue
			}
			// Offered to every poll below its id (an answer that got lost), never by backoff.
			m.offered++
			out = append(out, m.Message)
			keep = append(keep, m)
			continue
		}
		keep = append(keep, m)
		// Never seen by this client (id past its cursor), or seen and not acknowledged in
		// time: offer it (again).
		if m.ID > after || !now.Before(m.nextSend) {
			backoff := q.retry << min(m.offered, 16)
			if backoff > q.maxRetry || backoff <= 0 {
				backoff = q.maxRetry
			}
			m.offered++
			m.nextSend = now.Add(backoff)
			out = append(out, m.Message)
			continue
		}
		if next.IsZero() || m.nextSend.Before(next) {
			next = m.nextSend
		}
	}
	clear(nq.msgs[len(keep):])
	nq.msgs = keep
	if len(out) == 0 && w != nil && !slices.Contains(nq.waiters, w) {
		nq.waiters = append(nq.waiters, w)
	}
	return out, next, done
}

// Pending counts unacknowledged messages (all nodes).
func (e *Engine) Pending() int {
	e.q.mu.Lock()
	defer e.q.mu.Unlock()
	n := 0
	for _, nq := range e.q.m {
		n += len(nq.msgs)
	}
	return n
}

// Poll returns the sealed messages node should get now, waiting up to wait for one. after
// is the highest message id the client has received before (0 after it starts): every
// message past it is offered at once; messages it has received but not acknowledged are
// offered again with backoff. When ctx ends first it returns ctx's error.
func (e *Engine) Poll(ctx context.Context, org, node string, after uint64, wait time.Duration) ([]store.Message, error) {
	type result struct {
		msgs []store.Message
		err  error
	}
	ch := make(chan result, 1)
	msgs, waiting := e.PollFunc(ctx, org, node, after, wait, func(m []store.Message, err error) { ch <- result{m, err} })
	if !waiting {
		return msgs, nil
	}
	r := <-ch
	return r.msgs, r.err
}

// PollFunc is Poll without a goroutine waiting: when messages are there now it returns them
// and waiting false; else it returns waiting true and later calls done exactly once, from
// another goroutine, with the messages, or none when wait passed, or ctx's error when ctx
// ended first. Between the two the poll holds only its timers and its place in the node's
// queue: the API parks the node's connection meanwhile (package park).
func (e *Engine) PollFunc(ctx context.Context, org, node string, after uint64, wait time.Duration, done func([]store.Message, error)) ([]store.Message, bool) {
	wait = min(wait, e.cfg.MaxWait)
	p := &poll{e: e, ctx: ctx, org: org, node: node, id: NodeID(org, node), after: after, done: done}
	e.seen.begin(p.id)
	p.mu.Lock()
	defer p.mu.Unlock()
	if msgs := p.takeLocked(); len(msgs) > 0 {
		p.endLocked()
		return e.refresh(ctx, org, node, msgs), false
	}
	p.deadline = time.AfterFunc(wait, func() { p.finish(nil, nil) })
	p.stopCtx = context.AfterFunc(ctx, func() { p.finish(nil, ctx.Err()) })
	return nil, true
}

// poll is one node poll waiting for a message, its deadline or its context.
type poll struct {
	e             *Engine
	ctx           context.Context
	org, node, id string
	after         uint64
	done          func([]store.Message, error)
	mu            sync.Mutex
	finished      bool
	deadline, due *time.Timer
	stopCtx       func() bool
}

// takeLocked takes what the node should get now; with nothing, it waits in the node's queue
// and for the next due resend.
func (p *poll) takeLocked() []store.Message {
	msgs, next, gone := p.e.q.take(p.id, p.after, time.Now(), p)
	p.e.removeDelivered(p.org, p.node, gone)
	if len(msgs) == 0 && !next.IsZero() {
		if p.due == nil {
			p.due = time.AfterFunc(time.Until(next), p.check)
		} else {
			p.due.Reset(time.Until(next))
		}
	}
	return msgs
}

// check looks again after a wake: a message arrived or a resend fell due.
func (p *poll) check() {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	msgs := p.takeLocked()
	if len(msgs) == 0 {
		p.mu.Unlock()
		return
	}
	p.endLocked()
	p.mu.Unlock()
	p.done(p.e.refresh(p.ctx, p.org, p.node, msgs), nil)
}

// finish ends a poll that has not ended yet with msgs (none) and err.
func (p *poll) finish(msgs []store.Message, err error) {
	p.mu.Lock()
	ending := !p.finished
	if ending {
		p.endLocked()
	}
	p.mu.Unlock()
	if ending {
		p.done(msgs, err)
	}
}

// endLocked marks the poll finished (p.mu held), stops what could wake it and ends its
// "polling" mark.
func (p *poll) endLocked() {
	p.finished = true
	for _, t := range []*time.Timer{p.deadline, p.due} {
		if t != nil {
			t.Stop()
		}
	}
	if p.stopCtx != nil {
		p.stopCtx()
	}
	p.e.q.unwatch(p.id, p)
	p.e.seen.end(p.id, time.Now())
}

// removeDelivered removes from the store the messages take found delivered (cancel_replies
// the client polled past, farewells nobody answered).
func (e *Engine) removeDelivered(org, node string, ids []uint64) {
	if len(ids) == 0 {
		return
	}
	err := e.st.Update(func(tx store.Tx) error {
		for _, mid := range ids {
			if _, err := e.st.RemoveTx(tx, org, node, mid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Still gone from memory; a restart offers it once more, which is harmless.
		e.log.Warn("delivered cancel_reply not removed from the outbox", "node", NodeID(org, node), "err", err)
	}
}

// refresh reseals proposals that have waited so long the node would refuse them as expired
// (protocol.DefaultProposalTTL): same agreement and sequence, current values, new time.
func (e *Engine) refresh(ctx context.Context, org, node string, msgs []store.Message) []store.Message {
	for i, m := range msgs {
		if m.Type != string(protocol.TypeProposal) || time.Since(m.Queued) < protocol.DefaultProposalTTL/2 {
			continue
		}
		fresh, err := e.reseal(ctx, org, node, m)
		if err != nil {
			e.log.Warn("proposal not refreshed", "agreement", m.Agreement, "err", err)
			continue
		}
		msgs[i] = fresh
	}
	return msgs
}

func (e *Engine) reseal(ctx context.Context, org, node string, m store.Message) (store.Message, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.live[m.Agreement]
	if a == nil || a.State != StateProposed {
		return m, ErrUnknown
	}
	w, err := e.snapshot(org)
	if err != nil {
		return m, err
	}
	n := w.nodes[node]
	var d *desire
	for _, x := range w.desired(n) {
		if x.key(org, node) == a.key() && x.svc.ID() == a.Service {
			d = &x
		}
	}
	if d == nil {
		return m, ErrUnknown
	}
	r := e.newResolver(ctx, org)
	res := r.resolve(&Agreement{Bound: a.Bound, Node: a.Node, Org: a.Org, Source: a.Source}, n.Access(), "")
	if res.err != nil || len(res.missing) > 0 {
		return m, fmt.Errorf("secrets not available now")
	}
	svc, applied, err := d.proposal()
	if err != nil {
		return m, err
	}
	p := &protocol.Proposal{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeProposal, Agreement: a.ID,
		From: e.cfg.ID, To: NodeID(org, node), Seq: m.Seq, Time: time.Now()}, Service: svc, Properties: d.props, Secrets: res.values}
	p.Bindings = applied
	env, err := e.seal(a, p)
	if err != nil {
		return m, err
	}
	m.Envelope, m.Queued = env, p.Time
	err = e.st.Update(func(tx store.Tx) error {
		if ok, err := e.st.RemoveTx(tx, org, node, m.ID); err != nil {
			return err
		} else if !ok {
			return ErrUnknown
		}
		return e.st.EnqueueTx(tx, org, node, &m)
	})
	if err != nil {
		return m, err
	}
	e.q.remove(NodeID(org, node), 0) // no-op; ids change below
	e.q.mu.Lock()
	if nq := e.q.m[NodeID(org, node)]; nq != nil {
		for _, q := range nq.msgs {
			if q.Agreement == m.Agreement && q.Seq == m.Seq {
				q.Message = m
			}
		}
	}
	e.q.mu.Unlock()
	return m, nil
}

// ErrBadMessage wraps every refusal of a posted node message (HTTP 400).
var ErrBadMessage = errors.New("bad message")

// Receive opens a sealed message from node and acts on it: replies acknowledge queued
// messages; a cancel ends the agreement; a resync sends the current values.
func (e *Engine) Receive(ctx context.Context, org, node string, envelope []byte) error {
	id := NodeID(org, node)
	msg, err := e.ep.Open(envelope)
	if err != nil {
		if errors.Is(err, protocol.ErrUnknownSender) {
			if handled, ferr := e.farewellAnswered(org, node, envelope); handled {
				return ferr
			}
		}
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	h := msg.Head()
	if h.From != id {
		return fmt.Errorf("%w: message from %q posted with the credentials of %q", ErrBadMessage, h.From, id)
	}
	e.mu.Lock()
	a := e.live[h.Agreement]
	if a == nil || a.Org != org || a.Node != node {
		e.mu.Unlock()
		// An acknowledgement of something already forgotten is harmless: say so, change nothing.
		return fmt.Errorf("%w: agreement %q: %w", ErrBadMessage, h.Agreement, ErrUnknown)
	}
	in := &received{e: e, org: org, node: node, id: id, h: h, c: *a}
	e.mu.Unlock()
	switch m := msg.(type) {
	case *protocol.ProposalReply:
		return in.proposalReply(m)
	case *protocol.UpdateReply:
		return in.updateReply(m)
	case *protocol.CancelReply:
		return in.cancelReply()
	case *protocol.Cancel:
		return in.cancel(m)
	case *protocol.Resync:
		e.mu.Lock()
		defer e.mu.Unlock()
		n, err := store.Part[exchange.NodeAccess](e.st.Nodes, org, node)
		if err != nil {
			return err
		}
		p := &pass{e: e, now: time.Now()}
		p.update(e.newResolver(ctx, org), &in.c, n, "", true)
		return p.commit()
	}
	return fmt.Errorf("%w: a node may not send %s", ErrBadMessage, h.Type)
}

// received is one opened message from a node, about agreement c (a copy).
type received struct {
	e             *Engine
	org, node, id string
	h             *protocol.Meta
	c             Agreement
}

// ack removes the queued message of type t that the reply answers (same agreement and seq).
// With applied, the node now holds the versions that message carried (rollout status), and
// the result says whether that changed anything (false: a duplicate or a replay); without,
// whether the message was queued.
func (in *received) ack(t protocol.MessageType, applied bool) bool {
	e, h := in.e, in.h
	mid, ok := e.q.find(in.id, h.Agreement, h.Seq, t)
	if !ok {
		mid = 0
	}
	var err error
	switch {
	case applied:
		r := &ackRequest{org: in.org, node: in.node, ag: h.Agreement, seq: h.Seq, mid: mid}
		if _, err = e.acks.record(r); err == nil {
			return r.changed
		}
	case ok:
		err = e.st.Update(func(tx store.Tx) error { _, err := e.st.RemoveTx(tx, in.org, in.node, mid); return err })
	}
	if err != nil {
		// Kept queued: the message is offered again and its answer acknowledged again.
		e.log.Warn("acknowledgement not recorded; the message stays queued", "node", in.id, "agreement", h.Agreement, "seq", h.Seq, "err", err)
		return ok
	}
	if ok {
		e.q.remove(in.id, mid)
	}
	return ok
}

// proposalReply decides the agreement, if the reply answers its outstanding proposal.
func (in *received) proposalReply(m *protocol.ProposalReply) error {
	e, h := in.e, in.h
	e.mu.Lock()
	defer e.mu.Unlock()
	c := in.c
	// Re-read under the lock: another reply may have decided meanwhile.
	if a := e.live[h.Agreement]; a != nil {
		c = *a
	}
	mid, queued := e.q.find(in.id, h.Agreement, h.Seq, protocol.TypeProposal)
	// Only the answer to the agreement's outstanding proposal decides it: a duplicate (the
	// proposal was offered again or resealed and the node answered each copy), a reply to a
	// proposal since superseded, or one arriving after the agreement moved on is acknowledged
	// and changes nothing. Records from before ProposalSeq existed fall back to "its proposal
	// is still queued".
	current := c.State == StateProposed && (h.Seq == c.ProposalSeq || c.ProposalSeq == 0 && queued)
	if !current {
		in.ack(protocol.TypeProposal, false)
		e.log.Info("stale proposal reply ignored", "agreement", c.ID, "node", in.id, "seq", h.Seq,
			"proposal_seq", c.ProposalSeq, "state", c.State, "status", m.Status)
		return nil
	}
	accepted := m.Status == protocol.StatusAccepted
	if accepted {
		c.State = StateAgreed
	} else {
		c.State, c.Held = StateDeclined, m.Reason
	}
	c.Updated = time.Now()
	if !queued {
		mid = 0
	}
	if err := e.decide(&c, mid, h.Seq, accepted); err != nil {
		return err
	}
	e.log.Info("proposal reply", "agreement", c.ID, "node", in.id, "status", m.Status, "reason", m.Reason)
	return nil
}

// decide records the answer to agreement c's proposal seq in one transaction: the decided
// agreement, the holdings it acknowledges (accepted) and the removal of the queued proposal
// mid (0: none). All or nothing: when it fails the proposal stays queued and is offered
// again, and the node's next answer decides (removing the proposal alone would leave the
// agreement proposed with nothing left to answer). Caller holds e.mu.
func (e *Engine) decide(c *Agreement, mid, seq uint64, accepted bool) error {
	e.hold.mu.Lock()
	defer e.hold.mu.Unlock()
	now := time.Now()
	reply := &rolloutChange{}
	if accepted {
		reply = e.planReply(c.Org, c.ID, seq, "", now)
	}
	saved := e.planSaved([]*Agreement{c}, nil, nil, now)
	err := e.st.Update(func(tx store.Tx) error {
		if mid != 0 {
			if _, err := e.st.RemoveTx(tx, c.Org, c.Node, mid); err != nil {
				return err
			}
		}
		if err := reply.apply(tx, e.holdTable); err != nil {
			return err
		}
		if err := saved.apply(tx, e.holdTable); err != nil {
			return err
		}
		return e.agreements.PutTx(tx, c.Org, c.ID, *c)
	})
	if err != nil {
		return fmt.Errorf("proposal reply for agreement %q not recorded (the proposal stays queued): %w", c.ID, err)
	}
	reply.commit(&e.hold)
	e.observeAcks(reply)
	saved.commit(&e.hold)
	e.live[c.ID] = c
	if mid != 0 {
		e.q.remove(NodeID(c.Org, c.Node), mid)
	}
	return nil
}

// cancelReply ends an agreement the agbot cancelled. The queued cancel is removed and the
// agreement dropped in one transaction: when it fails, the cancel stays queued and is offered
// again (removing it alone would leave the agreement ending for good).
func (in *received) cancelReply() error {
	e, h := in.e, in.h
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.live[h.Agreement]; a == nil || a.State != StateEnding {
		in.ack(protocol.TypeCancel, false)
		return nil // the agbot did not cancel it (or it is gone already): nothing to end
	}
	mid, queued := e.q.find(in.id, h.Agreement, h.Seq, protocol.TypeCancel)
	if !queued {
		mid = 0
	}
	if err := e.persistRemoving(in.org, in.node, mid, nil, []*Agreement{&in.c}, nil); err != nil {
		return fmt.Errorf("cancel reply for agreement %q not recorded (the cancel stays queued): %w", h.Agreement, err)
	}
	return nil
}

// updateReply acknowledges an applied update; a failed one stays queued and is offered again.
func (in *received) updateReply(m *protocol.UpdateReply) error {
	e, c := in.e, &in.c
	if m.Status == protocol.StatusFailed {
		e.log.Warn("update failed on node, will resend", "agreement", c.ID, "node", in.id, "seq", m.Seq, "reason", m.Reason)
		reason := m.Reason
		if reason == "" {
			reason = "failed (no reason given)"
		}
		if err := e.recordReply(in.org, in.node, c.ID, in.h.Seq, 0, reason); err != nil {
			e.log.Warn("failure not recorded in the rollout", "agreement", c.ID, "node", in.id, "err", err)
		}
		return nil
	}
	if !in.ack(protocol.TypeUpdate, true) {
		return fmt.Errorf("update_reply for agreement %q seq %d: %w", c.ID, m.Seq, ErrNothingOutstanding)
	}
	e.log.Debug("update acknowledged", "agreement", c.ID, "node", in.id, "seq", m.Seq, "status", m.Status)
	return nil
}

// cancel ends an agreement the node cancelled, answering with a CancelReply.
func (in *received) cancel(m *protocol.Cancel) error {
	e := in.e
	e.mu.Lock()
	defer e.mu.Unlock()
	c := in.c
	c.State, c.Held, c.Updated = StateDeclined, "cancelled by the node: "+m.Reason, time.Now()
	p := &pass{e: e, now: time.Now()}
	reply := &protocol.CancelReply{Meta: p.metaSeq(&c, protocol.TypeCancelReply, m.Seq), Status: protocol.StatusApplied}
	p.jobs = append(p.jobs, &job{a: &c, msg: reply})
	p.save = append(p.save, &c)
	if err := e.dropQueued(in.org, in.node, c.ID); err != nil {
		return err
	}
	return p.commit()
}

// dropQueued forgets every queued message of an agreement ("" for every agreement of the
// node). Caller holds e.mu.
func (e *Engine) dropQueued(org, node, agreement string) error {
	id := NodeID(org, node)
	var ids []uint64
	e.q.mu.Lock()
	if nq := e.q.m[id]; nq != nil {
		for _, m := range nq.msgs {
			if agreement == "" || m.Agreement == agreement {
				ids = append(ids, m.ID)
			}
		}
	}
	e.q.mu.Unlock()
	err := e.st.Update(func(tx store.Tx) error {
		for _, i := range ids {
			if _, err := e.st.RemoveTx(tx, org, node, i); err != nil {
				return err
			}
		}
		return nil
	})
	for _, i := range ids {
		e.q.remove(id, i)
	}
	return err
}

// Use is an agreement that depends on a secret with nothing to fall back to.
type Use struct {
	Agreement string `json:"agreementId"`
	Node      string `json:"node"`
	Owner     string `json:"owner"`
	Source    string `json:"source"`
	Service   string `json:"service"`
}

// Users lists the live agreements that would lose secret name (of org) with no fallback if
// it were deleted. A node-specific secret whose user/org secret exists is not listed: its
// agreements fall back through an update.
func (e *Engine) Users(ctx context.Context, org, name string) ([]Use, error) {
	e.mu.Lock()
	var hit []*Agreement
	for _, a := range e.live {
		if a.Org != org || (a.State != StateProposed && a.State != StateAgreed) {
			continue
		}
		for _, src := range a.Sources {
			if src == name {
				hit = append(hit, a)
				break
			}
		}
	}
	e.mu.Unlock()
	r := e.newResolver(ctx, org)
	var out []Use
	for _, a := range hit {
		lost := false
		for svcName, src := range a.Sources {
			if src != name {
				continue
			}
			cands := candidates(a.Bound[svcName], a.Node)
			at := indexOf(cands, name)
			fallback := false
			for _, c := range cands[at+1:] {
				g := r.get(c)
				if g.err != nil {
					return nil, g.err
				}
				fallback = fallback || g.found
			}
			lost = lost || !fallback
		}
		if lost {
			owner := ""
			if n, err := e.st.Nodes.Get(org, a.Node); err == nil {
				owner = n.Owner
			}
			out = append(out, Use{Agreement: a.ID, Node: a.Node, Owner: owner, Source: a.Source, Service: a.Service})
		}
	}
	return out, nil
}

// CancelAgreements ends the given agreements (a forced secret delete).
func (e *Engine) CancelAgreements(ids []string, reason string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := &pass{e: e, now: time.Now()}
	for _, id := range ids {
		if a := e.live[id]; a != nil && a.State != StateEnding {
			p.cancel(a, reason)
		}
	}
	return p.commit()
}
