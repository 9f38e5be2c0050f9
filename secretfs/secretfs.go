package secretfs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Mode is how a store delivers a new value to a running container.
type Mode string

const (
	// ModeMountSwap mounts the new version beneath the current one and unmounts the old one:
	// the container sees the change atomically and the mount stack stays two deep.
	ModeMountSwap Mode = "mount-swap"
	// ModeMountStack mounts each new version on top (kernels without MOVE_MOUNT_BENEATH): still
	// atomic, but the stack grows by one per update until the container restarts.
	ModeMountStack Mode = "mount-stack"
	// ModeRestart writes plain files (new file + rename) in a root-only directory: a running
	// container keeps the old value until the caller restarts it. The directory view
	// (Store.DirView) still changes live. Without mount privilege the files lie on the root's
	// own filesystem, which must be tmpfs or ramfs, and rslave works only if it is a shared mount.
	ModeRestart Mode = "restart"
)

// Format is how a secret's file content is laid out.
type Format string

const (
	// FormatJSON (also the zero value) writes {"key":K,"value":V}, as anax does.
	FormatJSON Format = "json"
	// FormatValueOnly writes the raw value.
	FormatValueOnly Format = "value_only"
)

// Secret is one secret of a service instance. Value is never logged.
type Secret struct {
	Name   string // file name and mount point /<name>; protocol.ValidateSecretName
	Key    string // the "key" field of the JSON format
	Value  []byte
	Format Format
}

// Spec describes the store of one service instance.
type Spec struct {
	ID       string // one service instance: a safe path component [A-Za-z0-9_.-], not starting with '.'
	UID, GID int    // owner of the files (the container's user)
	Secrets  []Secret
}

// Store says what to bind-mount into the container.
type Store struct {
	ID   string
	Mode Mode
	// Files maps a secret name to the host path to bind-mount read-only at /<name>. In the
	// mount modes use propagation rslave, so that updates reach the running container.
	Files map[string]string
	// DirView is the host directory to bind-mount read-only at /open-horizon-secrets; it holds
	// <name> symlinks into a versioned directory that changes as one snapshot.
	DirView string
	// ViewSource is the store's own view directory, where the agent repairs what someone else
	// changed (in the mount modes DirView is a read-only bind of it; in restart mode the same).
	// Its ViewCurrent entry links to the current snapshot, a directory IsViewSnapshot names.
	ViewSource string
}

// ViewCurrent is the view's link to its current snapshot directory.
const ViewCurrent = "..data"

// IsViewSnapshot reports whether a view entry is a snapshot directory (current or replaced);
// replaced ones are removed by secretfs after the grace, the current one is reached through
// ViewCurrent.
func IsViewSnapshot(name string) bool {
	_, ok := parseViewGen(name)
	return ok
}

// Features is what Open found the kernel and the agent's privileges allow.
type Features struct {
	Kernel            string
	NewMountAPI       bool // open_tree, move_mount, mount_setattr (5.12+)
	MoveMountBeneath  bool // MOVE_MOUNT_BENEATH (6.5+)
	MoveMountSetGroup bool // MOVE_MOUNT_SET_GROUP (5.15+): publish points are slaves of the store's feed
	TmpfsNoswap       bool // tmpfs "noswap" (6.4+)
	MountPrivilege    bool // the agent may mount
	SharedRoot        bool // mounts under the root can be made shared (propagation into containers)
}

// Options configure Open.
type Options struct {
	Root      string       // default DefaultRoot
	Mode      Mode         // "" probes and chooses; otherwise forced (Open fails if it cannot work here)
	StoreSize int64        // bytes per store tmpfs; default DefaultStoreSize
	MaxInodes int          // inodes per store tmpfs; default DefaultMaxInodes
	Logger    *slog.Logger // default slog.Default()
	// Holders names the running containers of each store (the agent asks Docker). Without it,
	// secretfs reads the mounts of every process on the machine to find them.
	Holders Holders

	// grace, set by tests, replaces defaultGrace (0: the default), so that "within the grace"
	// does not depend on how loaded the machine is.
	grace time.Duration
	// crashHook, set by tests, is called at every crash point of Create, Update, Wipe and
	// recovery (see FS.crashPoint); a hook that panics stops the operation there, as a kill would.
	crashHook func(point string)
}

