// Command hzn is a placeholder until its issue lands: it prints usage and exits.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "usage: hzn (not implemented yet)")
	os.Exit(2)
}
