//go:build !linux

package openbaotest

import "os/exec"

// setPdeathsig: only Linux can tie the server's life to the test binary's.
func setPdeathsig(*exec.Cmd) {}
