//go:build !linux

package linux

import "errors"

// Harden is Linux only: the agent and the agbot run on Linux.
func Harden() error {
	return errors.New("process hardening (no core dumps, not dumpable) is not supported on this system")
}

// Dumpable is Linux only.
func Dumpable() (bool, error) { return true, errors.New("not supported on this system") }
