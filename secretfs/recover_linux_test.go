package secretfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mountLines(snapshot []string) []string {
	var out []string
	for _, l := range snapshot {
		if strings.HasPrefix(l, "mount ") {
			out = append(out, l)
		}
	}
	return out
}

// TestRecovery: stores made in every mode by one FS are found by the next one on the same root,
// with the same paths and mounts (nothing mounted twice), and still update and wipe.
func TestRecovery(t *testing.T) {
	e := newEnv(t)
	specs := map[Mode]Spec{}
	want1 := map[string]*Store{}
	for _, mode := range allModes {
		f := e.open(mode)
		spec := e.spec("svc-"+string(mode), "a", "b")
		st, err := f.Create(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Update(spec.ID, []Secret{{Name: "a", Value: canary("recover", 2), Format: FormatValueOnly}}); err != nil {
			t.Fatal(err)
		}
		specs[mode] = spec
		want1[spec.ID] = st
		f.Close()
	}
	before := e.snapshot()

	g := e.open("")
	stores, err := g.Stores()
	if err != nil {
		t.Fatal(err)
	}
	if len(stores) != len(allModes) {
		t.Fatalf("recovered %d stores, want %d", len(stores), len(allModes))
	}
	for _, got := range stores {
		w := want1[got.ID]
		if w == nil {
			t.Errorf("recovered unknown store %q", got.ID)
			continue
		}
		if got.Mode != w.Mode || got.DirView != w.DirView || len(got.Files) != len(w.Files) {
			t.Errorf("recovered %+v, want %+v", got, w)
		}
		for name, p := range w.Files {
			if got.Files[name] != p {
				t.Errorf("%s/%s: recovered path %q, want %q", got.ID, name, got.Files[name], p)
			}
		}
		if got := readFile(t, w.Files["a"]); got != string(canary("recover", 2)) {
			t.Errorf("%s/a = %q after recovery", w.ID, got)
		}
	}
	g.reconcile() // may remove replaced versions and view directories; must not touch mounts
	if b, a := mountLines(before), mountLines(e.snapshot()); !slices.Equal(b, a) {
		t.Errorf("recovery changed the mounts:\n%s", diff(b, a))
	}

	// The recovered stores keep working: the right owner, the next version number, live mounts.
	for mode, spec := range specs {
		v := canary("recover", 3)
		if err := g.Update(spec.ID, []Secret{{Name: "a", Value: v, Format: FormatValueOnly}, {Name: "b", Key: "kb", Value: v}}); err != nil {
			t.Fatalf("%s: Update after recovery: %v", mode, err)
		}
		st := want1[spec.ID]
		if got := readFile(t, st.Files["a"]); got != string(v) {
			t.Errorf("%s: a = %q after update", mode, got)
		}
		if got := readFile(t, filepath.Join(st.DirView, "b")); got != want(Secret{Key: "kb", Value: v}) {
			t.Errorf("%s: view b = %q after update", mode, got)
		}
		if _, err := os.Stat(g.lay.version(spec.ID, "a", 3)); err != nil {
			t.Errorf("%s: version 3 of a: %v (version numbering not recovered)", mode, err)
		}
		if perm, uid, gid := owner(t, g.lay.version(spec.ID, "a", 3)); perm != 0o400 || uid != 1000 || gid != 1001 {
			t.Errorf("%s: new version mode %v owner %d:%d, want 0400 1000:1001", mode, perm, uid, gid)
		}
		if err := g.Wipe(spec.ID); err != nil {
			t.Errorf("%s: Wipe of a recovered store: %v", mode, err)
		}
	}
	if got := e.mountsUnder(filepath.Join(e.root, "stores")); len(got) != 0 {
		t.Errorf("mounts left after wiping recovered stores: %+v", got)
	}
}

// holdFirstVersion opens an FS in mode with store svc1 of one secret a, and opens a's first
// version file as a reader that opened it just before a swap would (closed at the test's end).
func (e *env) holdFirstVersion(mode Mode) (*FS, *os.File) {
	e.t.Helper()
	f := e.openGrace(mode, time.Hour) // "within the grace" whatever the machine's load
	if _, err := f.Create(e.spec("svc1", "a")); err != nil {
		e.t.Fatal(err)
	}
	held, err := os.Open(f.lay.version("svc1", "a", 1))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { held.Close() })
	return f, held
}

