// Command agbot is the compact agreement bot: `agbot init` and `agbot serve` (package agbot).
package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/vault"
)

func openVault(addr, token, mount string, poll time.Duration, _ *slog.Logger) (secrets.Manager, error) {
	return vault.New(vault.Config{Addr: addr, Token: token, Mount: mount, PollInterval: poll})
}

func main() { os.Exit(agbot.Main(os.Args[1:], os.Stdout, os.Stderr, openVault)) }
