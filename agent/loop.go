package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// connection is the node's link to its agbot while it is registered: the client, the pinned
// keys (an Endpoint), the long-poll loop and the dispatcher of the messages it receives.
type connection struct {
	a      *Agent
	reg    *Registration
	client *agbotClient
	ep     *protocol.Endpoint
	cancel context.CancelFunc
	done   chan struct{}
	disp   *dispatcher
	carry  *carry // a reply that travels as the next long-poll

	refusedMu sync.Mutex
	refused   map[uint64]bool
}

// firstRefusal reports whether message id is refused for the first time.
func (c *connection) firstRefusal(id uint64) bool {
	c.refusedMu.Lock()
	defer c.refusedMu.Unlock()
	if c.refused == nil || len(c.refused) > 1024 {
		c.refused = map[uint64]bool{}
	}
	if c.refused[id] {
		return false
	}
	c.refused[id] = true
	return true
}

// resyncEvery is how often pending resync requests are sent again until the agbot answers.
const resyncEvery = 15 * time.Second

// maxParallel bounds how many agreements are handled at once (container starts are slow).
const maxParallel = 8

func (a *Agent) newConnection(reg *Registration) (*connection, error) {
	client, err := newAgbotClient(reg.AgbotURL, a.cfg.AgbotCA)
	if err != nil {
		return nil, err
	}
	keys, err := protocol.LoadKeys(a.stateFile(nodeKeysFile))
	if err != nil {
		return nil, fmt.Errorf("node keys: %w", err)
	}
	ep := &protocol.Endpoint{ID: reg.ID(), Keys: keys, Peers: protocol.StaticKeyRing{reg.AgbotID: reg.AgbotKeys}, Agreements: a.mgr}
	c := &connection{a: a, reg: reg, client: client, ep: ep, done: make(chan struct{}), carry: newCarry()}
	c.disp = newDispatcher(maxParallel, c.handle)
	c.disp.ctx = a.work
	c.disp.handled = c.carry.done
	return c, nil
}

