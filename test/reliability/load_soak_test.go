//go:build soak

package reliability

import (
	"flag"
	"testing"
	"time"
)

var soakTime = flag.Duration("soak-time", 5*time.Minute, "how long TestLoadStream's update stream runs")

// TestLoadStream (make soak): 100 updates a second for -soak-time to one of 10 services on a
// node, read continuously inside its container: every read whole, convergence to the last
// value, and no growth of the agent's memory, goroutines, open files or mounts.
func TestLoadStream(t *testing.T) {
	testLoad(t, newScenarioT(t, "load-stream", *soakTime+30*time.Minute), nil, 10, 100, *soakTime)
}
