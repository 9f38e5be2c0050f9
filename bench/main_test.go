package bench

import (
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
)

// -results names the results file each benchmark merges its figures into (make bench passes
// bench/results.json); without it the benchmarks only report through testing.B.
var resultsPath = flag.String("results", "", "merge the figures into this results file (bench/results.json)")

var resultsMu sync.Mutex

// record merges one benchmark's figures into -results. Called at the end of every run of a
// benchmark function, so the last (largest b.N) run's figures stay.
func record(tb testing.TB, fn func(*Results)) {
	tb.Helper()
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if err := Update(*resultsPath, fn); err != nil {
		tb.Errorf("write %s: %v", *resultsPath, err)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	runAtExit()
	if code == 0 && *resultsPath != "" {
		fmt.Fprintf(os.Stderr, "bench: figures merged into %s\n", *resultsPath)
	}
	os.Exit(code)
}
