package reliability

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// The suite's shared parts: the binaries (built once, or -bin) and a work directory removed
// at the end.
var (
	suiteOnce sync.Once
	suiteDir  string
	suiteBin  *e2e.Binaries
	suiteErr  error
)

func binaries(t testing.TB) *e2e.Binaries {
	t.Helper()
	testenv.RequireRoot(t)
	suiteOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if suiteDir, suiteErr = os.MkdirTemp("", "anax-reliability-"); suiteErr != nil {
			return
		}
		suiteBin, suiteErr = BuildBinaries(ctx, *binDir, filepath.Join(suiteDir, "bin"))
	})
	if suiteErr != nil {
		t.Fatalf("reliability suite set-up: %v", suiteErr)
	}
	return suiteBin
}

// cleanupSuite removes what the suite shared between tests.
func cleanupSuite() {
	if suiteDir != "" {
		os.RemoveAll(suiteDir)
	}
}
