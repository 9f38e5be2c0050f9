package container

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
	"github.com/edge-secrets/anax-agent/test/dockertest"
	"github.com/edge-secrets/anax-agent/test/syncbuf"
)

var testService = Service{Org: "testorg", URL: "https://example.com/svc", Version: "1.2.3"}

func bg(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A container running as 1000:1000 reads its 0400 secret at both paths; a container of another
// uid mounting the same store can not; neither can write; no value in inspect, env, labels or
// the worker's log.
func TestSecretReadableOnlyByOwner(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	intruderRef := testImage(t, cli, "2000:2000", nil)

	uid, gid, err := h.ResolveUser(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	if uid != 1000 || gid != 1000 {
		t.Fatalf("ResolveUser(image USER 1000:1000) = %d:%d, want 1000:1000", uid, gid)
	}
	fs := testFS(t, "")
	needle := canary(t)
	value := `{"key":"k","value":"` + needle + `"}`
	st := h.newStore(t, fs, "store-owner", uid, gid, jsonSecret("db_token", "k", needle))

	got, err := h.Start(ctx, Instance{InstanceID: "agr-read", Service: testService, Containers: []Spec{
		{Name: "owner", Image: ref, Env: map[string]string{"GREETING": "hello"}, Secrets: []Secret{{Name: "db_token"}}, Store: st},
		{Name: "intruder", Image: intruderRef, Secrets: []Secret{{Name: "db_token"}}, Store: st},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Spec != "owner" || got[1].Spec != "intruder" {
		t.Fatalf("Start returned %+v, want owner and intruder", got)
	}
	owner, intruder := got[0].ID, got[1].ID

	for _, p := range []string{"/db_token", "/open-horizon-secrets/db_token"} {
		t.Run("owner reads "+p, func(t *testing.T) {
			if out, code := execIn(t, cli, owner, "", "cat", p); code != 0 || out != value {
				t.Errorf("owner cat %s = %q (exit %d), want the secret", p, out, code)
			}
			out, _ := execIn(t, cli, owner, "", "stat", p)
			if want := "uid=1000 gid=1000 mode=400\n"; out != want {
				t.Errorf("stat %s = %q, want %q", p, out, want)
			}
		})
		t.Run("intruder can not read "+p, func(t *testing.T) {
			out, code := execIn(t, cli, intruder, "", "cat", p)
			if code == 0 {
				t.Fatalf("uid 2000 read %s: %q", p, out)
			}
			mustContain(t, "intruder cat", out, "permission denied")
		})
		for who, id := range map[string]string{"owner": owner, "intruder": intruder} {
			t.Run(who+" can not write "+p, func(t *testing.T) {
				out, code := execIn(t, cli, id, "", "write", p)
				if code == 0 {
					t.Fatalf("%s opened %s for writing: %q", who, p, out)
				}
			})
		}
		t.Run("root in the container can not read or write "+p, func(t *testing.T) {
			// Every capability is dropped, CAP_DAC_OVERRIDE with them: container root is held
			// by the file's mode like anyone else (and the mount is read-only, see inspect).
			if out, code := execIn(t, cli, owner, "0:0", "cat", p); code == 0 {
				t.Errorf("root read %s: %q", p, out)
			} else {
				mustContain(t, "root cat", out, "permission denied")
			}
			if out, code := execIn(t, cli, owner, "0:0", "write", p); code == 0 {
				t.Errorf("root opened %s for writing: %q", p, out)
			}
		})
	}
	t.Run("owner can not add to the directory view", func(t *testing.T) {
		if out, code := execIn(t, cli, owner, "", "create", "/open-horizon-secrets/extra"); code == 0 {
			t.Fatalf("created a file in the view: %q", out)
		}
	})

	t.Run("no value in inspect, env, labels or log", func(t *testing.T) {
		for _, id := range []string{owner, intruder} {
			c, raw, err := cli.ContainerInspectWithRaw(context.Background(), id, false)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), needle) {
				t.Errorf("docker inspect %s shows the secret value", id)
			}
			mustContain(t, "inspect", string(raw), `"Target":"/db_token"`)
			for _, m := range c.Mounts {
				if m.Destination == "/db_token" && (m.RW || st.Mode != secretfs.ModeRestart && m.Propagation != "rslave") {
					t.Errorf("mount /db_token: RW=%v propagation=%q, want read-only rslave (store mode %s)", m.RW, m.Propagation, st.Mode)
				}
				if m.Destination == DirViewTarget && m.RW {
					t.Errorf("mount %s is writable", DirViewTarget)
				}
			}
			if p := c.HostConfig.RestartPolicy.Name; p != "unless-stopped" {
				t.Errorf("restart policy %q, want unless-stopped", p)
			}
			if c.Config.Labels[labelSecrets] != "db_token" || c.Config.Labels[labelStore] != "store-owner" {
				t.Errorf("labels %v: want secrets=db_token store=store-owner", c.Config.Labels)
			}
			if id == owner && !strings.Contains(strings.Join(c.Config.Env, " "), "GREETING=hello") {
				t.Errorf("env %v: want GREETING=hello", c.Config.Env)
			}
		}
		for _, ref := range []string{ref, intruderRef} {
			var raw bytes.Buffer
			if _, err := cli.ImageInspect(context.Background(), ref, client.ImageInspectWithRawResponse(&raw)); err != nil {
				t.Fatal(err)
			}
			if raw.Len() == 0 || strings.Contains(raw.String(), needle) {
				t.Errorf("docker image inspect %s: %d bytes, shows the secret value: %v", ref, raw.Len(), strings.Contains(raw.String(), needle))
			}
		}
		if strings.Contains(h.logs.String(), needle) {
			t.Errorf("the worker logged the secret value")
		}
		if h.logs.String() == "" {
			t.Errorf("the worker logged nothing: the log check proves nothing")
		}
		if out, _ := execIn(t, cli, owner, "", "cat", "/proc/self/environ"); strings.Contains(out, needle) || !strings.Contains(out, "GREETING=hello") {
			t.Errorf("the container's environment %q: want GREETING=hello and no secret value", out)
		}
	})

	if err := h.Stop(ctx, "agr-read"); err != nil {
		t.Fatal(err)
	}
	if n := countContainers(t, cli, h.agent); n != 0 {
		t.Errorf("%d containers left after Stop, want 0", n)
	}
	if err := h.Stop(ctx, "agr-read"); err != nil {
		t.Errorf("second Stop: %v, want nil (idempotent)", err)
	}
}

// A named image user resolves through the image's own passwd and group and gets the files.
func TestNamedImageUser(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	files := map[string][]byte{
		"etc/passwd": []byte("root:x:0:0:root:/:/prog\nappuser:x:1234:2345::/:/prog\n"),
		"etc/group":  []byte("root:x:0:\nappgroup:x:2345:appuser\nstaff:x:3456:appuser\n"),
	}
	ref := testImage(t, cli, "appuser", files)
	ghostRef := testImage(t, cli, "ghost", files)

	tests := []struct {
		name, image, user string
		wantUID, wantGID  int
		wantErr           error
	}{
		{name: "image USER name", image: ref, wantUID: 1234, wantGID: 2345},
		{name: "service user name:group", image: ref, user: "appuser:staff", wantUID: 1234, wantGID: 3456},
		{name: "service uid uses passwd gid", image: ref, user: "1234", wantUID: 1234, wantGID: 2345},
		{name: "service uid:gid needs no lookup", image: ref, user: "77:88", wantUID: 77, wantGID: 88},
		{name: "unknown service user", image: ref, user: "nobody", wantErr: ErrUserNotFound},
		{name: "unknown group", image: ref, user: "appuser:wheel", wantErr: ErrUserNotFound},
		{name: "unknown image USER", image: ghostRef, wantErr: ErrUserNotFound},
		{name: "image without passwd", image: testImage(t, cli, "someone", nil), wantErr: ErrUserNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, err := h.ResolveUser(ctx, tc.image, tc.user)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ResolveUser = %d:%d, %v; want %v", uid, gid, err, tc.wantErr)
				}
				t.Logf("error as reported: %v", err)
				return
			}
			if err != nil || uid != tc.wantUID || gid != tc.wantGID {
				t.Fatalf("ResolveUser = %d:%d, %v; want %d:%d", uid, gid, err, tc.wantUID, tc.wantGID)
			}
		})
	}
	if n := countContainers(t, cli, h.agent); n != 0 {
		t.Errorf("%d probe containers left behind, want 0", n)
	}

	uid, gid, err := h.ResolveUser(ctx, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	st := h.newStore(t, testFS(t, ""), "store-named", uid, gid, jsonSecret("api_key", "k", canary(t)))
	got, err := h.Start(ctx, Instance{InstanceID: "agr-named", Service: testService, Containers: []Spec{
		{Name: "app", Image: ref, Secrets: []Secret{{Name: "api_key"}}, Store: st},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := execIn(t, cli, got[0].ID, "", "id"); out != "1234:2345\n" {
		t.Errorf("process runs as %q, want 1234:2345", out)
	}
	if out, _ := execIn(t, cli, got[0].ID, "", "stat", "/api_key"); out != "uid=1234 gid=2345 mode=400\n" {
		t.Errorf("stat /api_key = %q, want uid=1234 gid=2345 mode=400", out)
	}
	if _, code := execIn(t, cli, got[0].ID, "", "cat", "/api_key"); code != 0 {
		t.Errorf("appuser can not read its secret")
	}
}

// Hostile or broken requests are refused before the engine is asked for anything.
func TestRefusedBeforeDocker(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	store := func(names ...string) *Store {
		st := &Store{ID: "s1", Mode: "mount-swap", Files: map[string]string{}, DirView: "/nonexistent/view"}
		for _, n := range names {
			st.Files[n] = "/nonexistent/files/" + n
		}
		return st
	}
	one := func(s Spec) Instance {
		if s.Name == "" {
			s.Name = "c"
		}
		if s.Image == "" {
			s.Image = ref
		}
		return Instance{InstanceID: "agr", Service: testService, Containers: []Spec{s}}
	}
	secret := func(name string) Spec {
		return Spec{Secrets: []Secret{{Name: name}}, Store: store(name)}
	}
	tests := []struct {
		name    string
		inst    Instance
		wantMsg string
	}{
		{"reserved etc", one(secret("etc")), "reserved"},
		{"reserved view", one(secret("open-horizon-secrets")), "reserved"},
		{"reserved proc", one(secret("proc")), "reserved"},
		{"traversal", one(secret("../etc/shadow")), "must not start with '.'"},
		{"slash", one(secret("a/b")), "is not one of"},
		{"hidden", one(secret(".env")), "must not start with '.'"},
		{"empty secret name", one(secret("")), "must not be empty"},
		{"dockerenv", one(secret(".dockerenv")), "must not start with '.'"},
		{"duplicate secret", one(Spec{Secrets: []Secret{{Name: "a"}, {Name: "a"}}, Store: store("a")}), "declared twice"},
		{"bad onUpdate", one(Spec{Secrets: []Secret{{Name: "a", OnUpdate: protocol.OnUpdate{Kind: protocol.OnUpdateSignal, Signal: "SIGKILL"}}}, Store: store("a")}), "onUpdate"},
		{"no store", one(Spec{Secrets: []Secret{{Name: "a"}}}), "no store"},
		{"store lacks a file", one(Spec{Secrets: []Secret{{Name: "a"}}, Store: store("b")}), `no file for secret "a"`},
		{"store has an undeclared file", one(Spec{Secrets: []Secret{{Name: "a"}}, Store: store("a", "b")}), `undeclared secret "b"`},
		{"relative store path", one(Spec{Secrets: []Secret{{Name: "a"}}, Store: &Store{ID: "s", Files: map[string]string{"a": "rel/a"}, DirView: "/v"}}), "clean absolute path"},
		{"env key with =", one(Spec{Env: map[string]string{"A=B": "x"}}), "env key"},
		{"empty env key", one(Spec{Env: map[string]string{"": "x"}}), "env key"},
		{"bad container name", one(Spec{Name: "../x"}), "container name"},
		{"bad agreement id", Instance{InstanceID: "a b", Service: testService, Containers: []Spec{{Name: "c", Image: ref}}}, "agreement id"},
		{"no service url", Instance{InstanceID: "a", Service: Service{Org: "o"}, Containers: []Spec{{Name: "c", Image: ref}}}, "service org and url"},
		{"no containers", Instance{InstanceID: "a", Service: testService}, "no containers"},
		{"duplicate container", Instance{InstanceID: "a", Service: testService, Containers: []Spec{{Name: "c", Image: ref}, {Name: "c", Image: ref}}}, "declared twice"},
		{"one bad of two", Instance{InstanceID: "a", Service: testService, Containers: []Spec{{Name: "ok", Image: ref}, {Name: "bad", Image: ref, Secrets: []Secret{{Name: "usr"}}, Store: store("usr")}}}, "reserved"},
	}
	before := countContainers(t, cli, h.agent)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := h.rec.total()
			got, err := h.Start(ctx, tc.inst)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Start = %v, %v; want ErrInvalid", got, err)
			}
			mustContain(t, "error", err.Error(), tc.wantMsg)
			if n := h.rec.total() - calls; n != 0 {
				t.Errorf("%d engine calls before refusing, want 0 (%v)", n, h.rec.calls)
			}
		})
	}
	if after := countContainers(t, cli, h.agent); after != before {
		t.Errorf("containers: %d before, %d after, want no change", before, after)
	}
}

