package container

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/dockertest"
)

// TestHoldersFollowTheEngine: secretfs learns each store's running container and its init PID
// from the worker (issue 11: scanning every process's namespace needed CAP_SYS_PTRACE). The
// answer must be "not known" whenever it can not be sure: before the first list, and while the
// container restarts; and the PID must follow a restart by the worker and by the engine.
// HoldersVersion must change with every one of these changes (secretfs then looks at every
// store again; while it stays the same, secretfs skips the stores that are settled).
func TestHoldersFollowTheEngine(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	if _, known := h.Holders("store-held"); known {
		t.Fatal("Holders answered known before the worker listed its containers")
	}
	fs := testFS(t, "")
	st := h.newStore(t, fs, "store-held", 1000, 1000, jsonSecret("tok", "k", canary(t)))

	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { h.TrackHolders(tctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	version := h.HoldersVersion()
	changed := func(what string) { t.Helper(); version = checkVersionChanged(t, h, version, what) }
	wantPID := func(what, id string) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			pid := inspect(t, cli, id).State.Pid
			got, known := h.Holders("store-held")
			if known && len(got) == 1 && got[0].PID == pid && got[0].Container == id {
				changed(what)
				return
			}
			last = fmt.Sprintf("known=%v holders=%+v, engine pid %d", known, got, pid)
		}
		t.Fatalf("%s: %s", what, last)
	}

	started, err := h.Start(ctx, Instance{InstanceID: "agr-held", Service: testService, Containers: []Spec{
		{Name: "main", Image: ref, Secrets: []Secret{{Name: "tok"}}, Store: st}}})
	if err != nil {
		t.Fatal(err)
	}
	id := started[0].ID
	wantPID("after Start", id)
	if got, known := h.Holders("another-store"); !known || len(got) != 0 {
		t.Errorf("a store no container uses: %+v known=%v, want none, known", got, known)
	}

	before := inspect(t, cli, id).State.Pid
	if err := h.Restart(ctx, "agr-held"); err != nil {
		t.Fatal(err)
	}
	wantPID("after the worker restarted it", id)
	if after := inspect(t, cli, id).State.Pid; after == before {
		t.Errorf("restart kept pid %d", after)
	}

	// The process dies on its own (killed from the host, as a crash): the engine restarts it
	// (restart policy unless-stopped) and the PID follows.
	before = inspect(t, cli, id).State.Pid
	if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pid := inspect(t, cli, id).State.Pid; pid != before && pid != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine did not restart the container")
		}
	}
	wantPID("after the engine restarted it", id)

	if err := h.Stop(ctx, "agr-held"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got, known := h.Holders("store-held"); known && len(got) == 0 {
			changed("after Stop")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after Stop the store still has holders or is unknown")
		}
	}
}

// checkVersionChanged checks that the worker's HoldersVersion moved on from was; it returns
// the version now.
func checkVersionChanged(t *testing.T, h *harness, was uint64, what string) uint64 {
	t.Helper()
	v := h.HoldersVersion()
	if v == was {
		t.Errorf("%s: HoldersVersion stayed %d", what, v)
	}
	return v
}
