package agbot_test

import (
	"errors"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// TestPostgres runs the suites with the embedded secrets manager and the state in a real
// PostgreSQL server started for the test, each suite on a fresh database.
func TestPostgres(t *testing.T) {
	pg := postgrestest.Start(t)
	on := func(t *testing.T) backendEnv {
		return backendEnv{db: agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}}
	}
	t.Run("flow", func(t *testing.T) { testFlow(t, on(t)) })
	t.Run("restart", func(t *testing.T) { testRestart(t, on(t)) })
	t.Run("publishing", func(t *testing.T) { testPublishing(t, on(t)) })
	t.Run("matrix", func(t *testing.T) { testMatrix(t, on(t)) })
	t.Run("fleet keys", func(t *testing.T) { testFleetKeys(t, pg) })
	t.Run("fleet failover", func(t *testing.T) { testFleetFailover(t, pg) })
	t.Run("proposal reply atomic", func(t *testing.T) { testProposalReplyAtomic(t, pg) })
	t.Run("cancel reply atomic", func(t *testing.T) { testCancelReplyAtomic(t, pg) })
}

// testFleetKeys: a second agbot on the database with keys of its own is refused at
// init and at serve; with a copy of the first one's data dir it opens.
func testFleetKeys(t *testing.T, pg *postgrestest.Server) {
	db := agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}
	first, second := t.TempDir(), t.TempDir()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: first, Org: org, Admin: "admin", Password: "pw", Hash: access.CheapParams, DB: db}); err != nil {
		t.Fatal(err)
	}
	_, err := agbot.Init(agbot.InitOptions{DataDir: second, Org: "org2", Admin: "admin", Password: "pw", Hash: access.CheapParams, DB: db})
	if !errors.Is(err, agbot.ErrKeysDiffer) {
		t.Fatalf("init with other keys: %v, want ErrKeysDiffer", err)
	}
	if _, err := agbot.Open(agbot.Options{DataDir: second, DB: db}); !errors.Is(err, agbot.ErrKeysDiffer) {
		t.Fatalf("serve with other keys: %v, want ErrKeysDiffer", err)
	}
	if _, err := agbot.Open(agbot.Options{DataDir: first, DB: agbot.DBOptions{URL: pg.NewDatabase(t), Password: pg.Password}}); !errors.Is(err, agbot.ErrNotInitialised) {
		t.Fatalf("serve on an empty database: %v, want ErrNotInitialised", err)
	}
}