// An absent image with no reachable registry is a clear error and creates nothing.
func TestImageNotPresent(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := "anax-test-container-absent:never-built"
	_, err := h.Start(ctx, Instance{InstanceID: "agr", Service: testService, Containers: []Spec{{Name: "c", Image: ref}}})
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("Start with an absent image = %v, want ErrImageNotFound", err)
	}
	mustContain(t, "error", err.Error(), "not present locally and could not be pulled")
	if n := h.rec.n("ContainerCreate"); n != 0 {
		t.Errorf("%d containers created, want 0", n)
	}
	if _, _, err := h.ResolveUser(ctx, ref, ""); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("ResolveUser with an absent image = %v, want ErrImageNotFound", err)
	}
}

// A container that fails to start (its store is gone) is removed with the ones before it.
func TestStartRollsBack(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	gone := &Store{ID: "gone", Mode: "mount-swap", Files: map[string]string{"tok": "/nonexistent/anax-test/tok"}, DirView: "/nonexistent/anax-test/view"}
	_, err := h.Start(ctx, Instance{InstanceID: "agr-rollback", Service: testService, Containers: []Spec{
		{Name: "first", Image: ref},
		{Name: "second", Image: ref, Secrets: []Secret{{Name: "tok"}}, Store: gone},
	}})
	if err == nil {
		t.Fatal("Start with a missing store file succeeded")
	}
	t.Logf("error as reported: %v", err)
	if h.rec.n("ContainerStart") == 0 {
		t.Fatal("nothing was started, so nothing was rolled back: the test proves nothing")
	}
	if n := countContainers(t, cli, h.agent); n != 0 {
		t.Errorf("%d containers left after a failed Start, want 0", n)
	}
}