// startConnection starts the message loop for reg. An error (keys unreadable) is logged: the
// node keeps serving its local API and its running containers.
func (a *Agent) startConnection(reg *Registration) {
	c, err := a.newConnection(reg)
	if err != nil {
		a.log.Error("cannot talk to the agbot; the running services keep their secrets", "err", err)
		a.setLink(func(l *linkStatus) { l.Connected, l.LastError = false, err.Error() })
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	c.cancel = cancel
	a.mu.Lock()
	a.conn = c
	a.mu.Unlock()
	go func() {
		defer close(c.done)
		c.loop(ctx)
	}()
}

func (a *Agent) takeConnection() *connection {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.conn
	a.conn = nil
	return c
}

func (a *Agent) connection() *connection {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

// stop ends the long-poll and waits for the messages being handled (until ctx).
func (c *connection) stop(ctx context.Context) error {
	c.cancel()
	select {
	case <-c.done:
	case <-ctx.Done():
		return fmt.Errorf("message loop: %w", ctx.Err())
	}
	defer c.client.close()
	return c.disp.wait(ctx)
}

// loop long-polls the agbot and hands every message to the dispatcher. When the agbot can
// not be reached it tries again after a jittered, doubling backoff capped at backoff_max; the
// node keeps serving its containers meanwhile.
func (c *connection) loop(ctx context.Context) {
	a := c.a
	var after uint64
	failures := 0
	var nextResync time.Time
	fresh := false // the last poll brought messages: one of their replies may carry the next
	for ctx.Err() == nil {
		msgs, err := c.next(ctx, after, fresh)
		fresh = err == nil && len(msgs) > 0
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			a.metrics.Failures.WithLabelValues("poll").Inc()
			d := backoff(failures, time.Duration(a.backoffMax.Load()))
			a.linkDown(err, failures, d)
			sleep(ctx, d)
			continue
		}
		if failures > 0 || !a.linkState().Connected {
			a.log.Info("connected to the agbot", "agbot", c.reg.AgbotID, "url", c.reg.AgbotURL, "after_failures", failures)
		}
		failures = 0
		a.linkUp()
		for _, m := range msgs {
			after = max(after, m.ID)
			c.disp.submit(m)
		}
		if time.Now().After(nextResync) {
			c.sendResyncs(ctx)
			nextResync = time.Now().Add(resyncEvery)
		}
	}
}

// next is the next long-poll. After a poll that brought messages, the first of their replies
// ready within carryLinger travels as this poll (replyAndPoll); one refused is logged as a
// reply sent on its own is, and a plain poll follows (also when the connection was lost).
func (c *connection) next(ctx context.Context, after uint64, fresh bool) ([]polledMessage, error) {
	wait := time.Duration(c.a.pollWait.Load())
	if fresh {
		if r, ok := c.carry.take(ctx, carryLinger, c.disp.busy); ok {
			if ctx.Err() != nil { // the loop stops: the reply still goes, on its own
				c.replyOutcome(r.head, c.countReply(c.client.post(c.disp.context(), c.reg, r.env)))
				return nil, ctx.Err()
			}
			msgs, polled, err := c.client.replyAndPoll(ctx, c.reg, r.env, after, wait)
			switch {
			case err == nil && polled:
				return msgs, nil
			case err != nil && httpStatus(err) == 0:
				// Lost with its connection, most often while its poll waited, after the agbot
				// recorded the reply (an agbot restart): not a failed reply. One not recorded
				// brings its message again. The plain poll below tells whether the link is
				// down; net/http retries it on a stale keep-alive connection, not a POST.
				c.a.log.Debug("reply sent as a poll lost with its connection; polling", "agreement", r.head.Agreement,
					"type", r.head.Type, "seq", r.head.Seq, "err", err)
			default: // refused, or recorded by an agbot that does not poll on a reply (204)
				c.replyOutcome(r.head, c.countReply(err))
			}
		}
	}
	return c.client.poll(ctx, c.reg, after, wait)
}

// backoff is the wait before attempt n (1, 2, ...): 500 ms doubling up to limit, with full
// jitter over its upper half so that thousands of nodes do not come back in step.
func backoff(n int, limit time.Duration) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + rand.N(half+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sendResyncs asks the agbot for the current values of every agreement that waits for them
// (the node rebooted, or the agent stopped during an update, or its stores were tampered
// with). It returns how many it sent.
func (c *connection) sendResyncs(ctx context.Context) int {
	a := c.a
	rs, err := a.mgr.Resyncs()
	if err != nil {
		a.log.Error("list resyncs", "err", err)
		return 0
	}
	rs = append(rs, a.guard.resyncs(c.reg)...)
	sent := 0
	for _, r := range rs {
		if err := c.send(ctx, r); err != nil {
			a.log.Warn("resync not sent; trying again", "agreement", r.Agreement, "err", err)
			continue
		}
		a.log.Info("asked the agbot for current values (resync)", "agreement", r.Agreement, "seq", r.Seq, "reason", r.Reason)
		sent++
	}
	return sent
}

// send wraps m for the agbot and posts it.
func (c *connection) send(ctx context.Context, m protocol.Message) error {
	env, err := c.wrap(m)
	if err != nil {
		return err
	}
	return c.countReply(c.client.post(ctx, c.reg, env))
}

// wrap wraps m for the agbot (protocol.Endpoint.Wrap): with the agreement key when it has
// one; else replies signed only, the rest sealed.
func (c *connection) wrap(m protocol.Message) ([]byte, error) {
	env, err := c.ep.Wrap(m)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", m.Head().Type, err)
	}
	return env, nil
}

// countReply counts a reply the agbot did not take (409, recorded before, is not a failure)
// and returns err.
func (c *connection) countReply(err error) error {
	if err != nil && httpStatus(err) != http.StatusConflict {
		c.a.metrics.Failures.WithLabelValues("reply").Inc()
	}
	return err
}

// handle opens one message and gives it to the agreement manager; the reply goes back to the
// agbot. A message that does not open (bad signature, wrong recipient, malformed, too big)
// is refused with a log line and changes nothing; the agbot can not be told, since nothing
// proves the message is its own.
func (c *connection) handle(ctx context.Context, pm polledMessage) (reply func(last bool)) {
	a := c.a
	msg, err := c.ep.Open(pm.Envelope)
	if err != nil {
		c.refuse(pm, err)
		return nil
	}
	h := msg.Head()
	var out protocol.Message
	result := "ok"
	switch m := msg.(type) {
	case *protocol.Proposal:
		r := a.mgr.Propose(ctx, m)
		out, result = r, string(r.Status)
		if r.Status != protocol.StatusAccepted {
			a.metrics.Failures.WithLabelValues("proposal").Inc()
		} else {
			a.changed(h.Agreement)
		}
	case *protocol.Update:
		start := time.Now()
		r := a.mgr.Update(ctx, m)
		out, result = r, string(r.Status)
		switch r.Status {
		case protocol.StatusApplied:
			a.metrics.UpdateLatency.Observe(time.Since(start).Seconds())
			a.metrics.Swaps.Add(float64(len(m.Secrets)))
			a.updated(h.Agreement)
			a.guard.repaired(h.Agreement)
		case protocol.StatusFailed, protocol.StatusRefused:
			a.metrics.Failures.WithLabelValues("update").Inc()
		}
	case *protocol.Cancel:
		r, err := a.mgr.Cancel(ctx, m)
		if err != nil {
			// Not removed completely: no reply, so the agbot sends the cancel again.
			a.metrics.Failures.WithLabelValues("cancel").Inc()
			a.metrics.Messages.WithLabelValues(string(h.Type), "failed").Inc()
			a.log.Error("cancel not finished; the agbot will send it again", "agreement", h.Agreement, "err", err)
			return nil
		}
		out, result = r, string(r.Status)
		a.changed(h.Agreement)
		if strings.HasPrefix(m.Reason, protocol.CancelKeysReplaced) {
			a.keysReplaced(c.reg, m)
		}
	case *protocol.CancelReply:
		a.metrics.Messages.WithLabelValues(string(h.Type), "ok").Inc()
		a.log.Info("the agbot acknowledged the node's cancel", "agreement", h.Agreement)
		return nil
	default:
		a.metrics.Messages.WithLabelValues(string(h.Type), "refused").Inc()
		a.log.Warn("refused a message an agbot may not send", "type", h.Type, "agreement", h.Agreement)
		return nil
	}
	a.metrics.Messages.WithLabelValues(string(h.Type), result).Inc()
	// Sent after the message's slot is free (see dispatcher): the agbot's answer to a reply
	// takes a commit of its own, and an org secret's burst of updates must not wait for them.
	return func(last bool) { c.sendReply(ctx, out, last) }
}

// refuse logs and counts a message that does not open (once at warning level per message:
// the agbot offers an unacknowledged message again and again).
func (c *connection) refuse(pm polledMessage, err error) {
	a := c.a
	a.metrics.Messages.WithLabelValues(label(pm.Type), "refused").Inc()
	a.metrics.Failures.WithLabelValues("message").Inc()
	lvl := a.log.Debug
	if c.firstRefusal(pm.ID) {
		lvl = a.log.Warn
	}
	args := []any{"id", pm.ID, "type", label(pm.Type), "agreement", pm.Agreement, "seq", pm.Seq, "err", err}
	if errors.Is(err, protocol.ErrWrongRecipient) {
		if hdr, herr := protocol.PeekHeader(pm.Envelope); herr == nil && hdr.To == c.reg.ID() {
			// For this node id but other keys: e.g. a cancel the agbot sealed to keys this
			// node's owner replaced, meant for the machine that had them.
			args = append(args, "hint", "sealed to other keys of this node id: were the node's keys replaced at the agbot?")
		}
	}
	lvl("refused a message that does not open", args...)
}

// sendReply sends a reply to the agbot: as the loop's next long-poll when the loop waits for
// one and last says no later message of the agreement waits (its replies stay in order), else
// on its own. One not delivered is not retried here: the agbot offers the message again and
// gets the same answer (duplicates are acknowledged again).
func (c *connection) sendReply(ctx context.Context, out protocol.Message, last bool) {
	env, err := c.wrap(out)
	if err == nil {
		if last && c.carry.offer(outgoingReply{env: env, head: out.Head()}) {
			return
		}
		err = c.countReply(c.client.post(ctx, c.reg, env))
	}
	c.replyOutcome(out.Head(), err)
}

// replyOutcome logs what became of a reply.
func (c *connection) replyOutcome(h *protocol.Meta, err error) {
	switch {
	case err == nil:
	case httpStatus(err) == http.StatusConflict:
		// The agbot had recorded this answer already (the node answered a resend).
		c.a.log.Debug("reply already recorded by the agbot", "agreement", h.Agreement, "type", h.Type, "seq", h.Seq)
	default:
		c.a.log.Warn("reply not delivered; the agbot will offer the message again", "agreement", h.Agreement,
			"type", h.Type, "seq", h.Seq, "err", err)
	}
}

// keysReplaced says, loudly, that the agbot cancelled an agreement because the node's owner
// or an org admin registered other keys for this node: another machine is this node now.
func (a *Agent) keysReplaced(reg *Registration, m *protocol.Cancel) {
	a.log.Error("NODE KEYS REPLACED: the agbot now holds other keys for this node, registered by its owner or an org admin; "+
		"this agreement is ended here and its secrets wiped, and no new ones will come to these keys. "+
		"If that was not intended, change the owner's password and the node token; run hzn unregister on this machine",
		"node", reg.ID(), "node_fingerprint", reg.NodeFingerprint, "agreement", m.Agreement, "reason", m.Reason)
}

// label keeps metric label values to the known message types.
func label(t string) string {
	switch protocol.MessageType(t) {
	case protocol.TypeProposal, protocol.TypeUpdate, protocol.TypeCancel, protocol.TypeCancelReply:
		return t
	}
	return "other"
}

// changed records that an agreement's secrets or containers changed on the node.
func (a *Agent) changed(agreementID string) {
	a.mu.Lock()
	a.last = time.Now()
	a.mu.Unlock()
	a.refreshDepth(agreementID)
	a.refreshGauges()
}

// updated records an applied update. The agreement count did not change, and in mount-swap
// mode the mount stacks stay two deep by construction (the periodic tick measures them), so
// nothing here costs in proportion to the node's stores or mounts.
func (a *Agent) updated(agreementID string) {
	a.mu.Lock()
	a.last = time.Now()
	a.mu.Unlock()
	if a.fs.Mode() != secretfs.ModeMountSwap {
		a.refreshDepth(agreementID)
	}
}

func (a *Agent) linkState() linkStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.link
}

