package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotLeader: a write from an agbot that does not hold the fleet's lease (it lost it, or
// never had it). The transaction changed nothing.
var ErrNotLeader = errors.New("this agbot does not hold the lease: another agbot serves the fleet")

// ErrNoLeases: leases need the PostgreSQL backend.
var ErrNoLeases = errors.New("leases need the PostgreSQL store (--db)")

// Holder is who holds a lease, by the database's clock.
type Holder struct {
	ID      string
	Addr    string // where the holder serves (its --advertise URL)
	Expires time.Time
}

// Lease is one named lease in the database: at most one holder at a time, by the database's
// clock (the agbots' clocks never compare with each other).
type Lease struct {
	s          *Store
	pool       *pgxpool.Pool // the lease's own connection: a busy store pool must not starve its renewal
	name, id   string
	addr       string
	ttlSeconds float64
}

// Lease returns the lease name for holder id, who serves at addr, held for ttl after each
// TryAcquire.
func (s *Store) Lease(name, id, addr string, ttl time.Duration) (*Lease, error) {
	if s.Pool() == nil {
		return nil, ErrNoLeases
	}
	// Renewals wait for nobody: under a herd of logins and acknowledgements the store's pool
	// is busy, and a renewal waiting there past 2/3 of the TTL made the only agbot step down.
	cfg := s.Pool().Config()
	cfg.MaxConns, cfg.MinConns = 1, 0
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("lease %s: %w", name, err)
	}
	return &Lease{s: s, pool: pool, name: name, id: id, addr: addr, ttlSeconds: ttl.Seconds()}, nil
}

// Close closes the lease's connection (Release first to give the lease up).
func (l *Lease) Close() { l.pool.Close() }

// TryAcquire takes the lease if it is free or expired, or renews it if l holds it, for the
// lease's TTL from now. It reports whether l holds it, and who does.
func (l *Lease) TryAcquire(ctx context.Context) (bool, Holder, error) {
	var h Holder
	err := l.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, addr, expires)
		VALUES ($1, $2, $3, now() + make_interval(secs => $4))
		ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, addr = EXCLUDED.addr, expires = EXCLUDED.expires
		WHERE leases.holder = EXCLUDED.holder OR leases.expires < now()
		RETURNING holder, addr, expires`, l.name, l.id, l.addr, l.ttlSeconds).Scan(&h.ID, &h.Addr, &h.Expires)
	if err == nil {
		return true, h, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return false, h, fmt.Errorf("lease %s: %w", l.name, err)
	}
	h, err = leaseHolder(ctx, l.pool, l.name)
	return false, h, err
}

// Release gives the lease up if l holds it (a clean shutdown: another agbot takes over at
// its next try instead of after the TTL).
func (l *Lease) Release(ctx context.Context) error {
	_, err := l.pool.Exec(ctx, "DELETE FROM leases WHERE name = $1 AND holder = $2", l.name, l.id)
	return err
}

// LeaseHolder says who holds lease name (ID empty: nobody, or it expired).
func (s *Store) LeaseHolder(ctx context.Context, name string) (Holder, error) {
	if s.Pool() == nil {
		return Holder{}, ErrNoLeases
	}
	return leaseHolder(ctx, s.Pool(), name)
}

func leaseHolder(ctx context.Context, pool *pgxpool.Pool, name string) (Holder, error) {
	var h Holder
	err := pool.QueryRow(ctx, "SELECT holder, addr, expires FROM leases WHERE name = $1 AND expires >= now()", name).Scan(&h.ID, &h.Addr, &h.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Holder{}, nil
	}
	if err != nil {
		return Holder{}, fmt.Errorf("lease %s: %w", name, err)
	}
	return h, nil
}

// Fence makes every later write transaction of s check, under the write lock, that holder id
// still holds lease name, and fail with ErrNotLeader otherwise: an agbot that lost the lease
// (paused, cut off) can never write over its successor's work.
func (s *Store) Fence(name, id string) error {
	b, ok := s.be.(*pgBackend)
	if !ok {
		return ErrNoLeases
	}
	b.fenceName, b.fenceID = name, id
	return nil
}

// checkFence runs inside a write transaction, after the write lock.
func (t *pgTx) checkFence(name, id string) error { return CheckFence(t.ctx, t.tx, name, id) }

// CheckFence fails with ErrNotLeader unless holder id holds lease name, inside tx: the fence
// of writes kept outside the store (the embedded secrets manager's).
func CheckFence(ctx context.Context, tx pgx.Tx, name, id string) error {
	var ok bool
	err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND expires > now())", name, id).Scan(&ok)
	if err != nil {
		return fmt.Errorf("lease check: %w", err)
	}
	if !ok {
		return ErrNotLeader
	}
	return nil
}