// A new worker with the same agent id lists what the last one started; another agent sees none.
func TestRecovery(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	st := h.newStore(t, testFS(t, ""), "store-rec", 1000, 1000, jsonSecret("tok", "k", canary(t)))
	for _, inst := range []Instance{
		{InstanceID: "agr-1", Service: testService, Containers: []Spec{
			{Name: "web", Image: ref, Secrets: []Secret{{Name: "tok", OnUpdate: protocol.OnUpdate{Kind: protocol.OnUpdateSignal, Signal: "SIGHUP"}}}, Store: st},
			{Name: "worker", Image: ref, Command: []string{"exit", "0"}}}},
		{InstanceID: "agr-2", Service: Service{Org: "o2", URL: "svc2", Version: "2.0.0"}, Containers: []Spec{
			{Name: "web", Image: ref}}},
	} {
		if _, err := h.Start(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}

	// Starting an agreement again fails on the engine's name check and removes only what that
	// call created.
	if _, err := h.Start(ctx, Instance{InstanceID: "agr-2", Service: testService, Containers: []Spec{{Name: "web", Image: ref}}}); err == nil {
		t.Error("starting agr-2 twice succeeded")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// A new worker on a client of its own, as after an agent restart.
	again, err := NewFromEnv(Options{AgentID: h.agent, StopTimeout: 2 * time.Second, Logger: testLogger(t, &syncbuf.Buffer{})})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	list, err := again.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Container{}
	for _, c := range list {
		byName[c.Name] = c
	}
	want := map[string]Container{
		"agr-1-web":    {InstanceID: "agr-1", Service: testService, Spec: "web", StoreID: "store-rec", Secrets: []string{"tok"}},
		"agr-1-worker": {InstanceID: "agr-1", Service: testService, Spec: "worker"},
		"agr-2-web":    {InstanceID: "agr-2", Service: Service{Org: "o2", URL: "svc2", Version: "2.0.0"}, Spec: "web"},
	}
	if len(list) != len(want) {
		t.Fatalf("List = %+v, want %d containers", list, len(want))
	}
	for name, w := range want {
		g, ok := byName[name]
		if !ok {
			t.Errorf("List lacks %s", name)
			continue
		}
		if g.ID == "" || g.State == "" || g.InstanceID != w.InstanceID || g.Service != w.Service || g.Spec != w.Spec ||
			g.StoreID != w.StoreID || strings.Join(g.Secrets, ",") != strings.Join(w.Secrets, ",") {
			t.Errorf("List %s = %+v, want %+v", name, g, w)
		}
	}
	if s := byName["agr-1-web"].State; s != "running" {
		t.Errorf("agr-1-web state %q, want running", s)
	}

	other := testWorker(t, cli)
	if l, err := other.List(ctx); err != nil || len(l) != 0 {
		t.Errorf("another agent's List = %v, %v; want nothing", l, err)
	}
	if err := other.Stop(ctx, "agr-1"); err != nil {
		t.Errorf("another agent's Stop: %v", err)
	}
	if l, _ := again.List(ctx); len(l) != 3 {
		t.Errorf("another agent's Stop removed our containers: %d left, want 3", len(l))
	}

	if err := again.Stop(ctx, "agr-1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := again.List(ctx); len(l) != 1 || l[0].InstanceID != "agr-2" {
		t.Errorf("after Stop(agr-1) List = %+v, want agr-2 only", l)
	}
}

// Watch reports a container that dies on its own, not one the worker stops.
func TestWatchReportsDeaths(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	started := map[string]Container{}
	for _, agr := range []string{"agr-die", "agr-stop"} {
		got, err := h.Start(ctx, Instance{InstanceID: agr, Service: testService, Containers: []Spec{{Name: "web", Image: ref}}})
		if err != nil {
			t.Fatal(err)
		}
		started[agr] = got[0]
		waitLog(t, cli, got[0].ID, "ready")
	}

	wctx, cancel := context.WithCancel(ctx)
	deaths := make(chan Death, 16)
	done := make(chan error, 1)
	go func() { done <- h.Watch(wctx, func(d Death) { deaths <- d }) }()
	// Watch asks for events since it was called, so once it has called the engine nothing
	// that follows can be missed.
	for h.rec.n("Events") == 0 {
		time.Sleep(10 * time.Millisecond)
	}

	// 1. The worker stops one and restarts the other: no report. 2. Something else kills the
	// second: reported. The first report must therefore be the kill.
	if err := h.Stop(ctx, "agr-stop"); err != nil {
		t.Fatal(err)
	}
	before := inspect(t, cli, started["agr-die"].ID).State.StartedAt
	if err := h.Restart(ctx, "agr-die"); err != nil {
		t.Fatal(err)
	}
	if after := inspect(t, cli, started["agr-die"].ID).State.StartedAt; after == before {
		t.Errorf("Restart: StartedAt still %s", after)
	}
	if err := h.Restart(ctx, "agr-stop"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Restart of a stopped agreement = %v, want ErrNotFound", err)
	}
	if err := cli.ContainerKill(ctx, started["agr-die"].ID, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deaths:
		if d.ID != started["agr-die"].ID || d.InstanceID != "agr-die" || d.Spec != "web" || d.ExitCode != 137 || d.Name != "agr-die-web" {
			t.Errorf("Death = %+v, want agr-die-web with exit code 137", d)
		}
	case err := <-done:
		t.Fatalf("Watch returned %v", err)
	case <-ctx.Done():
		t.Fatal("no death reported")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel = %v, want context.Canceled", err)
	}
}

// A container that ignores SIGTERM is killed after StopTimeout and removed all the same.
func TestStopStubborn(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	got, err := h.Start(ctx, Instance{InstanceID: "agr-stubborn", Service: testService, Containers: []Spec{
		{Name: "a", Image: ref, Command: []string{"stubborn"}}, {Name: "b", Image: ref}}})
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, cli, got[0].ID, "ready")
	if s := inspect(t, cli, got[0].ID).State; !s.Running {
		t.Fatalf("the stubborn container is not running (%s): the test proves nothing", s.Status)
	}
	if err := h.Stop(ctx, "agr-stubborn"); err != nil {
		t.Fatal(err)
	}
	if n := countContainers(t, cli, h.agent); n != 0 {
		t.Errorf("%d containers left after Stop, want 0", n)
	}
}