func (a *Agent) setLink(f func(*linkStatus)) {
	a.mu.Lock()
	before := a.link.Connected
	f(&a.link)
	after := a.link.Connected
	a.mu.Unlock()
	if before != after {
		_ = a.notify.Status(a.statusLine())
	}
}

func (a *Agent) linkUp() {
	a.setLink(func(l *linkStatus) { l.Connected, l.LastContact, l.LastError, l.Failures = true, time.Now(), "", 0 })
}

func (a *Agent) linkDown(err error, failures int, retry time.Duration) {
	a.setLink(func(l *linkStatus) { l.Connected, l.LastError, l.Failures = false, err.Error(), failures })
	lvl := a.log.Warn
	if failures > 1 {
		lvl = a.log.Debug
		if failures%10 == 0 {
			lvl = a.log.Warn
		}
	}
	if code := httpStatus(err); code == 401 || code == 403 {
		lvl = a.log.Error
	}
	lvl("agbot not reachable; the node keeps running its services", "agbot", a.cfg.AgbotURL,
		"failures", failures, "retry_in", retry.Round(time.Millisecond).String(), "err", err)
}

// refreshGauges sets the agreement gauge and the systemd status line.
func (a *Agent) refreshGauges() {
	list, err := a.mgr.Agreements()
	if err != nil {
		return
	}
	a.metrics.Agreements.Set(float64(len(list)))
	_ = a.notify.Status(a.statusLineN(len(list)))
}

