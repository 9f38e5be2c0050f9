//go:build !linux

package postgrestest

import "os/exec"

// dieWithParent: only Linux has a parent-death signal; elsewhere Stop and the test's clean-up
// end the server.
func dieWithParent(*exec.Cmd) {}
