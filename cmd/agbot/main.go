// Command agbot is the compact agreement bot: `agbot init` and `agbot serve` (package agbot).
package main

import (
	"log/slog"
	"os"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/vault"
)

func openVault(o agbot.VaultOptions, log *slog.Logger) (secrets.Manager, error) {
	return vault.New(vault.Config{Addr: o.Addr, Token: o.Token, Mount: o.Mount, CACert: o.CACert, PollInterval: o.Poll, Logger: log})
}

func main() { os.Exit(agbot.Main(os.Args[1:], os.Stdout, os.Stderr, openVault)) }
