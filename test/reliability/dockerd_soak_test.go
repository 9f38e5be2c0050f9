//go:build soak

package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// TestFaultDockerdRestart (built only with -tags soak, by make soak: it restarts the Docker
// engine everyone shares, so make test does not even compile it rather than skip it):
// dockerd stopped and started again with test/prepare.sh docker. The service's container
// runs again, reads the current value, and later updates arrive; nothing is left over.
func TestFaultDockerdRestart(t *testing.T) {
	c := leakscan.New("rel-dockerd")
	s := newScenarioT(t, "dockerd", 15*time.Minute)
	db0 := c.Next("db")
	a, ctr, err := s.Single(db0, c.Next("token"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cur := s.warmUp(t, c, ctr)
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("pidof dockerd: %v", err)
	}
	pid := strings.Fields(string(out))[0]
	if err := exec.Command("kill", "-TERM", pid).Run(); err != nil {
		t.Fatal(err)
	}
	if err := e2e.Eventually(s.Ctx, 2*time.Minute, 200*time.Millisecond, func() error {
		if _, err := os.Stat("/proc/" + pid); err == nil {
			return fmt.Errorf("dockerd %s still runs", pid)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// An update while the engine is down reaches the node's store at once.
	during := c.Next("db")
	if err := s.put("db", "dbkey", during); err != nil {
		t.Fatal(err)
	}
	root, err := e2e.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(root, "test", "prepare.sh"), "docker").CombinedOutput(); err != nil {
		t.Fatalf("test/prepare.sh docker: %v\n%s", err, out)
	}
	var now string
	err = e2e.Eventually(s.Ctx, 3*time.Minute, time.Second, func() error {
		in, err := a.ActiveAgreement(s.Ctx, "reader", time.Second)
		if err != nil {
			return err
		}
		now = in.Containers[0].ContainerID
		insp, err := s.Docker.ContainerInspect(s.Ctx, now)
		if err != nil || !insp.State.Running {
			return fmt.Errorf("container %s not running: %v", now, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the dockerd restart the service does not run again: %v", err)
	}
	if err := s.waitRead(now, "/db_password", File("dbkey", during, ""), time.Minute); err != nil {
		t.Fatalf("after the dockerd restart (was %s): %v", describe(File("dbkey", cur, "")), err)
	}
	later := c.Next("db")
	if err := s.put("db", "dbkey", later); err != nil {
		t.Fatal(err)
	}
	if err := s.waitRead(now, "/db_password", File("dbkey", later, ""), time.Minute); err != nil {
		t.Fatal(err)
	}
	list, err := e2e.ContainersOf(s.Ctx, s.Docker, a.ID())
	if err != nil || len(list) != 1 {
		t.Errorf("after the dockerd restart the agent has %d containers (%v), want 1", len(list), err)
	}
	scanLeaks(t, s, c)
}
