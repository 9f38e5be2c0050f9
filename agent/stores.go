package agent

import (
	"sync"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// secretStores is what the agent uses of *secretfs.FS.
type secretStores interface {
	Create(secretfs.Spec) (*secretfs.Store, error)
	Update(id string, secrets []secretfs.Secret) error
	Wipe(id string) error
	Stores() ([]*secretfs.Store, error)
	Mode() secretfs.Mode
	Features() secretfs.Features
	Depth(id, name string) (int, error)
	Close() error
}

// storeAdapter gives the agreement manager the node's secret stores (agreement.SecretStore)
// and tells the store watcher which changes are the agent's own: a store is busy while the
// agent changes it, and its baseline is taken again once the change is done.
type storeAdapter struct {
	fs secretStores

	mu   sync.Mutex
	busy map[string]int
	gen  map[string]uint64 // counts the agent's changes to each store, begun and done
	// changed is called after the agent created, updated or wiped store id (ok reports
	// success). It runs before the store stops being busy.
	changed func(id string, ok bool)
}

var _ agreement.SecretStore = (*storeAdapter)(nil)

func newStoreAdapter(fs secretStores) *storeAdapter {
	return &storeAdapter{fs: fs, busy: map[string]int{}, gen: map[string]uint64{}}
}

// begin marks store id busy until the returned function runs.
func (s *storeAdapter) begin(id string) func(ok bool) {
	s.mu.Lock()
	s.busy[id]++
	s.gen[id]++
	s.mu.Unlock()
	return func(ok bool) {
		if s.changed != nil {
			s.changed(id, ok)
		}
		s.mu.Lock()
		s.gen[id]++
		if s.busy[id]--; s.busy[id] <= 0 {
			delete(s.busy, id)
		}
		s.mu.Unlock()
	}
}

// state reports how many changes the agent began or finished on store id, and whether one is
// running now. A reader that sees the same count before and after looking at the store, with
// none running, saw no change of the agent's.
func (s *storeAdapter) state(id string) (gen uint64, busy bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen[id], s.busy[id] > 0
}

func (s *storeAdapter) Create(spec agreement.StoreSpec) (*agreement.Store, error) {
	done := s.begin(spec.ID)
	st, err := s.fs.Create(spec)
	done(err == nil)
	return st, err
}

func (s *storeAdapter) Update(id string, secrets []agreement.StoreSecret) error {
	done := s.begin(id)
	err := s.fs.Update(id, secrets)
	done(err == nil)
	return err
}

func (s *storeAdapter) Wipe(id string) error {
	done := s.begin(id)
	err := s.fs.Wipe(id)
	done(err == nil)
	return err
}

func (s *storeAdapter) Stores() ([]*agreement.Store, error) { return s.fs.Stores() }

func (s *storeAdapter) Mode() agreement.StoreMode { return s.fs.Mode() }
