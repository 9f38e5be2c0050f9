// Command agbot is the compact agreement bot: `agbot init` and `agbot serve` (package agbot).
package main

import (
	"os"

	"github.com/edge-secrets/anax-agent/agbot"
)

func main() { os.Exit(agbot.Main(os.Args[1:], os.Stdout, os.Stderr, nil)) }