// Holders tells secretfs which running containers use a store, so that a scan reads their
// mount namespaces only. secretfs never zeroes or releases a version while the containers of
// its store are not all known and read: Holders answers known=false while a container starts
// or restarts, or while its source (the Docker engine's events) may be behind.
type Holders interface {
	Holders(storeID string) (holders []Holder, known bool)
}

// HoldersVersioner is what a Holders may also implement: a number that changes whenever what
// Holders answers for any store may have changed. With it, a background pass looks only at
// the stores that changed or have work pending, not at every store on the node, while no
// container started, stopped or restarted.
type HoldersVersioner interface {
	HoldersVersion() uint64
}

// Holder is a running container that binds a store's publish points.
type Holder struct {
	Container string // for log lines
	PID       int    // a process in the container's mount namespace (its init)
}

// Defaults for Options.
const (
	DefaultRoot      = "/run/anax-agent/secrets"
	DefaultStoreSize = 16 << 20
	DefaultMaxInodes = 4096
)

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound     = errors.New("secretfs: not found")
	ErrExists       = errors.New("secretfs: already exists")
	ErrInvalid      = errors.New("secretfs: invalid")
	ErrNotSupported = errors.New("secretfs: not supported on this system")
)

// MaxIDLen is the longest store id: one path component.
const MaxIDLen = 255

// ValidateID checks a store id: 1..255 bytes of [A-Za-z0-9_.-], not starting with '.'.
func ValidateID(id string) error {
	bad := func(rule string) error { return fmt.Errorf("%w: store id %q: %s", ErrInvalid, clip(id), rule) }
	switch {
	case id == "":
		return bad("must not be empty")
	case len(id) > MaxIDLen:
		return bad(fmt.Sprintf("must be at most %d bytes", MaxIDLen))
	case id[0] == '.':
		return bad("must not start with '.'")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return bad(fmt.Sprintf("byte %d is not one of [A-Za-z0-9_.-]", i))
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// validateSpec checks everything before anything is created.
func validateSpec(spec Spec) error {
	if err := ValidateID(spec.ID); err != nil {
		return err
	}
	if err := validateOwner("uid", spec.UID); err != nil {
		return err
	}
	if err := validateOwner("gid", spec.GID); err != nil {
		return err
	}
	return validateSecrets(spec.ID, spec.Secrets)
}

// validateOwner refuses negative ids and (uint32)-1, which chown reads as "do not change".
func validateOwner(field string, id int) error {
	if id < 0 || uint64(id) >= 1<<32-1 {
		return fmt.Errorf("%w: %s %d: must be 0..4294967294", ErrInvalid, field, id)
	}
	return nil
}

func validateSecrets(id string, secrets []Secret) error {
	seen := make(map[string]bool, len(secrets))
	for i, s := range secrets {
		if err := protocol.ValidateSecretName(s.Name); err != nil {
			return fmt.Errorf("%w: store %q: secret %d: %w", ErrInvalid, id, i, err)
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: store %q: secret %q: listed twice", ErrInvalid, id, s.Name)
		}
		seen[s.Name] = true
		switch s.Format {
		case "", FormatJSON, FormatValueOnly:
		default:
			return fmt.Errorf("%w: store %q: secret %q: format %q: must be %q or %q", ErrInvalid, id, s.Name, clip(string(s.Format)), FormatJSON, FormatValueOnly)
		}
	}
	return nil
}

// content is the file content of s: anax-compatible JSON {"key":K,"value":V} or the raw value.
func content(s Secret) ([]byte, error) {
	if s.Format == FormatValueOnly {
		return s.Value, nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep <, > and & as they are, like a plain string
	if err := enc.Encode(struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}{s.Key, string(s.Value)}); err != nil {
		return nil, fmt.Errorf("secret %q: encode: %w", s.Name, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
