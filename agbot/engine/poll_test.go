package engine

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// pollEngine is the part of an Engine a poll uses: its queues and "seen" marks.
func pollEngine(retry time.Duration) *Engine {
	e := &Engine{cfg: Config{MaxWait: time.Minute}, log: slog.New(slog.DiscardHandler)}
	e.seen.m, e.seen.dirty = map[string]*seenRec{}, map[string]bool{}
	e.q.init(retry, time.Minute)
	return e
}

func update(id uint64) store.Message {
	return store.Message{ID: id, Agreement: "ag", Type: string(protocol.TypeUpdate), Seq: id, Queued: time.Now()}
}

type pollResult struct {
	msgs []store.Message
	err  error
}

// PollFunc answers at once when something is there, else exactly once later, from another
// goroutine: on a message, a resend falling due, the end of the wait or of the context. A
// finished poll leaves nothing behind in the node's queue, and nothing wakes it again.
func TestPollFunc(t *testing.T) {
	cases := []struct {
		name    string
		before  func(e *Engine)                            // before the poll
		after   uint64                                     // the client's cursor
		wait    time.Duration                              // the poll's wait
		trigger func(e *Engine, cancel context.CancelFunc) // after the poll waits
		now     bool                                       // answered at once
		want    []uint64                                   // message ids answered
		wantErr error
	}{
		{name: "a message queued is answered at once", before: func(e *Engine) { e.q.push("o/n", update(1)) },
			wait: time.Minute, now: true, want: []uint64{1}},
		{name: "a message arriving wakes the poll", wait: time.Minute,
			trigger: func(e *Engine, _ context.CancelFunc) { e.q.push("o/n", update(7)) }, want: []uint64{7}},
		{name: "the wait passes", wait: 10 * time.Millisecond, want: nil},
		{name: "a zero wait answers empty", wait: 0, want: nil},
		{name: "the context ends", wait: time.Minute,
			trigger: func(_ *Engine, cancel context.CancelFunc) { cancel() }, wantErr: context.Canceled},
		{name: "an unacknowledged message falls due again", after: 3, wait: time.Minute,
			before: func(e *Engine) {
				e.q.push("o/n", update(3))
				e.q.take("o/n", 0, time.Now(), nil) // offered once; the client saw it (after=3)
			}, want: []uint64{3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := pollEngine(20 * time.Millisecond)
			if tc.before != nil {
				tc.before(e)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int32
			res := make(chan pollResult, 4)
			msgs, waiting := e.PollFunc(ctx, "o", "n", tc.after, tc.wait, func(m []store.Message, err error) {
				calls.Add(1)
				res <- pollResult{m, err}
			})
			var got pollResult
			if waiting == tc.now {
				t.Fatalf("waiting = %v, want %v", waiting, !tc.now)
			}
			if tc.now {
				got.msgs = msgs
			} else {
				if tc.trigger != nil {
					tc.trigger(e, cancel)
				}
				select {
				case got = <-res:
				case <-time.After(10 * time.Second):
					t.Fatal("the poll was never answered")
				}
			}
			if !errors.Is(got.err, tc.wantErr) {
				t.Errorf("err = %v, want %v", got.err, tc.wantErr)
			}
			var ids []uint64
			for _, m := range got.msgs {
				ids = append(ids, m.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("answered %v, want %v", ids, tc.want)
			}
			// Nothing may wake a finished poll: not a message, not the context.
			e.q.push("o/n", update(99))
			cancel()
			time.Sleep(50 * time.Millisecond)
			if n := calls.Load(); n > 1 || tc.now && n > 0 {
				t.Errorf("done called %d times", n)
			}
			e.q.mu.Lock()
			left := len(e.q.m["o/n"].waiters)
			e.q.mu.Unlock()
			if left != 0 {
				t.Errorf("%d polls left waiting in the node's queue", left)
			}
			if off, _ := e.seen.offline("o/n", time.Now(), time.Hour); off {
				t.Error("the node is offline after a poll")
			}
			e.seen.mu.Lock()
			polling := e.seen.m["o/n"].polling
			e.seen.mu.Unlock()
			if polling != 0 {
				t.Errorf("polling mark %d after the poll ended", polling)
			}
		})
	}
}
