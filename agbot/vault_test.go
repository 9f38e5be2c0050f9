package agbot_test

import (
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/vault"
	"github.com/edge-secrets/anax-agent/test/openbaotest"
)

// openBao starts a real OpenBao dev server for the test; every agbot (re)start in the
// harness opens a new Vault manager on it, so restarts keep the secrets.
func openBao(t *testing.T) managerFactory {
	addr, token := openbaotest.Start(t)
	return func(t *testing.T) secrets.Manager {
		m, err := vault.New(vault.Config{Addr: addr, Token: token, Mount: openbaotest.Mount, PollInterval: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func TestMatrixOpenBao(t *testing.T)     { testMatrix(t, backendEnv{mk: openBao(t)}) }
func TestFlowOpenBao(t *testing.T)       { testFlow(t, backendEnv{mk: openBao(t)}) }
func TestRestartOpenBao(t *testing.T)    { testRestart(t, backendEnv{mk: openBao(t)}) }
func TestPublishingOpenBao(t *testing.T) { testPublishing(t, backendEnv{mk: openBao(t)}) }

// TestDirectVaultWrite: a value written straight into OpenBao (not through the agbot) is
// found by the manager's poll and reaches the node as an update.
func TestDirectVaultWrite(t *testing.T) {
	s := openbaotest.StartServer(t)
	mk := func(t *testing.T) secrets.Manager {
		m, err := vault.New(vault.Config{Addr: s.Addr, Token: s.Token, Mount: openbaotest.Mount, PollInterval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	h := newHarness(t, mk)
	n := h.edgeDeployment("canary-v1", "canary-vt")
	n.register("amd64", map[string]any{"purpose": "edge"}, "")
	n.ack(n.next())
	_, err := s.Client().KVv2(openbaotest.Mount).Put(t.Context(), "myorg/db", map[string]any{"key": "k-db", "value": "canary-direct"})
	if err != nil {
		t.Fatal(err)
	}
	m := n.next()
	wantUpdate(t, m, "db_password", "canary-direct", "value_updated")
}
