package container

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// hostStore lays out a store the way secretfs publishes one (a shared tmpfs, files 0400 and a
// directory view 0500 owned by uid:gid), for the tests that only need mounts to work.
//
// TODO(issue 4): replace with real secretfs stores once secretfs compiles.
func hostStore(t *testing.T, id string, uid, gid int, mode StoreMode, secrets map[string]string) *Store {
	t.Helper()
	testenv.RequireRoot(t)
	root := t.TempDir()
	if err := unix.Mount("anax-test-store", root, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0700,size=1m"); err != nil {
		testenv.Skip(t, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := unix.Unmount(root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	if err := unix.Mount("", root, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", root, err)
	}
	st := &Store{ID: id, Mode: mode, Files: map[string]string{}, DirView: filepath.Join(root, "view")}
	files := filepath.Join(root, "files")
	for _, dir := range []string{files, st.DirView} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range secrets {
		for _, p := range []string{filepath.Join(files, name), filepath.Join(st.DirView, name)} {
			if err := os.WriteFile(p, []byte(content), 0o400); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		st.Files[name] = filepath.Join(files, name)
	}
	if err := os.Chown(st.DirView, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(st.DirView, 0o500); err != nil {
		t.Fatal(err)
	}
	return st
}
