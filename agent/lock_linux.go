package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrInUse: another agent runs with the same state dir or secrets root.
var ErrInUse = errors.New("in use by another agent")

// lockPaths takes an exclusive lock on each lock file (created 0600) before the agent touches
// anything, so a second agent started with the same state dir or secrets root stops at once
// instead of recovering (and disturbing) the first one's stores. The locks live as long as
// the returned files are open.
func lockPaths(locks ...string) ([]*os.File, error) {
	var held []*os.File
	release := func() {
		for _, f := range held {
			f.Close()
		}
	}
	for _, lock := range locks {
		if err := os.MkdirAll(filepath.Dir(lock), 0o700); err != nil {
			release()
			return nil, err
		}
		f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			release()
			return nil, fmt.Errorf("lock %s: %w", lock, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			release()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w", lock, ErrInUse)
			}
			return nil, fmt.Errorf("lock %s: %w", lock, err)
		}
		held = append(held, f)
	}
	return held, nil
}
