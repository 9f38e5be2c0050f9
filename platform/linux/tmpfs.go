package linux

import (
	"errors"
	"fmt"
	"strings"
)

// Tmpfs describes the options of a tmpfs mount. Per-mount flags (nodev, nosuid, noexec) are
// mount flags, not options, and are set by the caller.
type Tmpfs struct {
	Size   int64  // bytes; must be > 0 so a store can never eat the node's memory
	Inodes int    // nr_inodes; must be > 0
	Mode   uint32 // permission bits of the root directory, e.g. 0o700
	UID    int    // owner of the root directory
	GID    int
	NoSwap bool // "noswap" (Linux 6.4+): pages never reach a swap device
}

// Options returns the data string for mount(2), e.g.
// "size=1048576,nr_inodes=4096,mode=0700,uid=0,gid=0,noswap".
func (t Tmpfs) Options() (string, error) {
	switch {
	case t.Size <= 0:
		return "", errors.New("tmpfs: size must be > 0")
	case t.Inodes <= 0:
		return "", errors.New("tmpfs: nr_inodes must be > 0")
	case t.Mode&^0o7777 != 0:
		return "", fmt.Errorf("tmpfs: mode %#o has bits outside 07777", t.Mode)
	case t.UID < 0 || t.GID < 0:
		return "", errors.New("tmpfs: uid and gid must be >= 0")
	}
	opts := []string{
		fmt.Sprintf("size=%d", t.Size),
		fmt.Sprintf("nr_inodes=%d", t.Inodes),
		fmt.Sprintf("mode=%04o", t.Mode),
		fmt.Sprintf("uid=%d", t.UID),
		fmt.Sprintf("gid=%d", t.GID),
	}
	if t.NoSwap {
		opts = append(opts, "noswap")
	}
	return strings.Join(opts, ","), nil
}
