// Command anax-agent is the node daemon (package agent): it registers with an agbot, accepts
// its proposals and keeps each service's secrets current in its running containers.
package main

import (
	"os"

	"github.com/edge-secrets/anax-agent/agent"
)

func main() { os.Exit(agent.Main(os.Args[1:], os.Stderr, os.Getenv)) }
