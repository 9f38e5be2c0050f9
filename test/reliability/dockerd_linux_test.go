package reliability

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// privateScenario starts a private dockerd with extra flags (test/dockertest.Daemon), builds
// the reader in it and starts an agbot; agents of the scenario reach that dockerd through
// DOCKER_HOST (see onDaemon).
func privateScenario(t *testing.T, name string, timeout time.Duration, dockerdArgs ...string) (*Scenario, *dockertest.Daemon) {
	t.Helper()
	bin := binaries(t)
	d := dockertest.StartDaemon(t, dockerdArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	image, err := e2e.BuildImage(ctx, d.Client, bin.Reader, e2e.Image{Name: "anax-reliability-reader", User: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	return newScenarioOn(t, name, timeout, d.Client, image), d
}

// onDaemon points an agent at d.
func onDaemon(d *dockertest.Daemon) func(*e2e.Agent) {
	return func(a *e2e.Agent) { a.Env = append(a.Env, d.Env()) }
}

// TestFaultDockerdRestart: the agent's dockerd (a private one, so the engine other tests share
// is never touched) stops and starts again. An update made while it is down reaches the store;
// the service's container runs again and reads it, later updates arrive, nothing is left over.
func TestFaultDockerdRestart(t *testing.T) {
	c := leakscan.New("rel-dockerd")
	s, d := privateScenario(t, "dockerd", 10*time.Minute)
	a, ctr, err := s.Single(c.Next("db"), c.Next("token"), onDaemon(d))
	if err != nil {
		t.Fatal(err)
	}
	cur := s.warmUp(t, c, ctr)
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	during := c.Next("db")
	if err := s.put("db", "dbkey", during); err != nil {
		t.Fatal(err)
	}
	// The agent stays up without its engine.
	if exited, err := a.Proc().Exited(); exited {
		t.Fatalf("the agent exited when dockerd stopped: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
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
		t.Fatalf("an update after the dockerd restart: %v", err)
	}
	list, err := e2e.ContainersOf(s.Ctx, s.Docker, a.ID())
	if err != nil || len(list) != 1 {
		t.Errorf("after the dockerd restart the agent has %d containers (%v), want 1", len(list), err)
	}
	scanLeaks(t, s, c)
}
