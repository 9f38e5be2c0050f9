package agreement

import "github.com/edge-secrets/anax-agent/container"

// TODO(issue 5): these become aliases of the secretfs types once secretfs lands, so that
// *secretfs.FS satisfies SecretStore as it is.

// StoreSpec describes a store to create.
type StoreSpec struct {
	ID       string
	UID, GID int
	Secrets  []StoreSecret
}

// StoreSecret is one secret file: its name, key and content format.
type StoreSecret struct {
	Name   string
	Key    string
	Value  []byte
	Format StoreFormat
}

// StoreFormat is the file format of a secret.
type StoreFormat string

const (
	formatJSON      StoreFormat = "json"
	formatValueOnly StoreFormat = "value_only"
)

// Store is a store as the container worker mounts it.
type Store = container.Store

// StoreMode is how updates reach running containers.
type StoreMode = container.StoreMode

// containerStore turns a store into what the worker takes (the same type once secretfs lands).
func containerStore(s *Store) *container.Store { return s }
