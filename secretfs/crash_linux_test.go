package secretfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// Deterministic kills: the crash hook panics at the n-th crash point of an operation, which
// stops it there as SIGKILL would (no rollback, no Close; only the deferred unlock runs), then a
// fresh FS recovers the same root. Every crash point of Create, Update, Wipe and of recovery
// itself is tried in turn. agreement's TestCrashKill9 does the same with real kills at random
// instants.

type killed struct{ point string }

// killer panics at the n-th crash point it passes once armed.
type killer struct {
	n     int
	seen  int
	armed bool
}

func (k *killer) hook(p string) {
	if !k.armed {
		return
	}
	k.seen++
	if k.seen == k.n {
		panic(killed{p})
	}
}

// run runs op and reports the point it was killed at, or "" when it finished.
func run(t *testing.T, op func() error) (point string) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			k, ok := r.(killed)
			if !ok {
				panic(r)
			}
			point = k.point
		}
	}()
	if err := op(); err != nil {
		t.Fatalf("operation failed (not killed): %v", err)
	}
	return ""
}

// openKillable opens an FS whose operations stop at the n-th crash point (0: never). Its loop
// is stopped, so that nothing but the operation under test touches the root; it is abandoned
// afterwards, never closed (Close would drop the trash, a killed process does not).
func (e *env) openKillable(mode Mode, n int) (*FS, *killer) {
	e.t.Helper()
	k := &killer{n: n}
	f, err := Open(Options{Root: e.root, Mode: mode, Logger: testLogger(e), crashHook: k.hook})
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	f.stopLoop()
	return f, k
}

// recoverRoot opens the root again; with kill > 0 it first runs a recovery that is killed at
// that point and reports false if that recovery finished instead.
func (e *env) recoverRoot(t *testing.T, kill int) (*FS, bool) {
	t.Helper()
	if kill > 0 {
		k := &killer{n: kill, armed: true}
		var f *FS
		point := run(t, func() (err error) {
			f, err = Open(Options{Root: e.root, Logger: testLogger(e), crashHook: k.hook})
			return err
		})
		if point == "" {
			f.Close()
			return nil, false
		}
		t.Logf("recovery killed at %q", point)
	}
	return e.open(""), true
}

// stackDepths returns the depth of every mount point under the root, by path relative to it.
func (e *env) stackDepths() map[string]int {
	out := map[string]int{}
	for _, m := range e.mountsUnder(e.root) {
		if m.Mountpoint != e.root {
			out[strings.TrimPrefix(m.Mountpoint, e.root)]++
		}
	}
	return out
}

// checkShape: nothing stacked twice, nothing in the trash or set aside, want mounts in all
// (-1: mount-stack mode, where publish points grow by design; only the rest is checked).
func (e *env) checkShape(t *testing.T, wantMounts int) {
	t.Helper()
	depths := e.stackDepths()
	n := 0
	for p, d := range depths {
		n += d
		if d > 1 && (wantMounts >= 0 || !under(p, "/publish")) {
			t.Errorf("%s is %d deep, want 1", p, d)
		}
		if under(p, "/trash") || under(p, "/fix") {
			t.Errorf("mount left at %s", p)
		}
	}
	if wantMounts >= 0 && n != wantMounts {
		t.Errorf("%d mounts under the root, want %d: %v", n, wantMounts, depths)
	}
}

func TestKilledUpdate(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			for n := 1; ; n++ {
				finished := false
				t.Run(fmt.Sprint("kill-", n), func(t *testing.T) {
					// kill = 0: a clean recovery; then every crash point of that recovery.
					for kill := 0; ; kill++ {
						if !killedUpdate(t, mode, n, kill, &finished) {
							return
						}
					}
				})
				if finished {
					break
				}
			}
		})
	}
}

