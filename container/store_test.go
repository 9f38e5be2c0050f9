package container

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// testFS opens a real secretfs under a temporary root ("" mode: probe, as the agent does) and
// unmounts it when the test ends, after every store is wiped.
func testFS(t *testing.T, mode secretfs.Mode) *secretfs.FS {
	t.Helper()
	testenv.RequireRoot(t)
	root := filepath.Join(t.TempDir(), "secrets")
	fs, err := secretfs.Open(secretfs.Options{Root: root, Mode: mode, Logger: testLogger(t, &syncbuf.Buffer{})})
	if err != nil {
		testenv.Skip(t, "secretfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := fs.Close(); err != nil {
			t.Errorf("secretfs close: %v", err)
		}
		// The root tmpfs outlives Close by design (a restarted agent finds its stores).
		unix.Unmount(root, unix.MNT_DETACH)
	})
	return fs
}

// newStore creates a real store owned by uid:gid and, when the test ends, removes the
// worker's containers first and then wipes it.
func (h *harness) newStore(t *testing.T, fs *secretfs.FS, id string, uid, gid int, secrets ...secretfs.Secret) *Store {
	t.Helper()
	st, err := fs.Create(secretfs.Spec{ID: id, UID: uid, GID: gid, Secrets: secrets})
	if err != nil {
		t.Fatalf("secretfs create %s: %v", id, err)
	}
	t.Cleanup(func() {
		sweep(t, h.cli, h.agent)
		if err := fs.Wipe(id); err != nil {
			t.Errorf("secretfs wipe %s: %v", id, err)
		}
	})
	return st
}

// jsonSecret is a secret in the default (anax JSON) format.
func jsonSecret(name, key, v string) secretfs.Secret {
	return secretfs.Secret{Name: name, Key: key, Value: []byte(v)}
}

// countEvents counts the engine's events of action on container id since t0.
func countEvents(t *testing.T, cli *client.Client, id string, action events.Action, t0 time.Time) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stamp := func(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }
	msgs, errs := cli.Events(ctx, events.ListOptions{
		Since: stamp(t0), Until: stamp(time.Now()),
		Filters: filters.NewArgs(filters.Arg("container", id), filters.Arg("event", string(action))),
	})
	n := 0
	for {
		select {
		case <-msgs:
			n++
		case err := <-errs:
			if err != nil && err != io.EOF {
				t.Fatalf("events: %v", err)
			}
			return n
		}
	}
}
