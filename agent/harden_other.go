//go:build !linux

package agent

import "errors"

// Harden is Linux only: the agent runs on Linux edge devices.
func Harden() error {
	return errors.New("anax-agent: process hardening is not supported on this system")
}

// Dumpable is Linux only.
func Dumpable() (bool, error) { return true, errors.New("not supported on this system") }
