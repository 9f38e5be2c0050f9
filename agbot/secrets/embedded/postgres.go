package embedded

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions open the manager on PostgreSQL, beside the agbot's state (agbot/store's
// migrations make the tables embedded_secrets, embedded_versions and embedded_meta). Every
// agbot of a fleet sees the same secrets; each is given the same key, which never enters the
// database: the tables hold records sealed under it, as the bbolt file does.
type PostgresOptions struct {
	Pool    *pgxpool.Pool
	Key     []byte // KeySize bytes; the caller clears it afterwards
	KeyFrom string // where the key came from, for errors
	// Fence, when set, runs first in every write transaction (after the write lock) and
	// fails it when this agbot no longer serves the fleet.
	Fence func(ctx context.Context, tx pgx.Tx) error
}

// secretsLock is the transaction advisory lock that serialises the manager's writes ("agbs").
const secretsLock = 0x61676273

// opTimeout bounds one transaction.
const opTimeout = 30 * time.Second

// OpenPostgres opens the manager on the database o.Pool (its schema already migrated).
func OpenPostgres(o PostgresOptions) (*Manager, error) {
	if len(o.Key) != KeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrKeyFile, o.KeyFrom, len(o.Key), KeySize)
	}
	s, err := newSealer(o.Key)
	if err != nil {
		return nil, err
	}
	return newManager(&pgKV{pool: o.Pool, fence: o.Fence}, s, o.KeyFrom, "the database", "embedded (postgresql)")
}

type pgKV struct {
	pool  *pgxpool.Pool
	fence func(ctx context.Context, tx pgx.Tx) error
}

func (b *pgKV) update(fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(secretsLock)); err != nil {
			return err
		}
		if b.fence != nil {
			if err := b.fence(ctx, tx); err != nil {
				return err
			}
		}
		return fn(pgTx{ctx, tx})
	})
}

func (b *pgKV) view(fn func(kvTx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return pgx.BeginTxFunc(ctx, b.pool, opts, func(tx pgx.Tx) error { return fn(pgTx{ctx, tx}) })
}

// close leaves the pool to its owner (the agbot's store).
func (b *pgKV) close() error { return nil }

type pgTx struct {
	ctx context.Context
	tx  pgx.Tx
}

func (t pgTx) one(q string, args ...any) ([]byte, error) {
	var v []byte
	err := t.tx.QueryRow(t.ctx, q, args...).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (t pgTx) get(org, name string) ([]byte, error) {
	return t.one("SELECT sealed FROM embedded_secrets WHERE org = $1 AND name = $2", org, name)
}

func (t pgTx) put(org, name string, sealed []byte, version uint64) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO embedded_secrets (org, name, sealed) VALUES ($1, $2, $3)
		ON CONFLICT (org, name) DO UPDATE SET sealed = EXCLUDED.sealed`, org, name, sealed)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(t.ctx, `INSERT INTO embedded_versions (org, name, version) VALUES ($1, $2, $3)
		ON CONFLICT (org, name) DO UPDATE SET version = EXCLUDED.version`, org, name, int64(version))
	return err
}

func (t pgTx) del(org, name string) (bool, error) {
	tag, err := t.tx.Exec(t.ctx, "DELETE FROM embedded_secrets WHERE org = $1 AND name = $2", org, name)
	return tag.RowsAffected() == 1, err
}

func (t pgTx) version(org, name string) (uint64, error) {
	var v int64
	err := t.tx.QueryRow(t.ctx, "SELECT version FROM embedded_versions WHERE org = $1 AND name = $2", org, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return uint64(v), err
}

func (t pgTx) names(org, prefix string) ([]string, error) {
	rows, err := t.tx.Query(t.ctx, `SELECT name FROM embedded_secrets WHERE org = $1 AND starts_with(name, $2)
		ORDER BY name COLLATE "C"`, org, prefix)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (t pgTx) check() ([]byte, error) {
	return t.one("SELECT v FROM embedded_meta WHERE k = 'check'")
}

func (t pgTx) setCheck(sealed []byte) error {
	_, err := t.tx.Exec(t.ctx, `INSERT INTO embedded_meta (k, v) VALUES ('check', $1)
		ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, sealed)
	return err
}