// refreshDepth measures the mount stacks of one agreement's publish points.
func (a *Agent) refreshDepth(agreementID string) {
	in, err := a.mgr.Agreement(agreementID)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range agreementStores(in, err) {
		delete(a.depth, c)
	}
	if err == nil {
		for _, c := range in.Containers {
			if c.StoreID == "" {
				continue
			}
			deepest := 0
			for _, name := range c.Secrets {
				if d, err := a.fs.Depth(c.StoreID, name); err == nil {
					deepest = max(deepest, d)
				}
			}
			a.depth[c.StoreID] = deepest
		}
	}
	a.setDepthGauge()
}

// refreshDepths measures every store again (stores may have gone), in one read of the mount
// table.
func (a *Agent) refreshDepths() {
	depth, err := a.fs.Depths()
	if err != nil {
		return
	}
	a.mu.Lock()
	a.depth = depth
	a.setDepthGauge()
	a.mu.Unlock()
}

// setDepthGauge: caller holds a.mu.
func (a *Agent) setDepthGauge() {
	deepest := 0
	for _, d := range a.depth {
		deepest = max(deepest, d)
	}
	a.metrics.MountDepth.Set(float64(deepest))
}

func agreementStores(in agreement.Info, err error) []string {
	if err != nil {
		return nil
	}
	var out []string
	for _, c := range in.Containers {
		if c.StoreID != "" {
			out = append(out, c.StoreID)
		}
	}
	return out
}

