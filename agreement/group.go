package agreement

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs the writes of concurrent callers in one bbolt transaction, so they share
// one fsync, without making a lone writer wait: the first caller commits at once; callers
// that arrive meanwhile queue, and the next of them commits the whole queue together. An
// org secret bound by every service on the node brings one update per agreement at the same
// time; each used to pay a commit of its own.
//
// Each write is applied in the shared transaction; if the shared commit fails, every write
// of the group is run again in a transaction of its own, so one caller's error never becomes
// another's (bbolt's Batch does the same, but waits up to MaxBatchDelay for company).
type groupCommit struct {
	bolt *bolt.DB

	mu      sync.Mutex
	queue   []*groupWrite
	leading bool
}

type groupWrite struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
}

// do runs fn in a committed read-write transaction, maybe shared with other callers' writes.
// fn may run more than once (it must be idempotent, as a Put is).
func (g *groupCommit) do(fn func(*bolt.Tx) error) error {
	w := &groupWrite{fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	if g.leading {
		g.mu.Unlock()
		<-w.done
		return w.err
	}
	g.leading = true
	g.mu.Unlock()
	g.lead()
	<-w.done
	return w.err
}

// lead commits the queue, group by group, until it is empty.
func (g *groupCommit) lead() {
	for {
		g.mu.Lock()
		batch := g.queue
		g.queue = nil
		if len(batch) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		g.commit(batch)
	}
}

func (g *groupCommit) commit(batch []*groupWrite) {
	err := g.bolt.Update(func(tx *bolt.Tx) error {
		for _, w := range batch {
			if err := w.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	for _, w := range batch {
		if err != nil && len(batch) > 1 {
			w.err = g.bolt.Update(w.fn)
		} else {
			w.err = err
		}
		close(w.done)
	}
}
