// Command bao is the OpenBao server and CLI, built from the Go module proxy for the tests.
package main

import (
	"os"

	"github.com/openbao/openbao/command"
)

func main() { os.Exit(command.Run(os.Args[1:])) }