// TestRecoveryKeepsTheGrace: a version the previous run replaced just before it died is not
// zeroed by the next run's first pass: a reader that opened it before the swap still reads
// it whole during the grace (an agent killed and restarted within a second once gave a
// container an empty read), and the garbage goes once the grace has passed.
func TestRecoveryKeepsTheGrace(t *testing.T) {
	for _, mode := range []Mode{ModeMountSwap, ModeMountStack} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f, held := e.holdFirstVersion(mode)
			if err := f.Update("svc1", []Secret{{Name: "a", Value: canary("grace", 2)}}); err != nil {
				t.Fatal(err)
			}
			f.Close() // the run dies right after the swap, within the grace

			g := e.openGrace("", time.Hour)
			g.reconcile()
			b := make([]byte, 64)
			if n, _ := held.ReadAt(b, 0); n == 0 || b[0] == 0 {
				t.Errorf("the next run zeroed version 1 within the grace (read %d bytes)", n)
			}
			oldView := filepath.Join(g.lay.view("svc1"), viewGenName(1))
			if _, err := os.Stat(filepath.Join(oldView, "a")); err != nil {
				t.Errorf("the next run removed the replaced view within the grace: %v", err)
			}
			g.mu.Lock()
			g.grace = 0
			g.mu.Unlock()
			g.reconcile()
			if n, _ := held.ReadAt(b, 0); n != 0 {
				t.Errorf("version 1 still holds %q after the grace", b[:n])
			}
			if _, err := os.Stat(oldView); !os.IsNotExist(err) {
				t.Errorf("replaced view after the grace: %v, want it removed", err)
			}
		})
	}
}

// TestGarbage: replaced versions nobody uses are zeroed and removed after the grace; the current
// one stays. Open files of a replaced version read zeros afterwards, never a mix.
func TestGarbage(t *testing.T) {
	for _, mode := range []Mode{ModeMountSwap, ModeMountStack} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f, held := e.holdFirstVersion(mode)
			for i := 2; i <= 3; i++ {
				if err := f.Update("svc1", []Secret{{Name: "a", Value: canary("gc", i)}}); err != nil {
					t.Fatal(err)
				}
			}
			f.reconcile()
			// Within the grace nothing replaced is zeroed: a reader may still be reading it.
			if b := make([]byte, 64); true {
				n, _ := held.ReadAt(b, 0)
				if n == 0 || b[0] == 0 {
					t.Errorf("version 1 was zeroed within the grace")
				}
			}
			f.mu.Lock()
			f.grace = 0
			f.mu.Unlock()
			f.reconcile()
			b := make([]byte, 64)
			if n, _ := held.ReadAt(b, 0); n != 0 {
				t.Errorf("replaced version still holds %q after the grace", b[:n])
			}
			entries, err := os.ReadDir(filepath.Join(f.lay.store("svc1"), "v", "a"))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, en := range entries {
				names = append(names, en.Name())
			}
			wantNames := []string{"3"}
			if mode == ModeMountStack {
				wantNames = []string{"1", "2", "3"} // covered layers stay mounted, zeroed
			}
			if !slices.Equal(names, wantNames) {
				t.Errorf("versions left: %v, want %v", names, wantNames)
			}
			view, _ := os.ReadDir(f.lay.view("svc1"))
			for _, en := range view {
				if g, ok := parseViewGen(en.Name()); ok && g != 3 {
					t.Errorf("replaced view directory %s not removed", en.Name())
				}
			}
			if got := readFile(t, f.public(f.stores["svc1"]).Files["a"]); got != want(Secret{Value: canary("gc", 3)}) {
				t.Errorf("current value = %q", got)
			}
		})
	}
}

// TestBackgroundGarbage: without any explicit call, the background loop removes what a burst of
// updates replaced.
func TestBackgroundGarbage(t *testing.T) {
	e := newEnv(t)
	f := e.open(ModeMountSwap)
	f.mu.Lock()
	f.grace = 0
	f.mu.Unlock()
	if _, err := f.Create(e.spec("svc1", "a")); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 50; i++ {
		if err := f.Update("svc1", []Secret{{Name: "a", Value: canary("bg", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(f.lay.store("svc1"), "v", "a")
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 1 && entries[0].Name() == "50" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, %d versions left in %s, want only 50", len(entries), dir)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
