package access

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestVerifierWork: every credential but the one that last logged an identity in costs a
// full argon2id run, an unknown identity included; only that exact credential is answered
// from memory.
func TestVerifierWork(t *testing.T) {
	ctx := context.Background()
	v := NewVerifier(VerifierConfig{Params: CheapParams})
	h1, err := Hash("right", CheapParams)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := Hash("changed", CheapParams)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, id, hash, pw string
		want               bool
		runs               uint64 // argon2id runs this step costs
	}{
		{"unknown identity", "user\x00o/ghost", "", "guess", false, 1},
		{"unknown identity again", "user\x00o/ghost", "", "guess", false, 1},
		{"first login", "user\x00o/u", h1, "right", true, 1},
		{"same credential again", "user\x00o/u", h1, "right", true, 0},
		{"wrong guess after a login", "user\x00o/u", h1, "wrong", false, 1},
		{"the same wrong guess again", "user\x00o/u", h1, "wrong", false, 1},
		{"empty password", "user\x00o/u", h1, "", false, 1},
		{"right password of another identity", "user\x00o/other", h2, "right", false, 1},
		{"old password after a change", "user\x00o/u", h2, "right", false, 1},
		{"new password", "user\x00o/u", h2, "changed", true, 1},
		{"malformed stored hash", "user\x00o/bad", "$argon2id$nope", "x", false, 1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before := v.Runs()
			got, err := v.Check(ctx, s.id, s.hash, s.pw)
			if err != nil || got != s.want {
				t.Fatalf("Check = %v, %v; want %v", got, err, s.want)
			}
			if n := v.Runs() - before; n != s.runs {
				t.Errorf("cost %d argon2id runs, want %d", n, s.runs)
			}
		})
	}
}

// TestVerifierBounds: with every slot taken, checks wait in a bounded queue; one more is
// refused with ErrBusy, as is one that waited MaxWait, and one whose caller gave up.
func TestVerifierBounds(t *testing.T) {
	h, _ := Hash("pw", CheapParams)
	t.Run("queue full", func(t *testing.T) {
		v := NewVerifier(VerifierConfig{Params: CheapParams, Slots: 1, Queue: 1, MaxWait: time.Hour})
		v.slots <- struct{}{} // a run in progress
		done := make(chan error, 1)
		go func() {
			_, err := v.Check(context.Background(), "a", h, "pw")
			done <- err
		}()
		for v.waiting.Load() != 1 {
			time.Sleep(time.Millisecond)
		}
		if _, err := v.Check(context.Background(), "b", h, "pw"); !errors.Is(err, ErrBusy) {
			t.Errorf("a check past the queue: %v, want ErrBusy", err)
		}
		<-v.slots // the run ends: the waiting check gets its turn
		if err := <-done; err != nil {
			t.Errorf("the queued check: %v", err)
		}
		if v.Runs() != 1 {
			t.Errorf("%d argon2id runs, want 1 (the refused check must not run)", v.Runs())
		}
	})
	t.Run("waited too long", func(t *testing.T) {
		v := NewVerifier(VerifierConfig{Params: CheapParams, Slots: 1, MaxWait: time.Millisecond})
		v.slots <- struct{}{}
		if _, err := v.Check(context.Background(), "a", h, "pw"); !errors.Is(err, ErrBusy) {
			t.Errorf("got %v, want ErrBusy", err)
		}
	})
	t.Run("caller gone", func(t *testing.T) {
		v := NewVerifier(VerifierConfig{Params: CheapParams, Slots: 1, MaxWait: time.Hour})
		v.slots <- struct{}{}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := v.Check(ctx, "a", h, "pw"); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
		if v.waiting.Load() != 0 {
			t.Errorf("%d still counted as waiting", v.waiting.Load())
		}
	})
}
