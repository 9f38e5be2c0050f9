package agent

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/ess"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// secretStores is what the agent uses of *secretfs.FS.
type secretStores interface {
	Create(secretfs.Spec) (*secretfs.Store, error)
	Update(id string, secrets []secretfs.Secret) error
	Wipe(id string) error
	Stores() ([]*secretfs.Store, error)
	Store(id string) (*secretfs.Store, error)
	Mode() secretfs.Mode
	Features() secretfs.Features
	Depth(id, name string) (int, error)
	Depths() (map[string]int, error)
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
	// swapped, when set, is told how long each successful Update of a store took in secretfs.
	swapped func(time.Duration)
	// ess is the ESS secrets API (nil: none); formats the file format of each secret.
	ess     essAPI
	formats map[string]map[string]secretfs.Format
}

// essAPI is what the store adapter needs of the ESS secrets API (*ess.Server).
type essAPI interface {
	Attach(id string, uid, gid int) (ess.Mounts, error)
	Changed(id string, names []string)
	Detach(id string) error
}

var _ agreement.SecretStore = (*storeAdapter)(nil)

func newStoreAdapter(fs secretStores) *storeAdapter {
	return &storeAdapter{fs: fs, busy: map[string]int{}, gen: map[string]uint64{}, formats: map[string]map[string]secretfs.Format{}}
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

// Create makes the store and, with it, the store's ESS secrets API (credentials, socket), so
// the container that mounts the store finds both.
func (s *storeAdapter) Create(spec agreement.StoreSpec) (*agreement.Store, error) {
	done := s.begin(spec.ID)
	st, err := s.fs.Create(spec)
	if err == nil && s.ess != nil {
		if _, aerr := s.ess.Attach(spec.ID, spec.UID, spec.GID); aerr != nil {
			err = fmt.Errorf("ESS secrets API for store %q: %w", spec.ID, aerr)
			if werr := s.fs.Wipe(spec.ID); werr != nil {
				err = errors.Join(err, fmt.Errorf("undo: wipe store %q: %w", spec.ID, werr))
			}
			st = nil
		}
	}
	if err == nil {
		s.remember(spec.ID, spec.Secrets)
	}
	done(err == nil)
	return st, err
}

func (s *storeAdapter) Update(id string, secrets []agreement.StoreSecret) error {
	done := s.begin(id)
	start := time.Now()
	err := s.fs.Update(id, secrets)
	if err == nil {
		if s.swapped != nil {
			s.swapped(time.Since(start))
		}
		s.remember(id, secrets)
		if s.ess != nil {
			// After the swap: a service that sees a name listed reads the new value.
			names := make([]string, len(secrets))
			for i, sec := range secrets {
				names[i] = sec.Name
			}
			s.ess.Changed(id, names)
		}
	}
	done(err == nil)
	return err
}

func (s *storeAdapter) Wipe(id string) error {
	done := s.begin(id)
	var err error
	if s.ess != nil {
		err = s.ess.Detach(id)
	}
	err = errors.Join(err, s.fs.Wipe(id))
	s.mu.Lock()
	delete(s.formats, id)
	s.mu.Unlock()
	done(err == nil)
	return err
}

// remember keeps the file format of each secret, so ReadSecret parses the file as written.
func (s *storeAdapter) remember(id string, secrets []secretfs.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.formats[id] == nil {
		s.formats[id] = map[string]secretfs.Format{}
	}
	for _, sec := range secrets {
		s.formats[id][sec.Name] = sec.Format
	}
}

// ReadSecret returns the current key and value of a store's secret for the ESS API, from the
// file a container reads. A store recovered from an earlier run has no recorded format: its
// file is read as anax's JSON, and as the raw value when it is not that.
func (s *storeAdapter) ReadSecret(id, name string) (protocol.SecretValue, error) {
	st, err := s.fs.Store(id)
	if errors.Is(err, secretfs.ErrNotFound) {
		return protocol.SecretValue{}, ess.ErrNotFound
	} else if err != nil {
		return protocol.SecretValue{}, err
	}
	path, ok := st.Files[name]
	if !ok {
		return protocol.SecretValue{}, ess.ErrNotFound
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return protocol.SecretValue{}, err
	}
	s.mu.Lock()
	format, known := s.formats[id][name]
	s.mu.Unlock()
	v, err := protocol.ParseFileContent(content, protocol.SecretDecl{Format: string(format)})
	if err != nil && !known {
		return protocol.ParseFileContent(content, protocol.SecretDecl{Format: protocol.FormatValueOnly})
	}
	return v, err
}

func (s *storeAdapter) Stores() ([]*agreement.Store, error) { return s.fs.Stores() }

func (s *storeAdapter) Mode() agreement.StoreMode { return s.fs.Mode() }
