package reliability

import (
	"context"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/leakscan"
)

// scanLeaks looks for the scenario's secret values everywhere they must never be: every file
// under the scenario's directory (logs, agent state dirs and configs, the agbot's data dir)
// except the agents' secret stores (tmpfs, where they belong), core files, `docker inspect`
// and the logs of every container the agents ran, and the argv and environment of every
// process (leakscan.Check, which also proves it can fail with a planted value).
func scanLeaks(t *testing.T, s *Scenario, c *leakscan.Canaries) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	skip := []string{s.Bin.Dir}
	var ids []string
	for _, a := range s.Agents() {
		skip = append(skip, a.Config.SecretsRoot)
		list, err := e2e.ContainersOf(ctx, s.Docker, a.ID())
		if err != nil {
			t.Fatal(err)
		}
		for _, ctr := range list {
			ids = append(ids, ctr.ID)
		}
	}
	leakscan.Check(t, c, leakscan.Scan{Root: s.Dir, Skip: skip, Docker: s.Docker, Containers: ids, MinFiles: 5})
}
