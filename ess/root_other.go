//go:build !linux

package ess

import (
	"errors"
	"net"
)

// errNotLinux: the ESS API serves containers of a Linux Docker engine only.
var errNotLinux = errors.New("ess: the ESS secrets API needs Linux")

func prepareRoot(root string) error { return errNotLinux }

func listenIn(dir string, uid, gid int) (*net.UnixListener, error) { return nil, errNotLinux }
