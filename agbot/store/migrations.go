package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the PostgreSQL schema, one step per version, applied in order and each
// recorded in schema_migrations. A step is never edited once released: a change is a new step.
var migrations = []string{
	1: `CREATE TABLE records (
		tbl text NOT NULL,
		k   bytea NOT NULL,
		v   bytea NOT NULL,
		PRIMARY KEY (tbl, k));
	CREATE TABLE outbox (
		nk  bytea NOT NULL,
		id  bigint NOT NULL,
		msg bytea NOT NULL,
		PRIMARY KEY (nk, id));
	CREATE TABLE outbox_seq (
		nk  bytea PRIMARY KEY,
		seq bigint NOT NULL);
	CREATE TABLE meta (
		k text PRIMARY KEY,
		v bytea NOT NULL);`,
	2: `CREATE TABLE leases (
		name    text PRIMARY KEY,
		holder  text NOT NULL,
		addr    text NOT NULL DEFAULT '',
		expires timestamptz NOT NULL);`,
	// The embedded secrets manager's records (agbot/secrets/embedded), sealed under a key
	// that never enters the database.
	3: `CREATE TABLE embedded_secrets (
		org    text NOT NULL,
		name   text NOT NULL,
		sealed bytea NOT NULL,
		PRIMARY KEY (org, name));
	CREATE TABLE embedded_versions (
		org     text NOT NULL,
		name    text NOT NULL,
		version bigint NOT NULL,
		PRIMARY KEY (org, name));
	CREATE TABLE embedded_meta (
		k text PRIMARY KEY,
		v bytea NOT NULL);`,
}

// migrateLock is the key of the session advisory lock held while migrating ("agbm").
const migrateLock = 0x6167626d

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) - 1 }

// Migrate applies the migrations the database lacks, each in its own transaction, while
// holding a session advisory lock, so agbots starting together apply each step once. A
// database newer than this build is refused.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLock)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLock))
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > SchemaVersion() {
		return fmt.Errorf("migrate: the database has schema version %d, this agbot knows up to %d: upgrade the agbot", have, SchemaVersion())
	}
	for v := have + 1; v <= SchemaVersion(); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: step %d: %w", v, err)
		}
	}
	return nil
}
