package agreement

import "github.com/edge-secrets/anax-agent/secretfs"

// The secretfs types the SecretStore interface speaks, so that *secretfs.FS satisfies it as it
// is and tests can fake it.
type (
	// StoreSpec describes a store to create.
	StoreSpec = secretfs.Spec
	// StoreSecret is one secret file: name, key, value and format.
	StoreSecret = secretfs.Secret
	// StoreFormat is the file format of a secret.
	StoreFormat = secretfs.Format
	// Store is a store's paths, as the container worker mounts them.
	Store = secretfs.Store
	// StoreMode is how updates reach running containers.
	StoreMode = secretfs.Mode
)

const (
	formatJSON      = secretfs.FormatJSON
	formatValueOnly = secretfs.FormatValueOnly
	modeRestart     = secretfs.ModeRestart
)

var _ SecretStore = (*secretfs.FS)(nil)
