package linux

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listenNotify opens a real unixgram NOTIFY_SOCKET, as systemd does, and points the process at it.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func readDatagram(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify datagram: %v", err)
	}
	return string(buf[:n])
}

func TestNotifierMessages(t *testing.T) {
	conn := listenNotify(t)
	var n Notifier
	tests := []struct {
		name string
		send func() error
		want string
	}{
		{"ready", func() error { return n.Ready("serving 0 agreements") }, "READY=1\nSTATUS=serving 0 agreements"},
		{"status", func() error { return n.Status("2 agreements") }, "STATUS=2 agreements"},
		{"stopping", n.Stopping, "STOPPING=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.send(); err != nil {
				t.Fatalf("send: %v", err)
			}
			if got := readDatagram(t, conn); got != tc.want {
				t.Errorf("datagram = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	var n Notifier
	if err := n.Ready("x"); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET = %v, want nil (no-op)", err)
	}
}

func TestWatchdogPings(t *testing.T) {
	conn := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000") // 100 ms: pings every 50 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Notifier{}.Watchdog(ctx, func() bool { return true }) }()
	for i := 0; i < 2; i++ {
		if got := readDatagram(t, conn); got != "WATCHDOG=1" {
			t.Errorf("ping %d = %q, want WATCHDOG=1", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watchdog returned %v, want nil after cancel", err)
	}
}

func TestWatchdogSilentWhenNotAlive(t *testing.T) {
	conn := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := (Notifier{}).Watchdog(ctx, func() bool { return false }); err != nil {
		t.Fatalf("Watchdog: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	if n, err := conn.Read(buf); err == nil {
		t.Errorf("got %q from a daemon that is not alive, want no ping", strings.TrimSpace(string(buf[:n])))
	}
}
