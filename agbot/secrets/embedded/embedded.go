package embedded

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/internal/feed"
)

// File names inside the data dir.
const (
	DBFile  = "secrets.db"
	KeyFile = "secrets.key"
)

// Buckets: secrets/<org>/<name> -> sealed record; versions/<org>/<name> -> last version
// (kept after a delete so versions never repeat); meta/check -> a sealed known text that tells a
// wrong key file from a damaged record.
var (
	bucketSecrets  = []byte("secrets")
	bucketVersions = []byte("versions")
	bucketMeta     = []byte("meta")
	keyCheck       = []byte("check")
)

const checkOrg, checkName = "-", "key-check"

// Manager is the embedded secrets manager. It implements secrets.Manager.
type Manager struct {
	db      kv
	backend string
	seal    *sealer
	feed    *feed.Feed
	mu      sync.RWMutex // held for reading by every operation, for writing by Close
	closed  bool
}

var _ secrets.Manager = (*Manager)(nil)

// Open opens (creating if needed) DIR/secrets.db sealed under DIR/secrets.key. The key file is
// created with mode 0600 when missing and refused (ErrKeyFile) when group or others could read
// it, when another user owns it, or when it is not the key the store was sealed with.
func Open(dir string) (*Manager, error) {
	return OpenFiles(filepath.Join(dir, DBFile), filepath.Join(dir, KeyFile))
}

// OpenFiles is Open with explicit paths: the key file may live apart from the data dir, so a
// copy of the data dir alone exposes no value.
func OpenFiles(dbPath, keyPath string) (*Manager, error) {
	key, err := loadKey(keyPath)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	return OpenKey(dbPath, key, keyPath)
}

// OpenKey opens dbPath sealed under key (KeySize bytes), given by the caller (e.g. from the
// environment); from names where it came from in errors. The caller clears key afterwards.
func OpenKey(dbPath string, key []byte, from string) (*Manager, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrKeyFile, from, len(key), KeySize)
	}
	keyPath := from
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	// The timeout turns a second agbot on the same data dir into an error instead of a hang.
	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening secrets store %s: %w", dbPath, err)
	}
	be, err := newBoltKV(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return newManager(be, s, keyPath, dbPath, "embedded")
}

// newManager checks key against the store's check record (writing it into a new store).
func newManager(be kv, s *sealer, keyPath, where, backend string) (*Manager, error) {
	err := be.update(func(tx kvTx) error {
		check, err := tx.check()
		if err != nil {
			return err
		}
		if check != nil {
			if _, _, err := s.open(checkOrg, checkName, check); err != nil {
				return fmt.Errorf("%w: %s is not the key %s was sealed with", ErrKeyFile, keyPath, where)
			}
			return nil
		}
		check, err = s.seal(checkOrg, checkName, record{version: 1, updated: time.Now()}, secrets.Secret{Key: "check"})
		if err != nil {
			return err
		}
		return tx.setCheck(check)
	})
	if err != nil {
		be.close()
		return nil, err
	}
	return &Manager{db: be, seal: s, feed: feed.New(), backend: backend}, nil
}

// Backend names the store for the check that the agbots of one fleet share one manager.
func (m *Manager) Backend() string { return m.backend }

// begin checks what every operation checks first, and holds the manager open until done is called.
func (m *Manager) begin(ctx context.Context) (done func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return nil, secrets.ErrClosed
	}
	return m.mu.RUnlock, nil
}

// Put creates or overwrites a secret.
func (m *Manager) Put(ctx context.Context, org, name string, s secrets.Secret) (int64, error) {
	return m.write(ctx, org, name, s, false)
}

// Create stores a secret only if none exists under that name.
func (m *Manager) Create(ctx context.Context, org, name string, s secrets.Secret) (int64, error) {
	return m.write(ctx, org, name, s, true)
}

func (m *Manager) write(ctx context.Context, org, name string, s secrets.Secret, onlyNew bool) (int64, error) {
	if err := secrets.CheckWrite(org, name, s); err != nil {
		return 0, err
	}
	done, err := m.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var version uint64
	err = m.db.update(func(tx kvTx) error {
		if onlyNew {
			if cur, err := tx.get(org, name); err != nil {
				return err
			} else if cur != nil {
				return secrets.ErrExists
			}
		}
		last, err := tx.version(org, name)
		if err != nil {
			return err
		}
		version = last + 1
		sealed, err := m.seal.seal(org, name, record{version: version, updated: time.Now()}, s)
		if err != nil {
			return err
		}
		return tx.put(org, name, sealed, version)
	})
	if err != nil {
		return 0, fmt.Errorf("storing secret %q in org %q: %w", name, org, err)
	}
	m.feed.Publish(secrets.Change{Org: org, Name: name, Kind: secrets.Updated, Version: int64(version)})
	return int64(version), nil
}

// Get returns the current secret and its version.
func (m *Manager) Get(ctx context.Context, org, name string) (secrets.Secret, int64, error) {
	if _, err := secrets.Check(org, name); err != nil {
		return secrets.Secret{}, 0, err
	}
	done, err := m.begin(ctx)
	if err != nil {
		return secrets.Secret{}, 0, err
	}
	defer done()
	var (
		sec secrets.Secret
		rec record
	)
	err = m.db.view(func(tx kvTx) error {
		sealed, err := tx.get(org, name)
		if err != nil {
			return err
		}
		if sealed == nil {
			return secrets.ErrNotFound
		}
		rec, sec, err = m.seal.open(org, name, sealed)
		return err
	})
	if err != nil {
		return secrets.Secret{}, 0, fmt.Errorf("reading secret %q in org %q: %w", name, org, err)
	}
	return sec, int64(rec.version), nil
}

// Delete removes a secret. Its version counter stays, so a new secret by that name continues
// the count and a watcher never sees a version twice.
func (m *Manager) Delete(ctx context.Context, org, name string) error {
	if _, err := secrets.Check(org, name); err != nil {
		return err
	}
	done, err := m.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = m.db.update(func(tx kvTx) error {
		ok, err := tx.del(org, name)
		if err == nil && !ok {
			err = secrets.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting secret %q in org %q: %w", name, org, err)
	}
	m.feed.Publish(secrets.Change{Org: org, Name: name, Kind: secrets.Deleted})
	return nil
}

// List returns the full names of the secrets directly in scope, sorted.
func (m *Manager) List(ctx context.Context, org, scope string) ([]string, error) {
	if err := secrets.ValidateOrg(org); err != nil {
		return nil, err
	}
	if _, err := secrets.ParseScope(scope); err != nil {
		return nil, err
	}
	done, err := m.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	prefix := ""
	if scope != "" {
		prefix = scope + "/"
	}
	names := []string{}
	err = m.db.view(func(tx kvTx) error {
		all, err := tx.names(org, prefix)
		for _, k := range all {
			// Nested names ("test/password1") belong to the scope; other scopes do not.
			if n, err := secrets.ParseName(k); err == nil && n.Scope() == scope {
				names = append(names, k)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing secrets in org %q scope %q: %w", org, scope, err)
	}
	sort.Strings(names)
	return names, nil
}

// Watch returns the changes made from now on; each arrives as soon as its write commits.
func (m *Manager) Watch(ctx context.Context) <-chan secrets.Change { return m.feed.Watch(ctx) }

// Close closes the store and every watch channel. It waits for running operations.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.feed.Close()
	if err := m.db.close(); err != nil {
		return fmt.Errorf("closing secrets store: %w", err)
	}
	return nil
}