// dispatcher runs messages one at a time per agreement, in arrival order, and different
// agreements in parallel (at most limit at once). A message already waiting or running (the
// agbot offers an unacknowledged message again) is not queued twice.
type dispatcher struct {
	// handle handles one message and returns what is left to do outside its slot (nil:
	// nothing): sending the reply, which waits on the agbot. last: no later message of the
	// agreement waits.
	handle  func(context.Context, polledMessage) func(last bool)
	handled func() // called after each message (may be nil)
	sem     chan struct{}
	sends   chan struct{} // bounds the replies being sent at once
	ctx     context.Context

	mu      sync.Mutex
	queues  map[string][]polledMessage
	pending map[string]bool // agreement/type/seq queued or running
	wg      sync.WaitGroup
}

func newDispatcher(limit int, handle func(context.Context, polledMessage) func(last bool)) *dispatcher {
	return &dispatcher{handle: handle, sem: make(chan struct{}, limit), sends: make(chan struct{}, limit),
		queues: map[string][]polledMessage{}, pending: map[string]bool{}}
}

func msgKey(m polledMessage) string { return fmt.Sprintf("%s\x00%s\x00%d", m.Agreement, m.Type, m.Seq) }

func (d *dispatcher) submit(m polledMessage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := msgKey(m)
	if d.pending[k] {
		return
	}
	d.pending[k] = true
	q, running := d.queues[m.Agreement]
	d.queues[m.Agreement] = append(q, m)
	if !running {
		d.wg.Add(1)
		go d.run(m.Agreement)
	}
}

func (d *dispatcher) run(agreementID string) {
	defer d.wg.Done()
	for {
		d.mu.Lock()
		q := d.queues[agreementID]
		if len(q) == 0 {
			delete(d.queues, agreementID)
			d.mu.Unlock()
			return
		}
		m := q[0]
		d.queues[agreementID] = q[1:]
		d.mu.Unlock()

		d.sem <- struct{}{}
		after := d.handle(d.context(), m)
		<-d.sem
		if after != nil {
			// Still in this agreement's goroutine: its replies go out in order.
			d.mu.Lock()
			last := len(d.queues[agreementID]) == 0
			d.mu.Unlock()
			d.sends <- struct{}{}
			after(last)
			<-d.sends
		}

		d.mu.Lock()
		delete(d.pending, msgKey(m))
		d.mu.Unlock()
		if d.handled != nil {
			d.handled()
		}
	}
}

// busy reports whether messages are queued or being handled.
func (d *dispatcher) busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending) > 0
}

func (d *dispatcher) context() context.Context {
	if d.ctx != nil {
		return d.ctx
	}
	return context.Background()
}

// wait waits for every queued message to be handled (until ctx).
func (d *dispatcher) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("messages still being handled at shutdown")
	}
}
