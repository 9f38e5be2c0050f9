package agent

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	linuxp "github.com/edge-secrets/anax-agent/platform/linux"
)

// ShutdownTimeout bounds a clean stop: messages being handled finish, the state DB closes.
const ShutdownTimeout = 50 * time.Second

// Main runs the daemon with args (without the program name) until SIGTERM or SIGINT, reloads
// the configuration on SIGHUP, and returns the exit code. cmd/anax-agent is a thin main over it.
func Main(args []string, stderr io.Writer, getenv func(string) string) int {
	cfg, file, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "anax-agent:", err)
		return 2
	}
	level := new(slog.LevelVar)
	l, _ := ParseLevel(cfg.LogLevel)
	level.Set(l)
	log := NewLogger(stderr, level, UnderSystemd(getenv))
	// Before anything holds a secret: no core dumps, files private by default.
	if err := linuxp.Harden(); err != nil {
		log.Error("cannot harden the process", "err", err)
		return 1
	}
	a, err := New(cfg, Options{
		ConfigFile: file,
		Reparse: func() (Config, error) {
			c, _, err := ParseFlags(args, io.Discard)
			return c, err
		},
		Logger: log, Level: level,
	})
	if err != nil {
		log.Error("anax-agent cannot start", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading the configuration")
			_ = a.Reload()
		}
	}()
	serveErr := a.Serve(ctx)
	if serveErr != nil {
		log.Error("anax-agent stopped serving", "err", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	if serveErr != nil {
		return 1
	}
	return 0
}
