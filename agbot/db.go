package agbot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// DBOptions choose where the agbot keeps its state: the bbolt file DataDir/state.db when URL
// is empty (the default), else the PostgreSQL database at URL, which several agbots of one
// fleet may share (README, "Several agbots on one database").
type DBOptions struct {
	URL      string // postgres://user@host:port/db; never with a password
	Password string // from --db-password-file or $PGPASSWORD; empty: pgx reads $PGPASSFILE
}

// Sentinels of the state's set-up.
var (
	ErrKeysDiffer     = errors.New("this agbot's keys are not the fleet's")
	ErrNotInitialised = errors.New("not initialised")
)

// startTimeout bounds connecting to the database and migrating it at start-up.
const startTimeout = time.Minute

// openState opens the state the options name, applying the PostgreSQL schema migrations the
// database lacks.
func openState(dataDir string, db DBOptions) (*store.Store, error) {
	if db.URL == "" {
		return store.Open(filepath.Join(dataDir, StateFile))
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	st, err := store.OpenPostgres(ctx, store.PostgresOptions{URL: db.URL, Password: db.Password})
	if err != nil {
		return nil, fmt.Errorf("--db: %w", err)
	}
	return st, nil
}

// checkInitialised refuses a state agbot init never made, and keys that are not the ones the
// state was made with (several agbots on one database must be given the same key file).
func checkInitialised(st *store.Store, keys *protocol.PrivateKeys, db DBOptions) error {
	id, err := st.Meta(metaID)
	if err != nil {
		return err
	}
	if len(id) == 0 {
		if db.URL != "" {
			return fmt.Errorf("the database is %w (run agbot init --db once, then copy the data dir to the other agbots)", ErrNotInitialised)
		}
		return fmt.Errorf("the state file is %w (run agbot init)", ErrNotInitialised)
	}
	return checkKeys(st, keys)
}

// checkKeys compares the signing key's fingerprint with the one recorded at init (a state
// from before the record gets it now).
func checkKeys(st *store.Store, keys *protocol.PrivateKeys) error {
	have := keys.Public().Fingerprint()
	want, err := st.Meta(metaKey)
	if err != nil {
		return err
	}
	if len(want) == 0 {
		return st.SetMeta(metaKey, []byte(have))
	}
	if string(want) != have {
		return fmt.Errorf("%w: %s holds signing key %s, the state was made with %s: give every agbot of the fleet a copy of the first agbot's %s",
			ErrKeysDiffer, KeysFile, have, want, KeysFile)
	}
	return nil
}

// dbFlags are the --db flags of init and serve.
type dbFlags struct{ url, passwordFile string }

// options reads the password: from --db-password-file (refused unless private to its owner),
// else from $PGPASSWORD, which it removes from the environment so nothing the agbot starts
// inherits it. Without either, pgx reads $PGPASSFILE (or ~/.pgpass) as libpq does.
func (f dbFlags) options() (DBOptions, error) {
	if f.url == "" {
		if f.passwordFile != "" {
			return DBOptions{}, fmt.Errorf("--db-password-file: only with --db")
		}
		return DBOptions{}, nil
	}
	if err := store.CheckURL(f.url); err != nil {
		return DBOptions{}, fmt.Errorf("--db: %w", err)
	}
	o := DBOptions{URL: f.url}
	if f.passwordFile != "" {
		raw, err := readPrivateFile(f.passwordFile)
		if err != nil {
			return DBOptions{}, fmt.Errorf("--db-password-file: %w", err)
		}
		o.Password = strings.TrimRight(string(raw), "\r\n")
		clear(raw)
		if o.Password == "" || strings.ContainsAny(o.Password, "\r\n") {
			return DBOptions{}, fmt.Errorf("--db-password-file: must hold one non-empty line")
		}
		return o, nil
	}
	if pw, ok := os.LookupEnv("PGPASSWORD"); ok {
		os.Unsetenv("PGPASSWORD")
		o.Password = pw
	}
	return o, nil
}

// openEmbeddedPostgres opens the embedded manager in the database beside the state, sealed
// under the key from the environment, --secrets-key or DIR/secrets.key (every agbot of the
// fleet is given the same key; a different one is refused). Its writes are fenced like the
// store's: only the agbot serving the fleet writes.
func openEmbeddedPostgres(o Options, st *store.Store, fenceID func() string) (secrets.Manager, error) {
	key, from := o.SecretsKey, "the key from the environment ("+EnvSecretsKey+")"
	if len(key) == 0 {
		from = o.SecretsKeyFile
		if from == "" {
			from = filepath.Join(o.DataDir, embedded.KeyFile)
		}
		var err error
		if key, err = embedded.LoadKey(from); err != nil {
			return nil, err
		}
		defer clear(key)
	}
	fence := func(ctx context.Context, tx pgx.Tx) error {
		id := fenceID()
		if id == "" {
			return nil // set-up before serving (the key check record), as the store's
		}
		return store.CheckFence(ctx, tx, leaseName, id)
	}
	return embedded.OpenPostgres(embedded.PostgresOptions{Pool: st.Pool(), Key: key, KeyFrom: from, Fence: fence})
}
