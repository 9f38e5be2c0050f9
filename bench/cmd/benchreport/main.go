// Command benchreport prints the results of `make bench` as Markdown tables and writes the
// CDF charts next to the results file. With -binaries it first records the sizes of the
// `make cross` binaries found under that directory (bin/linux-*/).
//
//	go run ./bench/cmd/benchreport -results bench/results.json [-binaries bin] [-comment "..."]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/edge-secrets/anax-agent/bench"
)

func main() {
	path := flag.String("results", "bench/results.json", "results file written by the benchmarks")
	bins := flag.String("binaries", "", "record the sizes of DIR/linux-*/* (make cross) first")
	comment := flag.String("comment", "", "a note on the machine, kept in the results")
	flag.Parse()
	if err := run(*path, *bins, *comment); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(path, bins, comment string) error {
	if bins != "" || comment != "" {
		err := bench.Update(path, func(r *bench.Results) {
			if comment != "" {
				r.Machine.Comment = comment
			}
			if bins != "" {
				r.Binaries = bench.CrossSizes(bins)
			}
		})
		if err != nil {
			return err
		}
	}
	r, err := bench.Load(path)
	if err != nil {
		return err
	}
	r.Table(os.Stdout)
	for name, svg := range r.Charts() {
		out := filepath.Join(filepath.Dir(path), name)
		if err := os.WriteFile(out, svg, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "benchreport: wrote %s\n", out)
	}
	return nil
}
