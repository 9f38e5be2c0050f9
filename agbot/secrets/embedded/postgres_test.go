package embedded_test

import (
	"context"
	"errors"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
	"github.com/edge-secrets/anax-agent/agbot/secrets/secretstest"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/test/postgrestest"
)

// TestPostgres runs the managers' conformance suite on the embedded manager kept in a real
// PostgreSQL database (the tables agbot/store's migrations make), and checks that the
// database holds only sealed records and refuses another key.
func TestPostgres(t *testing.T) {
	pg := postgrestest.Start(t)
	key := make([]byte, embedded.KeySize)
	open := func(t *testing.T, url string, key []byte) (*embedded.Manager, *store.Store, error) {
		st, err := store.OpenPostgres(context.Background(), store.PostgresOptions{URL: url, Password: pg.Password})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m, err := embedded.OpenPostgres(embedded.PostgresOptions{Pool: st.Pool(), Key: key, KeyFrom: "test key"})
		if err == nil {
			t.Cleanup(func() { m.Close() })
		}
		return m, st, err
	}
	t.Run("conformance", func(t *testing.T) {
		secretstest.Run(t, func(t *testing.T) secrets.Manager {
			m, _, err := open(t, pg.NewDatabase(t), key)
			if err != nil {
				t.Fatal(err)
			}
			return m
		})
	})
	t.Run("sealed and keyed", func(t *testing.T) {
		url := pg.NewDatabase(t)
		m, st, err := open(t, url, key)
		if err != nil {
			t.Fatal(err)
		}
		const canary = "pg-canary-value-7f3a"
		if _, err := m.Put(context.Background(), "org", "db", secrets.Secret{Key: "k", Value: canary}); err != nil {
			t.Fatal(err)
		}
		var n int
		err = st.Pool().QueryRow(context.Background(),
			"SELECT count(*) FROM embedded_secrets WHERE position($1::bytea in sealed) > 0", []byte(canary)).Scan(&n)
		if err != nil || n != 0 {
			t.Fatalf("%d records hold the value in clear (%v)", n, err)
		}
		other := make([]byte, embedded.KeySize)
		other[0] = 1
		if _, _, err := open(t, url, other); !errors.Is(err, embedded.ErrKeyFile) {
			t.Fatalf("another key: %v, want ErrKeyFile", err)
		}
	})
}
