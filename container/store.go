package container

// Store is the part of a secretfs store the worker mounts.
//
// TODO(issue 4): becomes `type Store = secretfs.Store` once secretfs compiles.
type Store struct {
	ID      string
	Mode    StoreMode
	Files   map[string]string
	DirView string
}

// StoreMode mirrors secretfs.Mode.
type StoreMode string

const modeRestart StoreMode = "restart"
