package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinels of the PostgreSQL backend.
var (
	// ErrPasswordInURL: a database URL carries a password, which would land in argv, shell
	// history and process listings. It comes from a file or the environment instead.
	ErrPasswordInURL = errors.New("the database URL carries a password: give it with --db-password-file, PGPASSWORD or PGPASSFILE instead")
	ErrBadURL        = errors.New("bad database URL")
)

// writeLock is the key of the transaction-level advisory lock every write transaction takes
// first: writers are serialised across all agbots sharing the database, as bbolt serialises
// them in one process, so a transaction never sees another commit between its reads and
// writes. ("agbt" in ASCII.)
const writeLock = 0x61676274

// opTimeout bounds one transaction, so a database that stops answering fails the operation
// (and the caller retries or reports) instead of hanging the agbot.
const opTimeout = 30 * time.Second

// PostgresOptions configure OpenPostgres.
type PostgresOptions struct {
	// URL is postgres://user@host:port/db[?sslmode=...]; it must not carry a password.
	URL string
	// Password, when not empty, is the user's password (from --db-password-file). Else pgx
	// reads PGPASSWORD or PGPASSFILE as libpq does.
	Password string
	// MaxConns caps the pool (zero: pgx's default, the larger of 4 and the CPU count).
	MaxConns int32
}

// CheckURL refuses a database URL that is not postgres:// or postgresql://, or carries a
// password, naming the rule.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fmt.Errorf("%w: scheme %q, want postgres://user@host:port/db", ErrBadURL, u.Scheme)
	}
	if _, set := u.User.Password(); set {
		return ErrPasswordInURL
	}
	if strings.Contains(strings.ToLower(u.RawQuery), "password") {
		return ErrPasswordInURL
	}
	return nil
}

// OpenPostgres connects to the database, applies the schema migrations it lacks (under an
// advisory lock: agbots starting together are safe) and returns the Store.
func OpenPostgres(ctx context.Context, o PostgresOptions) (*Store, error) {
	pool, err := Connect(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return newStore(&pgBackend{pool: pool}), nil
}

// Connect opens a connection pool (and checks it answers) without touching the schema.
func Connect(ctx context.Context, o PostgresOptions) (*pgxpool.Pool, error) {
	if err := CheckURL(o.URL); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	if o.Password != "" {
		cfg.ConnConfig.Password = o.Password
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", redact(o.URL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s: %w", redact(o.URL), err)
	}
	return pool, nil
}

// redact is the URL for messages: user, host, port and database only.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// pgBackend keeps the store in four tables (migrations.go): records (every Table, keyed by
// table name and the bytewise key), outbox and outbox_seq (each node's messages and its
// sequence), meta.
type pgBackend struct {
	pool *pgxpool.Pool
	// fenceName and fenceID, when set (Store.Fence, before serving), make every write
	// check that this agbot holds the lease.
	fenceName, fenceID string
}

// Pool is the connection pool of a PostgreSQL store (nil for bbolt): the lease and
// notification code of several agbots shares it.
func (s *Store) Pool() *pgxpool.Pool {
	if b, ok := s.be.(*pgBackend); ok {
		return b.pool
	}
	return nil
}

func (b *pgBackend) update(fn func(Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(writeLock)); err != nil {
			return fmt.Errorf("write lock: %w", err)
		}
		t := &pgTx{ctx: ctx, tx: tx}
		if b.fenceID != "" {
			if err := t.checkFence(b.fenceName, b.fenceID); err != nil {
				return err
			}
		}
		return fn(t)
	})
}

