// Package feed fans secret changes out to watchers for the secrets managers. Each watcher has its
// own queue, coalesced per secret, so a publisher never blocks and memory stays bounded by the
// number of distinct secrets a slow watcher has not read yet.
package feed

import (
	"context"
	"sync"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// Feed is safe for concurrent use. The zero value is not usable; call New.
type Feed struct {
	mu     sync.Mutex
	subs   map[*sub]struct{}
	closed bool
}

type key struct{ org, name string }

type sub struct {
	out  chan secrets.Change
	wake chan struct{} // capacity 1: "the queue is not empty"
	stop chan struct{} // closed by Feed.Close

	mu     sync.Mutex
	queue  []key
	latest map[key]secrets.Change
}

// New returns an open feed.
func New() *Feed { return &Feed{subs: map[*sub]struct{}{}} }

// Watch returns a channel of changes published from now on; it is closed when ctx is done or
// the feed is closed.
func (f *Feed) Watch(ctx context.Context) <-chan secrets.Change {
	s := &sub{
		out:    make(chan secrets.Change),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		latest: map[key]secrets.Change{},
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(s.out)
		return s.out
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	go f.run(ctx, s)
	return s.out
}

// Publish queues a change for every watcher; it never blocks on a watcher.
func (f *Feed) Publish(c secrets.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.push(c)
	}
}

// Close closes every watch channel; later Watch calls get a closed channel.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for s := range f.subs {
		close(s.stop)
	}
}

func (s *sub) push(c secrets.Change) {
	k := key{c.Org, c.Name}
	s.mu.Lock()
	if _, queued := s.latest[k]; !queued {
		s.queue = append(s.queue, k)
	}
	s.latest[k] = c // coalesce: keep the place in the queue, take the newest kind and version
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sub) pop() (secrets.Change, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return secrets.Change{}, false
	}
	k := s.queue[0]
	s.queue[0] = key{}
	s.queue = s.queue[1:]
	c := s.latest[k]
	delete(s.latest, k)
	return c, true
}

func (f *Feed) run(ctx context.Context, s *sub) {
	defer func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
		close(s.out)
	}()
	for {
		c, ok := s.pop()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			case <-s.stop:
				return
			}
		}
		select {
		case s.out <- c:
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		}
	}
}
