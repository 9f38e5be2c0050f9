package engine

import (
	"errors"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
)

// ErrNothingOutstanding: a reply that acknowledges no message queued for the node now: a
// duplicate (the node answered a resend after its first answer was recorded) or a replay.
// Nothing changes (HTTP 409).
var ErrNothingOutstanding = errors.New("acknowledges no outstanding message (duplicate or replay): nothing changed")

// maxAckBatch bounds one group commit.
const maxAckBatch = 4096

// ackRequest is one applied update to record: the holdings of agreement ag acknowledged at
// seq, and the queued message mid (0: none) to remove from the outbox.
type ackRequest struct {
	org, node, ag string
	seq, mid      uint64
	b             *ackBatch
	changed       bool // set by the commit: a message removed or a holding acknowledged
}

// ackBatch is the group of acknowledgements one transaction records; done is closed after
// it, with err set when it failed.
type ackBatch struct {
	reqs []*ackRequest
	done chan struct{}
	err  error
}

// acker records acknowledgements in group commits: while one transaction (and its fsync)
// runs, the acknowledgements arriving meanwhile gather into the next, so a fan-out to N
// nodes costs a few dozen commits instead of N. Each caller still waits for its own commit:
// a 204 means the acknowledgement is on disk, as before. It is independent of the store's
// backend: one store.Update per batch.
type acker struct {
	e       *Engine
	mu      sync.Mutex
	next    *ackBatch     // gathering; nil when empty
	stopped bool          // after close: each record commits on its own
	wake    chan struct{} // capacity 1: a batch waits
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (a *acker) start(e *Engine) {
	a.e, a.wake, a.stop = e, make(chan struct{}, 1), make(chan struct{})
	a.wg.Go(a.loop)
}

// record queues one acknowledgement and waits for the commit that records it. It reports
// whether anything changed (false: the acknowledgement was recorded before).
func (a *acker) record(r *ackRequest) (bool, error) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		r.b = &ackBatch{}
		a.commit([]*ackRequest{r})
		return r.changed, r.b.err
	}
	if a.next == nil {
		a.next = &ackBatch{done: make(chan struct{})}
	}
	b := a.next
	r.b = b
	b.reqs = append(b.reqs, r)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	<-b.done
	return r.changed, b.err
}

func (a *acker) loop() {
	for {
		select {
		case <-a.wake:
		case <-a.stop:
			a.drain()
			return
		}
		a.drain()
	}
}

// drain commits the gathering batches until none is left.
func (a *acker) drain() {
	for {
		a.mu.Lock()
		b := a.next
		a.next = nil
		a.mu.Unlock()
		if b == nil {
			return
		}
		for len(b.reqs) > 0 {
			n := min(len(b.reqs), maxAckBatch)
			a.commit(b.reqs[:n])
			b.reqs = b.reqs[n:]
		}
		close(b.done)
	}
}

// close commits what is gathered and stops the loop; later records commit on their own.
func (a *acker) close() {
	a.mu.Lock()
	already := a.stopped
	a.stopped = true
	a.mu.Unlock()
	if !already {
		close(a.stop)
	}
	a.wg.Wait()
}

// commit records reqs in one transaction: holdings acknowledged and messages removed from
// the outbox, then the same in memory. A second reply for an agreement already in the group
// is planned after the first is committed (planReply reads the committed holdings).
func (a *acker) commit(reqs []*ackRequest) {
	e := a.e
	var later []*ackRequest
	e.hold.mu.Lock()
	defer func() {
		e.hold.mu.Unlock()
		if len(later) > 0 {
			a.commit(later)
		}
	}()
	now := time.Now()
	seen := make(map[string]bool, len(reqs))
	group := make([]*ackRequest, 0, len(reqs))
	changes := make([]*rolloutChange, 0, len(reqs))
	for _, r := range reqs {
		if seen[r.ag] {
			later = append(later, r)
			continue
		}
		seen[r.ag] = true
		group = append(group, r)
		changes = append(changes, e.planReply(r.org, r.ag, r.seq, "", now))
	}
	err := e.st.Update(func(tx store.Tx) error {
		for i, r := range group {
			if r.mid != 0 {
				if _, err := e.st.RemoveTx(tx, r.org, r.node, r.mid); err != nil {
					return err
				}
			}
			if err := changes[i].apply(tx, e.holdTable); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, r := range group {
			r.b.err = err
		}
		return
	}
	for i, r := range group {
		changes[i].commit(&e.hold)
		e.observeAcks(changes[i])
		r.changed = len(changes[i].put) > 0
		if r.mid != 0 && e.q.remove(NodeID(r.org, r.node), r.mid) {
			r.changed = true
		}
	}
}
