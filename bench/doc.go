// Package bench holds the figures of design §9 and issue 8: the benchmarks that measure them
// (its _test.go files, run by `make bench`), and the results model they write
// (bench/results.json), the table printed from it and the latency CDF charts (SVG).
//
// The benchmarks put this project's way of doing each job next to the ways the field does
// it, in the same harness and the same run, on real parts (kernel mounts, dockerd, the agbot
// binary): absolute times on shared machines are noisy, so the table reports medians, p99 and
// ratios. Benchmarks report; they never assert a time.
//
// Only cmd/benchreport and this package's tests import it.
package bench
