package container

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"

	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

// With a live mode (probed: mount-swap here), an update reaches the running container without
// a restart; onUpdate "signal:SIGHUP" signals it once and "restart" restarts it once.
func TestUpdateLive(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	fs := testFS(t, "")
	if fs.Mode() == secretfs.ModeRestart {
		testenv.Skip(t, "secretfs chose restart mode here: no live update to test")
	}
	ref := testImage(t, cli, "1000:1000", nil)
	uid, gid, err := h.ResolveUser(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	c := canary(t)
	st := h.newStore(t, fs, "store-live", uid, gid,
		secretfs.Secret{Name: "plain", Value: []byte(c + "-plain-1"), Format: secretfs.FormatValueOnly},
		jsonSecret("tok", "tok-key", c+"-tok-1"),
		jsonSecret("cfg", "cfg-key", c+"-cfg-1"),
	)
	got, err := h.Start(ctx, Instance{InstanceID: "agr-live", Service: testService, Containers: []Spec{{
		Name: "app", Image: ref, Store: st,
		Secrets: []Secret{{Name: "plain"}, {Name: "tok", OnUpdate: sighup}, {Name: "cfg", OnUpdate: protocol.OnUpdate{Kind: protocol.OnUpdateRestart}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	id := got[0].ID
	waitLog(t, cli, id, "ready")
	read := func(name, want string) {
		t.Helper()
		for _, p := range []string{"/" + name, DirViewTarget + "/" + name} {
			if out, code := execIn(t, cli, id, "", "cat", p); out != want {
				t.Errorf("%s = %q (exit %d), want %q", p, out, code, want)
			}
		}
	}
	read("plain", c+"-plain-1")
	read("tok", fmt.Sprintf(`{"key":"tok-key","value":"%s-tok-1"}`, c))
	started := inspect(t, cli, id).State.StartedAt

	t.Run("none: new value, no signal, no restart", func(t *testing.T) {
		if err := fs.Update(st.ID, []secretfs.Secret{{Name: "plain", Value: []byte(c + "-plain-2"), Format: secretfs.FormatValueOnly}}); err != nil {
			t.Fatal(err)
		}
		if err := h.AfterUpdate(ctx, "agr-live", []string{"plain"}); err != nil {
			t.Fatal(err)
		}
		read("plain", c+"-plain-2")
		if s := inspect(t, cli, id).State.StartedAt; s != started {
			t.Errorf("StartedAt %s, want %s (no restart)", s, started)
		}
		if k, r := h.rec.n("ContainerKill"), h.rec.n("ContainerRestart"); k != 0 || r != 0 {
			t.Errorf("%d kills and %d restarts for onUpdate none, want 0 and 0", k, r)
		}
	})

	t.Run("signal:SIGHUP: new value and one SIGHUP, no restart", func(t *testing.T) {
		if err := fs.Update(st.ID, []secretfs.Secret{jsonSecret("tok", "tok-key", c+"-tok-2")}); err != nil {
			t.Fatal(err)
		}
		if err := h.AfterUpdate(ctx, "agr-live", []string{"tok"}); err != nil {
			t.Fatal(err)
		}
		waitLog(t, cli, id, "got 1\n") // SIGHUP is signal 1
		read("tok", fmt.Sprintf(`{"key":"tok-key","value":"%s-tok-2"}`, c))
		if s := inspect(t, cli, id).State.StartedAt; s != started {
			t.Errorf("StartedAt %s, want %s (no restart)", s, started)
		}
		if k := h.rec.n("ContainerKill"); k != 1 {
			t.Errorf("%d signals sent, want 1", k)
		}
	})

	t.Run("restart: new value and one restart", func(t *testing.T) {
		t0 := time.Now()
		if err := fs.Update(st.ID, []secretfs.Secret{jsonSecret("cfg", "cfg-key", c+"-cfg-2")}); err != nil {
			t.Fatal(err)
		}
		if err := h.AfterUpdate(ctx, "agr-live", []string{"cfg"}); err != nil {
			t.Fatal(err)
		}
		if s := inspect(t, cli, id).State.StartedAt; s == started {
			t.Errorf("StartedAt still %s after onUpdate restart", s)
		}
		if n := countEvents(t, cli, id, events.ActionStart, t0); n != 1 {
			t.Errorf("%d starts after the update, want 1", n)
		}
		read("cfg", fmt.Sprintf(`{"key":"cfg-key","value":"%s-cfg-2"}`, c))
		read("plain", c+"-plain-2")
	})

	t.Run("unknown agreement", func(t *testing.T) {
		if err := h.AfterUpdate(ctx, "agr-none", []string{"tok"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("AfterUpdate of an unknown agreement = %v, want ErrNotFound", err)
		}
		if err := h.AfterUpdate(ctx, "agr-live", []string{"../x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AfterUpdate with a bad name = %v, want ErrInvalid", err)
		}
	})
}

// In restart mode (forced) a file mount can not change live: AfterUpdate restarts the
// container once, whatever onUpdate says, and it then reads the new value.
func TestUpdateRestartMode(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	fs := testFS(t, secretfs.ModeRestart)
	if fs.Mode() != secretfs.ModeRestart {
		t.Fatalf("secretfs mode %s, want forced restart", fs.Mode())
	}
	ref := testImage(t, cli, "1000:1000", nil)
	c := canary(t)
	st := h.newStore(t, fs, "store-restart", 1000, 1000,
		jsonSecret("tok", "k", c+"-1"), jsonSecret("other", "k", c+"-other"))
	got, err := h.Start(ctx, Instance{InstanceID: "agr-restart", Service: testService, Containers: []Spec{{
		Name: "app", Image: ref, Store: st,
		Secrets: []Secret{{Name: "tok", OnUpdate: sighup}, {Name: "other"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	id := got[0].ID
	want1 := fmt.Sprintf(`{"key":"k","value":"%s-1"}`, c)
	if out, _ := execIn(t, cli, id, "", "cat", "/tok"); out != want1 {
		t.Fatalf("/tok = %q, want %q", out, want1)
	}
	started := inspect(t, cli, id).State.StartedAt

	t0 := time.Now()
	if err := fs.Update(st.ID, []secretfs.Secret{jsonSecret("tok", "k", c+"-2")}); err != nil {
		t.Fatal(err)
	}
	if err := h.AfterUpdate(ctx, "agr-restart", []string{"tok"}); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, cli, id, events.ActionStart, t0); n != 1 {
		t.Errorf("%d starts after the update, want 1", n)
	}
	if s := inspect(t, cli, id).State.StartedAt; s == started {
		t.Errorf("StartedAt still %s: not restarted", s)
	}
	if h.rec.n("ContainerKill") != 0 {
		t.Errorf("signalled as well as restarted")
	}
	want2 := fmt.Sprintf(`{"key":"k","value":"%s-2"}`, c)
	for _, p := range []string{"/tok", DirViewTarget + "/tok"} {
		if out, code := execIn(t, cli, id, "", "cat", p); out != want2 {
			t.Errorf("%s after restart = %q (exit %d), want %q", p, out, code, want2)
		}
	}

	// A change to a secret this container does not mount does nothing.
	restarts := h.rec.n("ContainerRestart")
	if err := h.AfterUpdate(ctx, "agr-restart", []string{"unrelated"}); err != nil {
		t.Fatal(err)
	}
	if h.rec.n("ContainerRestart") != restarts {
		t.Errorf("restarted for a secret it does not mount")
	}
}

var sighup = protocol.OnUpdate{Kind: protocol.OnUpdateSignal, Signal: "SIGHUP"}
