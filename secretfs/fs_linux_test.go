package secretfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
)

// snapshot lists every path and every mount under the root, to check that a refused or failed
// call left nothing behind.
func (e *env) snapshot() []string {
	e.t.Helper()
	var out []string
	// The trash holds replaced publish-point mounts until the background loop detaches them:
	// an implementation detail that changes at any time.
	trash := filepath.Join(e.root, "trash")
	filepath.WalkDir(e.root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != e.root && !under(path, trash) && !under(path, filepath.Join(e.root, ".probe")) {
			out = append(out, "path "+strings.TrimPrefix(path, e.root))
		}
		return nil
	})
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range mounts {
		if under(m.Mountpoint, e.root) && m.Mountpoint != e.root && !under(m.Mountpoint, trash) {
			out = append(out, fmt.Sprintf("mount %s root=%s", strings.TrimPrefix(m.Mountpoint, e.root), m.Root))
		}
	}
	slices.Sort(out)
	return out
}

// diff returns the lines only in a and only in b, for readable failures.
func diff(a, b []string) string {
	in := func(xs []string, x string) bool { return slices.Contains(xs, x) }
	var out []string
	for _, x := range a {
		if !in(b, x) {
			out = append(out, "-"+x)
		}
	}
	for _, x := range b {
		if !in(a, x) {
			out = append(out, "+"+x)
		}
	}
	return strings.Join(out, "\n")
}

func (e *env) mountsUnder(dir string) []linux.MountInfo {
	e.t.Helper()
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []linux.MountInfo
	for _, m := range mounts {
		if under(m.Mountpoint, dir) {
			out = append(out, m)
		}
	}
	return out
}

func owner(t testing.TB, path string) (perm fs.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), sys.Uid, sys.Gid
}

func TestCreateContentOwnershipAndMounts(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			if f.Mode() != mode {
				t.Fatalf("Mode() = %s, want %s", f.Mode(), mode)
			}
			spec := e.spec("svc1", "token", "password", "cert.pem")
			st, err := f.Create(spec)
			if err != nil {
				t.Fatal(err)
			}
			if st.ID != "svc1" || st.Mode != mode || len(st.Files) != 3 {
				t.Fatalf("Create = %+v", st)
			}
			for _, s := range spec.Secrets {
				path := st.Files[s.Name]
				if got := readFile(t, path); got != want(s) {
					t.Errorf("%s reads %q, want %q", s.Name, got, want(s))
				}
				if got := readFile(t, filepath.Join(st.DirView, s.Name)); got != want(s) {
					t.Errorf("view %s reads %q, want %q", s.Name, got, want(s))
				}
				if perm, uid, gid := owner(t, path); perm != 0o400 || uid != 1000 || gid != 1001 {
					t.Errorf("%s: mode %v owner %d:%d, want 0400 1000:1001", s.Name, perm, uid, gid)
				}
				if err := os.WriteFile(path, []byte("x"), 0o400); err == nil && mode != ModeRestart {
					t.Errorf("%s: writing through the publish point succeeded, want a read-only mount", s.Name)
				}
			}
			if perm, uid, gid := owner(t, st.DirView); perm != 0o500 || uid != 1000 || gid != 1001 {
				t.Errorf("view dir: mode %v owner %d:%d, want 0500 1000:1001", perm, uid, gid)
			}
			data, err := os.Readlink(filepath.Join(st.DirView, "..data"))
			if err != nil {
				t.Fatal(err)
			}
			if perm, uid, _ := owner(t, filepath.Join(st.DirView, data)); perm != 0o500 || uid != 1000 {
				t.Errorf("view snapshot dir: mode %v uid %d, want 0500 1000", perm, uid)
			}
			for _, dir := range []string{e.root, f.lay.store("svc1"), filepath.Join(f.lay.store("svc1"), "v")} {
				if perm, uid, _ := owner(t, dir); perm != 0o700 || uid != 0 {
					t.Errorf("%s: mode %v uid %d, want 0700 root", dir, perm, uid)
				}
			}

			// The store tmpfs: bounded, nodev/nosuid/noexec, noswap when the kernel has it.
			stack := linux.Stack(e.mountsUnder(e.root), f.lay.store("svc1"))
			if len(stack) != 1 {
				t.Fatalf("store tmpfs: %d mounts at %s, want 1", len(stack), f.lay.store("svc1"))
			}
			m := stack[0]
			for _, opt := range []string{"nodev", "nosuid", "noexec"} {
				if !m.HasOption(opt) {
					t.Errorf("store tmpfs options %q lack %s", m.Options, opt)
				}
			}
			for _, opt := range []string{fmt.Sprintf("size=%dk", DefaultStoreSize>>10), fmt.Sprintf("nr_inodes=%d", DefaultMaxInodes), "mode=700"} {
				if !m.HasSuperOption(opt) {
					t.Errorf("store tmpfs super options %q lack %s", m.SuperOptions, opt)
				}
			}
			if f.Features().TmpfsNoswap && !m.HasSuperOption("noswap") {
				t.Errorf("store tmpfs super options %q lack noswap", m.SuperOptions)
			}
			if m.FSType != "tmpfs" || m.Source != storeSource {
				t.Errorf("store mount %s %s, want tmpfs %s", m.FSType, m.Source, storeSource)
			}
			if mode == ModeRestart {
				return
			}
			// Every mount a container binds is read-only, nosuid, nodev, noexec, and can carry
			// propagation (Docker refuses rslave from a private mount).
			for _, p := range append(slices.Collect(mapValues(st.Files)), st.DirView) {
				s := linux.Stack(e.mountsUnder(p), p)
				if len(s) != 1 {
					t.Fatalf("%s: %d mounts, want 1", p, len(s))
				}
				top := s[0]
				for _, opt := range []string{"ro", "nosuid", "nodev", "noexec"} {
					if !top.HasOption(opt) {
						t.Errorf("%s options %q lack %s", p, top.Options, opt)
					}
				}
				switch mode {
				case ModeMountSwap:
					if top.Master != f.stores["svc1"].group || top.Shared != 0 {
						t.Errorf("%s: master %d shared %d, want a slave of the feed group %d", p, top.Master, top.Shared, f.stores["svc1"].group)
					}
				case ModeMountStack:
					if top.Shared == 0 {
						t.Errorf("%s: not shared", p)
					}
				}
			}
		})
	}
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

