package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// Sentinels, checked with errors.Is. The secure API maps ErrNotFound to 404, ErrExists to 409,
// ErrInvalidName and ErrInvalidSecret to 400 and ErrUnavailable to 503.
var (
	// ErrNotFound: no secret by that name in that org.
	ErrNotFound = errors.New("secret not found")
	// ErrExists: Create found a secret by that name already.
	ErrExists = errors.New("secret already exists")
	// ErrUnavailable: the backend can not be reached or refused the agbot (Vault down, sealed,
	// token expired). Nothing was changed; the caller may retry later.
	ErrUnavailable = errors.New("secrets manager unavailable")
	// ErrInvalidName: an org, a name or a scope broke a rule; the error text names the rule.
	ErrInvalidName = errors.New("invalid secret manager name")
	// ErrInvalidSecret: a key or value the manager can not store faithfully (not UTF-8).
	ErrInvalidSecret = errors.New("invalid secret")
	// ErrClosed: the manager was closed.
	ErrClosed = errors.New("secrets manager closed")
)

// Secret is what a manager stores under a name, anax compatible: {"key": K, "value": V}.
//
// Its String, GoString and LogValue methods redact the value, so a Secret that slips into a log
// or an error message shows only the key and the value's length.
type Secret struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (s Secret) String() string {
	return fmt.Sprintf("{key %q, value redacted (%d bytes)}", s.Key, len(s.Value))
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return "secrets.Secret" + s.String() }

// LogValue keeps slog from printing the value.
func (s Secret) LogValue() slog.Value {
	size := len(s.Value)
	attrs := []slog.Attr{slog.String("key", s.Key), slog.Int("bytes", size)}
	return slog.GroupValue(attrs...)
}

// ChangeKind says what happened to a secret.
type ChangeKind int

const (
	// Updated: created or overwritten; read it again to get the new value.
	Updated ChangeKind = iota + 1
	// Deleted: gone; fall back (node-specific to user/org) or stop using it.
	Deleted
)

func (k ChangeKind) String() string {
	switch k {
	case Updated:
		return "updated"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("ChangeKind(%d)", int(k))
}

// Change tells a watcher that a secret changed. It carries no value: the watcher reads the
// secret again. Changes to one secret that the watcher has not received yet are coalesced into
// the latest one, so a slow watcher never blocks writers and never sees a stale kind.
type Change struct {
	Org  string
	Name string // full manager name, e.g. "user/bob/node/n1/db"
	Kind ChangeKind
	// Version is the version written (Updated), or 0 when unknown or Deleted.
	Version int64
}

// Manager is the agbot's view of a secrets manager. Names are full manager names within an
// org (see ParseName); the org is passed separately and never comes from the name. Every method
// validates org and name first and fails with ErrInvalidName before touching the backend.
// Implementations are safe for concurrent use.
type Manager interface {
	// Put creates or overwrites a secret and returns the version written.
	Put(ctx context.Context, org, name string, s Secret) (version int64, err error)
	// Create stores a secret only if none exists under that name; otherwise ErrExists.
	Create(ctx context.Context, org, name string, s Secret) (version int64, err error)
	// Get returns the current secret and its version, or ErrNotFound.
	Get(ctx context.Context, org, name string) (s Secret, version int64, err error)
	// Delete removes a secret (all its versions), or returns ErrNotFound.
	Delete(ctx context.Context, org, name string) error
	// List returns, sorted, the full names of the secrets directly in a scope: "" for org-level
	// names, "user/<u>", "node/<n>" or "user/<u>/node/<n>" (see ParseScope). An empty scope
	// gives an empty list, not an error.
	List(ctx context.Context, org, scope string) ([]string, error)
	// Watch returns a channel of changes made from now on, through this manager or (where the
	// backend allows it) directly in the backend. The channel is closed when ctx is done or the
	// manager is closed.
	Watch(ctx context.Context) <-chan Change
	// Close stops background work and closes every watch channel.
	Close() error
}
