package reliability

import (
	"flag"
	"os"
	"testing"
)

var (
	soak   = flag.Bool("soak", false, "run the long variants (make soak)")
	binDir = flag.String("bin", "", "directory with agbot, anax-agent and hzn (make build); empty: build them")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	cleanupSuite()
	os.Exit(code)
}