func TestInvalidRefusedNothingCreated(t *testing.T) {
	e := newEnv(t)
	f := e.open("")
	good := Secret{Name: "ok", Value: canary("invalid", 1)}
	before := e.snapshot()
	tests := []struct {
		name     string
		spec     Spec
		nameRule bool
	}{
		{"empty name", Spec{ID: "s1", Secrets: []Secret{good, {Name: ""}}}, true},
		{"dotdot", Spec{ID: "s1", Secrets: []Secret{good, {Name: ".."}}}, true},
		{"path", Spec{ID: "s1", Secrets: []Secret{good, {Name: "../../etc/passwd"}}}, true},
		{"reserved", Spec{ID: "s1", Secrets: []Secret{good, {Name: "proc"}}}, true},
		{"hidden", Spec{ID: "s1", Secrets: []Secret{good, {Name: "..data"}}}, true},
		{"too long", Spec{ID: "s1", Secrets: []Secret{good, {Name: strings.Repeat("x", 256)}}}, true},
		{"duplicate", Spec{ID: "s1", Secrets: []Secret{good, good}}, false},
		{"bad id", Spec{ID: "../s1", Secrets: []Secret{good}}, false},
		{"bad uid", Spec{ID: "s1", UID: -5, Secrets: []Secret{good}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Create(tc.spec)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Create = %v, want ErrInvalid", err)
			}
			if errors.Is(err, protocol.ErrInvalidSecretName) != tc.nameRule {
				t.Errorf("errors.Is(%v, protocol.ErrInvalidSecretName) = %v, want %v", err, !tc.nameRule, tc.nameRule)
			}
			if after := e.snapshot(); !slices.Equal(before, after) {
				t.Errorf("refused Create changed the root:\n%s", diff(before, after))
			}
		})
	}
	if stores, _ := f.Stores(); len(stores) != 0 {
		t.Errorf("Stores() = %d stores after refused creates, want 0", len(stores))
	}
}

