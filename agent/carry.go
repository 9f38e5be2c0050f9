package agent

import (
	"context"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// carryLinger bounds how long the long-poll loop waits, after a poll that brought messages,
// for one of their replies to carry its next poll. Updates are applied in about a
// millisecond; a proposal that starts containers takes longer and its reply goes on its own.
const carryLinger = 50 * time.Millisecond

// carry hands one reply from the dispatcher to the long-poll loop, which sends it as its
// next poll (agbotClient.replyAndPoll): a message and its reply then cost the agbot one
// request instead of two, which is what a fan-out to thousands of nodes spends its CPU on.
// The loop opens the carry after a poll brought messages and waits only while the dispatcher
// is busy with them, at most carryLinger; a reply that finds the carry closed or taken is
// posted on its own, as before.
type carry struct {
	mu      sync.Mutex
	open    bool               // the loop waits for a reply
	replies chan outgoingReply // holds at most the one reply taken while open
	handled chan struct{}      // a message was handled: the loop looks whether any is left
}

// outgoingReply is a reply wrapped for the agbot.
type outgoingReply struct {
	env  []byte
	head *protocol.Meta
}

func newCarry() *carry {
	return &carry{replies: make(chan outgoingReply, 1), handled: make(chan struct{}, 1)}
}

// offer gives r to the loop when it waits for a reply; false: post r on its own.
func (c *carry) offer(r outgoingReply) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return false
	}
	c.open = false
	c.replies <- r // empty while open: close drains it
	return true
}

// done tells a waiting take that a message was handled (with a reply or without).
func (c *carry) done() {
	select {
	case c.handled <- struct{}{}:
	default:
	}
}

// take waits for a reply while busy reports messages being handled, at most linger or
// until ctx ends.
func (c *carry) take(ctx context.Context, linger time.Duration, busy func() bool) (outgoingReply, bool) {
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
	t := time.NewTimer(linger)
	defer t.Stop()
	for busy() {
		select {
		case r := <-c.replies:
			return r, true
		case <-c.handled:
		case <-t.C:
			return c.close()
		case <-ctx.Done():
			return c.close()
		}
	}
	return c.close()
}

// close ends a wait; a reply offered meanwhile is still taken.
func (c *carry) close() (outgoingReply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = false
	select {
	case r := <-c.replies:
		return r, true
	default:
		return outgoingReply{}, false
	}
}