func (b *pgBackend) view(fn func(Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return pgx.BeginTxFunc(ctx, b.pool, opts, func(tx pgx.Tx) error {
		return fn(&pgTx{ctx: ctx, tx: tx, ro: true})
	})
}

func (b *pgBackend) close() error { b.pool.Close(); return nil }

// errReadOnly: a write inside View.
var errReadOnly = errors.New("write in a read-only transaction")

type pgTx struct {
	ctx context.Context
	tx  pgx.Tx
	ro  bool
}

func (t *pgTx) get(table string, key []byte) ([]byte, error) {
	var v []byte
	err := t.tx.QueryRow(t.ctx, "SELECT v FROM records WHERE tbl = $1 AND k = $2", table, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (t *pgTx) put(table string, key, val []byte) error {
	if t.ro {
		return errReadOnly
	}
	_, err := t.tx.Exec(t.ctx, `INSERT INTO records (tbl, k, v) VALUES ($1, $2, $3)
		ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v`, table, key, val)
	return err
}

func (t *pgTx) del(table string, key []byte) (bool, error) {
	if t.ro {
		return false, errReadOnly
	}
	tag, err := t.tx.Exec(t.ctx, "DELETE FROM records WHERE tbl = $1 AND k = $2", table, key)
	return tag.RowsAffected() == 1, err
}

// each reads the rows in bytewise key order (bytea compares as memcmp), as bbolt does.
func (t *pgTx) each(table string, prefix []byte, fn func(k, v []byte) error) error {
	if prefix == nil {
		prefix = []byte{} // NULL compares as nothing
	}
	q, args := "SELECT k, v FROM records WHERE tbl = $1 AND k >= $2", []any{table, prefix}
	if end := prefixEnd(prefix); end != nil {
		q, args = q+" AND k < $3", append(args, end)
	}
	all, err := t.pairs(q+" ORDER BY k", args...)
	if err != nil {
		return err
	}
	for _, r := range all {
		if err := fn(r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

// pairs runs a query of two bytea columns and reads every row before returning, so that the
// caller's callback may run statements on the same transaction.
func (t *pgTx) pairs(q string, args ...any) ([][2][]byte, error) {
	rows, err := t.tx.Query(t.ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2][]byte, error) {
		var r [2][]byte
		err := row.Scan(&r[0], &r[1])
		return r, err
	})
}

// prefixEnd is the smallest key greater than every key starting with prefix (nil: none).
func prefixEnd(prefix []byte) []byte {
	end := []byte(string(prefix))
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func (t *pgTx) enqueue(org, node string, m *Message) error {
	if t.ro {
		return errReadOnly
	}
	nk := Key(org, node)
	var id int64
	err := t.tx.QueryRow(t.ctx, `INSERT INTO outbox_seq (nk, seq) VALUES ($1, 1)
		ON CONFLICT (nk) DO UPDATE SET seq = outbox_seq.seq + 1 RETURNING seq`, nk).Scan(&id)
	if err != nil {
		return err
	}
	m.ID = uint64(id)
	raw, err := encodeMessage(m)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(t.ctx, "INSERT INTO outbox (nk, id, msg) VALUES ($1, $2, $3)", nk, id, raw)
	return err
}

func (t *pgTx) remove(org, node string, id uint64) (bool, error) {
	if t.ro {
		return false, errReadOnly
	}
	tag, err := t.tx.Exec(t.ctx, "DELETE FROM outbox WHERE nk = $1 AND id = $2", Key(org, node), int64(id))
	return tag.RowsAffected() == 1, err
}

func (t *pgTx) dropNode(org, node string) error {
	if t.ro {
		return errReadOnly
	}
	nk := Key(org, node)
	if _, err := t.tx.Exec(t.ctx, "DELETE FROM outbox WHERE nk = $1", nk); err != nil {
		return err
	}
	_, err := t.tx.Exec(t.ctx, "DELETE FROM outbox_seq WHERE nk = $1", nk)
	return err
}

func (t *pgTx) outbox(fn func(org, node string, raw []byte) error) error {
	all, err := t.pairs("SELECT nk, msg FROM outbox ORDER BY nk, id")
	if err != nil {
		return err
	}
	for _, r := range all {
		org, node := SplitKey(r[0])
		if err := fn(org, node, r[1]); err != nil {
			return err
		}
	}
	return nil
}

func (t *pgTx) meta(key string) ([]byte, error) {
	var v []byte
	err := t.tx.QueryRow(t.ctx, "SELECT v FROM meta WHERE k = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (t *pgTx) setMeta(key string, val []byte) error {
	if t.ro {
		return errReadOnly
	}
	_, err := t.tx.Exec(t.ctx, `INSERT INTO meta (k, v) VALUES ($1, $2)
		ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`, key, val)
	return err
}