func TestUpdateRefusals(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			spec := e.spec("svc1", "a", "b")
			st, err := f.Create(spec)
			if err != nil {
				t.Fatal(err)
			}
			before := e.snapshot()
			tests := []struct {
				name    string
				id      string
				secrets []Secret
				want    error
			}{
				{"unknown store", "nope", []Secret{{Name: "a"}}, ErrNotFound},
				{"unknown secret", "svc1", []Secret{{Name: "a"}, {Name: "zzz"}}, ErrNotFound},
				{"invalid name", "svc1", []Secret{{Name: "a"}, {Name: "a/b"}}, protocol.ErrInvalidSecretName},
				{"duplicate", "svc1", []Secret{{Name: "a"}, {Name: "a"}}, ErrInvalid},
				{"bad id", "svc1/..", []Secret{{Name: "a"}}, ErrInvalid},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					if err := f.Update(tc.id, tc.secrets); !errors.Is(err, tc.want) {
						t.Fatalf("Update = %v, want %v", err, tc.want)
					}
					if after := e.snapshot(); !slices.Equal(before, after) {
						t.Errorf("refused Update changed the root:\n%s", diff(before, after))
					}
					for _, s := range spec.Secrets {
						if got := readFile(t, st.Files[s.Name]); got != want(s) {
							t.Errorf("%s = %q after a refused update, want %q", s.Name, got, want(s))
						}
					}
				})
			}
			if _, err := f.Create(spec); !errors.Is(err, ErrExists) {
				t.Errorf("second Create = %v, want ErrExists", err)
			}
			if _, err := f.Depth("svc1", "zzz"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Depth(unknown) = %v, want ErrNotFound", err)
			}
		})
	}
}

// TestUpdateAllOrNothing fails the n-th swap of an update of three secrets, for every n, and
// checks that every secret still reads its old value through its publish point, the directory
// view and (mount-swap) the version a container started with; then an update succeeds.
func TestUpdateAllOrNothing(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			spec := e.spec("svc1", "a", "b", "c")
			st, err := f.Create(spec)
			if err != nil {
				t.Fatal(err)
			}
			swapsPerSecret := 1
			readers := map[string]*nsReader{}
			if mode != ModeRestart {
				// A container started with version 1 of each secret: in mount-swap mode every
				// update also swaps the feed mount on that version, which is what it sees.
				for _, s := range spec.Secrets {
					readers[s.Name] = startNSReader(t, st.Files[s.Name])
				}
				f.reconcile()
				if err := f.Update("svc1", spec.Secrets); err != nil { // version 2: first feed mounts
					t.Fatal(err)
				}
				if mode == ModeMountSwap {
					swapsPerSecret = 2
				}
			}
			cur := spec.Secrets
			check := func(t *testing.T, what string) {
				t.Helper()
				for _, s := range cur {
					if got := readFile(t, st.Files[s.Name]); got != want(s) {
						t.Errorf("%s: %s reads %q, want %q", what, s.Name, got, want(s))
					}
					if got := readFile(t, filepath.Join(st.DirView, s.Name)); got != want(s) {
						t.Errorf("%s: view %s reads %q, want %q", what, s.Name, got, want(s))
					}
					if r := readers[s.Name]; r != nil {
						if got := r.read(); got != want(s) {
							t.Errorf("%s: %s as a container started with version 1 sees it: %q, want %q", what, s.Name, got, want(s))
						}
					}
				}
			}
			check(t, "before")
			before := e.snapshot()
			depth, _ := f.Depth("svc1", "a")
			total := len(cur) * swapsPerSecret
			injected := errors.New("injected swap failure")
			for n := 1; n <= total; n++ {
				next := make([]Secret, len(cur))
				for i, s := range cur {
					next[i] = Secret{Name: s.Name, Key: s.Key, Value: canary("fail-"+s.Name, n), Format: s.Format}
				}
				f.swapHook = func(i int) error {
					if i == n {
						return injected
					}
					return nil
				}
				err := f.Update("svc1", next)
				f.swapHook = nil
				if !errors.Is(err, injected) {
					t.Fatalf("swap %d of %d: Update = %v, want the injected failure", n, total, err)
				}
				failed := next[(n-1)/swapsPerSecret].Name
				if !strings.Contains(err.Error(), fmt.Sprintf("secret %q", failed)) {
					t.Errorf("swap %d: error %q does not name secret %q", n, err, failed)
				}
				check(t, fmt.Sprintf("after failing swap %d", n))
				if after := e.snapshot(); !slices.Equal(before, after) {
					t.Errorf("failed update %d changed the root:\n%s", n, diff(before, after))
				}
				if d, _ := f.Depth("svc1", "a"); d != depth {
					t.Errorf("failed update %d: depth %d, want %d", n, d, depth)
				}
			}
			next := make([]Secret, len(cur))
			for i, s := range cur {
				next[i] = Secret{Name: s.Name, Key: s.Key, Value: canary("ok-"+s.Name, 9), Format: s.Format}
			}
			if err := f.Update("svc1", next); err != nil {
				t.Fatal(err)
			}
			cur = next
			check(t, "after a good update")
		})
	}
}

