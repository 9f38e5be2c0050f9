package reliability

import (
	"flag"
	"os"
	"testing"
)

var (
	soak   = flag.Bool("soak", false, "run the long variants (make soak)")
	binDir = flag.String("bin", "", "directory with agbot, anax-agent and hzn (make build); empty: build them")
	// -profile DIR: TestLoad runs the agent with --debug-pprof and writes CPU, block and mutex
	// profiles of the update stream there (go tool pprof DIR/agent-cpu.pprof).
	profileDir = flag.String("profile", "", "directory for the agent's profiles during TestLoad's stream")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	cleanupSuite()
	os.Exit(code)
}
