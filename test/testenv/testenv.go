// Package testenv decides whether a test that needs part of the machine (root, a Docker engine)
// may run. Outside CI a missing part skips the test with the reason; with CI=true it fails it,
// because CI prepares every part and a skip there would report a check that never ran.
//
// Only tests import it.
package testenv

import (
	"net"
	"os"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where skipping is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips the test outside CI and fails it in CI.
func Skip(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and this test can not run: %s", why)
	}
	t.Skipf("skipped outside CI: %s", why)
}

// RequireRoot skips (or, in CI, fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (mounts, chown); run as root or with CI=true on a prepared machine")
	}
}

// FreePort returns a TCP port free on loopback now, for a server a test starts (OpenBao,
// PostgreSQL). Another process may take it before the server binds it; the servers' start-ups
// fail clearly then.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}
