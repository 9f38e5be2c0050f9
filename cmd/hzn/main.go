// Command hzn is the CLI for the agbot and the agent (package hzn).
package main

import (
	"os"

	"github.com/edge-secrets/anax-agent/hzn"
)

func main() { os.Exit(hzn.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)) }
