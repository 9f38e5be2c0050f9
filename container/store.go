package container

import "github.com/edge-secrets/anax-agent/secretfs"

// Store is the secretfs store a container mounts: Files[name] at /<name>, DirView at
// /open-horizon-secrets.
type Store = secretfs.Store

// StoreMode is how secretfs delivers a new value (secretfs.Mode).
type StoreMode = secretfs.Mode

const modeRestart = secretfs.ModeRestart
