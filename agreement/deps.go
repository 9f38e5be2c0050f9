package agreement

import (
	"context"

	"github.com/edge-secrets/anax-agent/container"
)

// SecretStore is what the manager needs from the node's secret stores (*secretfs.FS): one
// store per container, created with every secret, updated all-or-nothing, wiped at the end,
// and listed after a restart.
type SecretStore interface {
	// Create makes a store holding every secret of spec, owned by spec.UID:GID, and returns
	// the paths to mount. On error nothing is left behind.
	Create(spec StoreSpec) (*Store, error)
	// Update swaps the given secrets of store id to their new values, all or none.
	Update(id string, secrets []StoreSecret) error
	// Wipe removes store id and every trace of its values; idempotent.
	Wipe(id string) error
	// Stores lists the stores that exist now (after a restart: what survived).
	Stores() ([]*Store, error)
	// Mode is how updates reach containers (mount-swap, mount-stack, restart).
	Mode() StoreMode
}

// Runner is what the manager needs from the container worker (*container.Worker).
type Runner interface {
	// ResolveUser returns the host uid:gid that must own a container's secret files.
	ResolveUser(ctx context.Context, image, user string) (uid, gid int, err error)
	// Start starts every container of an instance, or none.
	Start(ctx context.Context, inst container.Instance) ([]container.Container, error)
	// AfterUpdate runs the onUpdate actions (restart in restart mode) for changed secrets.
	AfterUpdate(ctx context.Context, agreementID string, changed []string) error
	// Restart restarts every container of an agreement, starting those that are not running.
	Restart(ctx context.Context, agreementID string) error
	// Stop stops and removes every container of an agreement; none is not an error.
	Stop(ctx context.Context, agreementID string) error
	// List returns every container the agent owns, from their labels.
	List(ctx context.Context) ([]container.Container, error)
}

var _ Runner = (*container.Worker)(nil)
