//go:build !linux

package agent

import (
	"errors"
	"os"
)

// ErrInUse: another agent runs with the same state dir or secrets root.
var ErrInUse = errors.New("in use by another agent")

// lockPaths is Linux only; elsewhere secretfs does not run either.
func lockPaths(locks ...string) ([]*os.File, error) { return nil, nil }
