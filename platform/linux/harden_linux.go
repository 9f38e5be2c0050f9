package linux

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden turns core dumps off for this process (a core would hold secret values that were in
// memory: PR_SET_DUMPABLE 0 also keeps other users' ptrace and /proc/<pid>/mem away) and sets
// umask 077, so everything the process creates is its own unless it says otherwise. The agent
// and the agbot call it first thing.
func Harden() error {
	unix.Umask(0o077)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	var lim unix.Rlimit
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &lim); err != nil {
		return fmt.Errorf("setrlimit(RLIMIT_CORE, 0): %w", err)
	}
	return nil
}

// Dumpable reports the process's PR_GET_DUMPABLE flag (for status and tests).
func Dumpable() (bool, error) {
	v, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	return v != 0, err
}
