package ess

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// prepareRoot makes root 0700 and mounts a tmpfs on it unless it is on memory already: the
// credentials must never reach a disk.
func prepareRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("ess root: %w", err)
	}
	if mem, err := linux.IsMemoryFS(root); err != nil {
		return fmt.Errorf("ess root: %w", err)
	} else if !mem {
		if err := linux.MountTmpfs(root, rootSource, linux.Tmpfs{Size: rootSize, Inodes: rootInodes, Mode: 0o700}); err != nil {
			return fmt.Errorf("ess root %s is not on tmpfs and a tmpfs can not be mounted there: %w", root, err)
		}
	}
	return os.Chmod(root, 0o700)
}

// listenIn binds essapi.sock in dir (replacing a stale one) through /proc/self/fd, so that
// the path length limit of unix sockets (108 bytes) never bites, and gives it to uid:gid, 0600.
func listenIn(dir string, uid, gid int) (*net.UnixListener, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	_ = unix.Unlinkat(fd, socketName, 0)
	via := "/proc/self/fd/" + strconv.Itoa(fd) + "/" + socketName
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: via, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s/%s: %w", dir, socketName, err)
	}
	ln.SetUnlinkOnClose(false)
	path := filepath.Join(dir, socketName)
	if err := os.Chown(path, uid, gid); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