func TestWipe(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			empty := e.snapshot()
			spec := e.spec("svc1", "a", "b")
			if _, err := f.Create(spec); err != nil {
				t.Fatal(err)
			}
			if err := f.Update("svc1", []Secret{{Name: "a", Value: canary("wipe", 2)}}); err != nil {
				t.Fatal(err)
			}
			// An open file keeps its inode after the wipe: it must read zeros or nothing.
			held, err := os.Open(f.lay.version("svc1", "b", 1))
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			if err := f.Wipe("svc1"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 256)
			n, _ := held.ReadAt(buf, 0)
			if strings.Trim(string(buf[:n]), "\x00") != "" {
				t.Errorf("a file of the wiped store still holds %q", buf[:n])
			}
			if got := e.snapshot(); !slices.Equal(got, empty) {
				t.Errorf("after Wipe:\n%s", diff(empty, got))
			}
			for i := 0; i < 2; i++ {
				if err := f.Wipe("svc1"); err != nil {
					t.Errorf("Wipe again: %v", err)
				}
			}
			if err := f.Wipe("never-existed"); err != nil {
				t.Errorf("Wipe(unknown) = %v, want nil", err)
			}
			if stores, _ := f.Stores(); len(stores) != 0 {
				t.Errorf("Stores() after Wipe = %v", stores)
			}
			if err := f.Update("svc1", []Secret{{Name: "a"}}); !errors.Is(err, ErrNotFound) {
				t.Errorf("Update after Wipe = %v, want ErrNotFound", err)
			}
			// The id is free again.
			if _, err := f.Create(spec); err != nil {
				t.Errorf("Create after Wipe: %v", err)
			}
		})
	}
}

// TestHalfCreated fails each step of Create: nothing may be left. Then it leaves a half-created
// store behind as a crash would, and a new FS must list it and wipe it.
func TestHalfCreated(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			empty := e.snapshot()
			spec := e.spec("half", "a", "b", "c")
			injected := errors.New("injected create failure")
			for n := 1; n <= len(spec.Secrets); n++ {
				f.swapHook = func(i int) error {
					if i == n {
						return injected
					}
					return nil
				}
				_, err := f.Create(spec)
				f.swapHook = nil
				if !errors.Is(err, injected) {
					t.Fatalf("Create failing at publish %d = %v, want the injected failure", n, err)
				}
				if got := e.snapshot(); !slices.Equal(got, empty) {
					t.Errorf("failed Create %d left:\n%s", n, diff(empty, got))
				}
			}

			// A crash in the middle of create: the store is half made and nobody cleaned up.
			f.swapHook = func(i int) error {
				if i == 2 {
					return injected
				}
				return nil
			}
			f.mu.Lock()
			_, err := f.create(spec)
			f.mu.Unlock()
			f.swapHook = nil
			if !errors.Is(err, injected) {
				t.Fatalf("create = %v, want the injected failure", err)
			}
			f.Close()
			g := e.open(mode)
			stores, err := g.Stores()
			if err != nil {
				t.Fatal(err)
			}
			if len(stores) != 1 || stores[0].ID != "half" {
				t.Fatalf("recovered stores = %+v, want the half-created one", stores)
			}
			if err := g.Wipe("half"); err != nil {
				t.Fatalf("Wipe(half-created) = %v", err)
			}
			if got := e.snapshot(); !slices.Equal(got, empty) {
				t.Errorf("after wiping the half-created store:\n%s", diff(empty, got))
			}
			if err := g.Wipe("half"); err != nil {
				t.Errorf("Wipe again = %v", err)
			}
		})
	}
}