// killedUpdate kills an update of a (with containers started on two older versions in mount-swap
// mode) and b at its n-th crash point, recovers (killing the recovery at kill first, when > 0)
// and checks that every point shows the old or the new value of each secret, consistently, in
// the shape an uninterrupted run has. It reports whether there is a further recovery kill
// point to try.
func killedUpdate(t *testing.T, mode Mode, n, kill int, finished *bool) bool {
	e := newEnv(t)
	f, k := e.openKillable(mode, n)
	spec := e.spec("svc", "a", "b")
	st, err := f.Create(spec)
	if err != nil {
		t.Fatal(err)
	}
	val := func(name string, i int) Secret {
		v := canary("kill-"+name, i)
		e.remember(v)
		return Secret{Name: name, Key: name + "-key", Value: v, Format: FormatValueOnly}
	}
	var readers []*nsReader
	for i := 2; i <= 3; i++ {
		if err := f.Update("svc", []Secret{val("a", i)}); err != nil {
			t.Fatal(err)
		}
		if mode == ModeMountSwap {
			readers = append(readers, startNSReader(t, st.Files["a"])) // started with version i
			f.reconcile()
		}
	}
	baseline := len(e.mountsUnder(e.root)) - 1
	k.armed = true
	old := map[string]string{"a": string(canary("kill-a", 3)), "b": want(spec.Secrets[1])}
	nu := map[string]string{"a": string(canary("kill-a", 4)), "b": string(canary("kill-b", 4))}
	point := run(t, func() error { return f.Update("svc", []Secret{val("a", 4), val("b", 4)}) })
	if point == "" {
		*finished = true
		return false
	}
	if kill == 0 {
		t.Logf("update killed after %q", point)
	}

	g, ok := e.recoverRoot(t, kill)
	if !ok {
		return false
	}
	// The test drives reconcile itself: a background pass dropping the trash while checkShape
	// looks made this test flaky on a loaded machine.
	g.stopLoop()
	g.reconcile() // what the loop does milliseconds after Open: feeds containers not fed yet
	stores, err := g.Stores()
	if err != nil || len(stores) != 1 {
		t.Fatalf("Stores after recovery: %v %v", stores, err)
	}
	got := map[string]string{}
	for _, name := range []string{"a", "b"} {
		got[name] = readFile(t, stores[0].Files[name])
		if got[name] != old[name] && got[name] != nu[name] {
			t.Errorf("%s = %q after recovery: neither old %q nor new %q", name, got[name], old[name], nu[name])
		}
		if v := readFile(t, filepath.Join(stores[0].DirView, name)); v != got[name] {
			t.Errorf("%s: directory view %q, file %q", name, v, got[name])
		}
	}
	for i, r := range readers {
		if v := r.read(); v != got["a"] {
			t.Errorf("container started with version %d reads %q, the file %q", i+2, v, got["a"])
		}
	}
	switch mode {
	case ModeMountSwap:
		// The container on version 3 gets a feed mount once version 3 is replaced.
		want := baseline
		if got["a"] == nu["a"] {
			want++
		}
		e.checkShape(t, want)
	case ModeMountStack:
		e.checkShape(t, -1)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The recovered store goes on: a further update reaches every point, the shape holds.
	if err := g.Update("svc", []Secret{val("a", 5), val("b", 5)}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		w := string(canary("kill-"+name, 5))
		if v := readFile(t, stores[0].Files[name]); v != w {
			t.Errorf("%s = %q after a further update, want %q", name, v, w)
		}
		if v := readFile(t, filepath.Join(stores[0].DirView, name)); v != w {
			t.Errorf("%s: directory view %q after a further update, want %q", name, v, w)
		}
	}
	for i, r := range readers {
		if v := r.read(); v != string(canary("kill-a", 5)) {
			t.Errorf("container started with version %d reads %q after a further update", i+2, v)
		}
		if d := r.depth(); d != 2 {
			t.Errorf("container started with version %d: /a is %d deep, want 2", i+2, d)
		}
	}
	if mode == ModeMountSwap {
		g.reconcile()
		e.checkShape(t, baseline+1)
	}
	return true
}

func TestKilledCreate(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			for n := 1; ; n++ {
				e := newEnv(t)
				f, k := e.openKillable(mode, n)
				k.armed = true
				spec := e.spec("svc", "a", "b")
				if point := run(t, func() error { _, err := f.Create(spec); return err }); point == "" {
					break
				} else {
					t.Logf("kill %d: Create killed after %q", n, point)
				}
				g := e.open(mode)
				stores, err := g.Stores()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range stores {
					if err := g.Wipe(s.ID); err != nil {
						t.Fatalf("kill %d: Wipe of the half-created store: %v", n, err)
					}
				}
				if m := e.mountsUnder(filepath.Join(e.root)); len(m) != 1 {
					t.Errorf("kill %d: %d mounts under the root after Wipe, want only the root", n, len(m)-1)
				}
				st, err := g.Create(spec)
				if err != nil {
					t.Fatalf("kill %d: Create again: %v", n, err)
				}
				if v := readFile(t, st.Files["a"]); v != want(spec.Secrets[0]) {
					t.Errorf("kill %d: a = %q after creating again", n, v)
				}
				if mode == ModeMountSwap {
					e.checkShape(t, 5) // store, feed, two publish points, view
				}
			}
		})
	}
}

