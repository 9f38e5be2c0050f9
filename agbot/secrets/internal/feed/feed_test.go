package feed

import (
	"context"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// recv waits for one change; the timeout only turns a hang into a readable failure.
func recv(t *testing.T, ch <-chan secrets.Change) secrets.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want a change")
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change within 10s")
	}
	return secrets.Change{}
}

func TestCoalescesPerSecretInOrder(t *testing.T) {
	f := New()
	defer f.Close()
	ch := f.Watch(t.Context())
	// Nobody reads while these are published: the publisher must not block, and the watcher
	// then sees a then b, with a's latest kind.
	f.Publish(secrets.Change{Org: "o", Name: "a", Kind: secrets.Updated, Version: 1})
	f.Publish(secrets.Change{Org: "o", Name: "b", Kind: secrets.Updated, Version: 1})
	for v := int64(2); v < 1000; v++ {
		f.Publish(secrets.Change{Org: "o", Name: "a", Kind: secrets.Updated, Version: v})
	}
	f.Publish(secrets.Change{Org: "o", Name: "a", Kind: secrets.Deleted})

	// The run goroutine may already hold the first change (a, version 1) when the rest arrive.
	got := recv(t, ch)
	if got.Name == "a" && got.Kind == secrets.Updated {
		got = recv(t, ch)
		if got.Name == "b" {
			got = recv(t, ch)
			if got.Name != "a" || got.Kind != secrets.Deleted {
				t.Fatalf("third change = %+v, want a deleted", got)
			}
			return
		}
	}
	if got.Name != "a" || got.Kind != secrets.Deleted {
		t.Fatalf("first change = %+v, want a deleted (coalesced)", got)
	}
	if got := recv(t, ch); got.Name != "b" {
		t.Fatalf("second change = %+v, want b", got)
	}
}

func TestEveryWatcherGetsEveryChange(t *testing.T) {
	f := New()
	defer f.Close()
	a, b := f.Watch(t.Context()), f.Watch(t.Context())
	want := secrets.Change{Org: "o", Name: "x", Kind: secrets.Updated, Version: 3}
	f.Publish(want)
	for i, ch := range []<-chan secrets.Change{a, b} {
		if got := recv(t, ch); got != want {
			t.Errorf("watcher %d got %+v, want %+v", i, got, want)
		}
	}
}

func TestChannelClosesOnCancelAndClose(t *testing.T) {
	f := New()
	ctx, cancel := context.WithCancel(t.Context())
	byCtx := f.Watch(ctx)
	byClose := f.Watch(t.Context())
	cancel()
	for range byCtx {
		t.Fatal("change on a cancelled watch")
	}
	f.Close()
	for range byClose {
		t.Fatal("change on a closed feed")
	}
	if _, ok := <-f.Watch(t.Context()); ok {
		t.Fatal("Watch after Close returned an open channel")
	}
	f.Publish(secrets.Change{Org: "o", Name: "x", Kind: secrets.Updated}) // must not panic or block
}
