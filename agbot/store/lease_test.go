package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
)

// testLease: one holder at a time; a holder renews; an expired lease passes to another; a
// fenced writer that lost the lease writes nothing; a released lease is free at once.
func testLease(t *testing.T, be backend) {
	ctx := context.Background()
	a, again := be(t)
	b := again()
	la, _ := a.Lease("fleet", "agbot-a", "https://a", time.Minute)
	t.Cleanup(la.Close)
	lb, _ := b.Lease("fleet", "agbot-b", "https://b", time.Minute)
	t.Cleanup(lb.Close)
	step := func(l *store.Lease, wantHeld bool, wantHolder string) {
		t.Helper()
		held, h, err := l.TryAcquire(ctx)
		if err != nil || held != wantHeld || h.ID != wantHolder {
			t.Fatalf("TryAcquire = %v, %+v, %v; want %v held by %s", held, h, err, wantHeld, wantHolder)
		}
	}
	step(la, true, "agbot-a")
	step(lb, false, "agbot-a")
	step(la, true, "agbot-a") // renewal
	if err := errors.Join(a.Fence("fleet", "agbot-a"), b.Fence("fleet", "agbot-b")); err != nil {
		t.Fatal(err)
	}
	tb := store.NewTable[rec](a, "recs")
	if err := tb.Put("o", "x", rec{N: 1}); err != nil {
		t.Fatalf("holder's write: %v", err)
	}
	if err := store.NewTable[rec](b, "recs").Put("o", "x", rec{N: 2}); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("non-holder's write: %v, want ErrNotLeader", err)
	}
	// a stops renewing (paused, cut off): its lease runs out.
	if _, err := a.Pool().Exec(ctx, "UPDATE leases SET expires = now() - interval '1 second'"); err != nil {
		t.Fatal(err)
	}
	if h, err := b.LeaseHolder(ctx, "fleet"); err != nil || h.ID != "" {
		t.Fatalf("holder of an expired lease = %+v, %v; want none", h, err)
	}
	step(lb, true, "agbot-b")
	step(la, false, "agbot-b")
	if err := tb.Put("o", "x", rec{N: 3}); !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("write of the agbot that lost the lease: %v, want ErrNotLeader", err)
	}
	if got, _ := tb.Get("o", "x"); got.N != 1 {
		t.Fatalf("record = %d, want 1 (no fenced write landed)", got.N)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	step(la, true, "agbot-a")
}

func TestLeaseNeedsPostgres(t *testing.T) {
	s, _ := boltBackend(t)
	if _, err := s.Lease("fleet", "a", "", time.Second); !errors.Is(err, store.ErrNoLeases) {
		t.Fatalf("Lease on bbolt: %v, want ErrNoLeases", err)
	}
	if err := s.Fence("fleet", "a"); !errors.Is(err, store.ErrNoLeases) {
		t.Fatalf("Fence on bbolt: %v, want ErrNoLeases", err)
	}
}