func TestKilledWipe(t *testing.T) {
	for n := 1; ; n++ {
		e := newEnv(t)
		f, k := e.openKillable(ModeMountSwap, n)
		spec := e.spec("svc", "a", "b")
		st, err := f.Create(spec)
		if err != nil {
			t.Fatal(err)
		}
		startNSReader(t, st.Files["a"])
		f.reconcile()
		if err := f.Update("svc", []Secret{{Name: "a", Value: canary("wipe", 2)}}); err != nil {
			t.Fatal(err)
		}
		k.armed = true
		point := run(t, func() error { return f.Wipe("svc") })
		if point == "" {
			break
		}
		t.Logf("kill %d: Wipe killed after %q", n, point)
		g := e.open("")
		stores, err := g.Stores()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stores {
			if err := g.Wipe(s.ID); err != nil {
				t.Fatalf("kill %d: Wipe again: %v", n, err)
			}
		}
		if m := e.mountsUnder(e.root); len(m) != 1 {
			t.Errorf("kill %d: %d mounts under the root after Wipe, want only the root", n, len(m)-1)
		}
		for _, dir := range []string{"stores", "feed", "publish", "view", "fix"} {
			if entries, _ := os.ReadDir(filepath.Join(e.root, dir)); len(entries) != 0 {
				t.Errorf("kill %d: %s/ still holds %d entries", n, dir, len(entries))
			}
		}
		if _, err := g.Create(spec); err != nil {
			t.Fatalf("kill %d: Create again: %v", n, err)
		}
	}
}

// TestRepairFeedOlderLayers: a feed point holding older layers under the current version (no
// kill leaves it, but recovery must not keep it) comes back one deep, showing the current one.
func TestRepairFeedOlderLayers(t *testing.T) {
	e := newEnv(t)
	f := e.open(ModeMountSwap)
	st, err := f.Create(e.spec("svc", "a"))
	if err != nil {
		t.Fatal(err)
	}
	r := startNSReader(t, st.Files["a"])
	f.reconcile()
	for i := 2; i <= 3; i++ {
		if err := f.Update("svc", []Secret{{Name: "a", Value: canary("older", i), Format: FormatValueOnly}}); err != nil {
			t.Fatal(err)
		}
	}
	// Stack version 2 and then 3 on the feed point of version 1 (which shows 3): [3, 2, 3].
	fp := f.lay.feedPoint("svc", "a", 1)
	for _, g := range []uint64{2, 3} {
		d, err := clone(f.lay.version("svc", "a", g), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.MoveTo(fp, false); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	mounts, _ := linux.SelfMountinfo()
	if d := len(linux.Stack(mounts, fp)); d != 3 {
		t.Fatalf("feed point %d deep before recovery, want 3", d)
	}
	e.open("")
	mounts, _ = linux.SelfMountinfo()
	if d := len(linux.Stack(mounts, fp)); d != 1 {
		t.Errorf("feed point %d deep after recovery, want 1", d)
	}
	if v := r.read(); v != string(canary("older", 3)) {
		t.Errorf("container reads %q, want the current value", v)
	}
}

// TestKilledFirstSwap: a run killed in its very first swaps (trash generation 0, before any
// background pass) leaves nothing behind either.
func TestKilledFirstSwap(t *testing.T) {
	for n := 1; ; n++ {
		e := newEnv(t)
		f, k := e.openKillable(ModeMountSwap, n)
		if _, err := f.Create(e.spec("svc", "a", "b")); err != nil {
			t.Fatal(err)
		}
		k.armed = true
		point := run(t, func() error {
			return f.Update("svc", []Secret{{Name: "a", Value: canary("first", 2)}, {Name: "b", Value: canary("first", 2)}})
		})
		if point == "" {
			break
		}
		g := e.open("")
		g.reconcile()
		e.checkShape(t, 5) // store, feed, two publish points, view
		if t.Failed() {
			t.Fatalf("kill %d (after %q)", n, point)
		}
	}
}
