// Command agbot is a placeholder until its issue lands: it prints usage and exits.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "usage: agbot (not implemented yet)")
	os.Exit(2)
}
