package linux

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier speaks systemd's notify protocol (Type=notify) through go-systemd. Every method is
// a no-op when the service does not run under systemd (no NOTIFY_SOCKET), so the daemon calls
// them unconditionally.
type Notifier struct{}

// Ready tells systemd start-up is complete, with a status line for `systemctl status`.
func (Notifier) Ready(status string) error {
	return notify("READY=1\nSTATUS=" + status)
}

// Status updates the status line shown by `systemctl status`.
func (Notifier) Status(status string) error { return notify("STATUS=" + status) }

// Stopping tells systemd a clean shutdown has begun.
func (Notifier) Stopping() error { return notify("STOPPING=1") }

// Watchdog pings systemd at half the WatchdogSec interval until ctx ends, while alive reports
// true. A daemon that stops serving stops pinging and systemd restarts it. It returns at once
// when the watchdog is not enabled for this process.
func (Notifier) Watchdog(ctx context.Context, alive func() bool) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("systemd watchdog: %w", err)
	}
	if interval == 0 {
		return nil
	}
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if alive == nil || alive() {
				if err := notify("WATCHDOG=1"); err != nil {
					return err
				}
			}
		}
	}
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("systemd notify: %w", err)
	}
	return nil
}
