package secretfs

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// The directory view, Kubernetes AtomicWriter style: view/..data is a symlink to a versioned
// directory of hard links to the current versions, and view/<name> -> ..data/<name>. A new
// snapshot is a new directory and one rename(2) of a new ..data symlink over the old one, so a
// reader of several secrets sees one consistent set.

// swapView publishes a new view directory holding gens (name -> version) and retires the old.
//
// It calls unix directly: this is on the path of every update, and the os wrappers add system
// calls (os.Rename stats the target first).
func (f *FS) swapView(st *store, gens map[string]uint64) error {
	view := f.lay.view(st.id)
	gen := st.viewGen + 1
	dir := view + "/" + viewGenName(gen)
	if err := unix.Mkdir(dir, 0o500); err != nil {
		os.RemoveAll(dir) // left by an attempt that failed
		if err := unix.Mkdir(dir, 0o500); err != nil {
			return &os.PathError{Op: "mkdir", Path: dir, Err: err}
		}
	}
	f.crashPoint("view: snapshot directory made")
	fail := func(op, path string, err error) error {
		os.RemoveAll(dir)
		return &os.PathError{Op: op, Path: path, Err: err}
	}
	for name, g := range gens {
		if err := unix.Link(f.lay.version(st.id, name, g), dir+"/"+name); err != nil {
			return fail("link", dir+"/"+name, err)
		}
	}
	if err := unix.Lchown(dir, st.uid, st.gid); err != nil {
		return fail("chown", dir, err)
	}
	if f.umask&0o500 != 0 {
		if err := unix.Chmod(dir, 0o500); err != nil {
			return fail("chmod", dir, err)
		}
	}
	f.crashPoint("view: snapshot linked")
	tmp := view + "/..data.tmp"
	if err := unix.Symlink(viewGenName(gen), tmp); err != nil {
		unix.Unlink(tmp)
		if err := unix.Symlink(viewGenName(gen), tmp); err != nil {
			return fail("symlink", tmp, err)
		}
	}
	f.crashPoint("view: ..data.tmp made")
	if err := unix.Rename(tmp, view+"/..data"); err != nil {
		unix.Unlink(tmp)
		return fail("rename", tmp, err)
	}
	f.crashPoint("view: ..data renamed")
	if st.viewGen != 0 {
		// The old snapshot holds the versions current until now (sizes not committed yet).
		var size int64
		for _, sec := range st.secrets {
			size += sec.size
		}
		st.stale = append(st.stale, staleView{gen: st.viewGen, at: time.Now(), size: size})
		st.staleSize += size
		// A burst: old snapshots must not pin more than an eighth of the store (or too many
		// inodes) until the background loop removes them.
		for len(st.stale) > maxStaleViews && (st.staleSize > f.size/8 || len(st.stale) > maxStaleInodes) {
			f.removeView(st, st.stale[0].gen)
			st.staleSize -= st.stale[0].size
			st.stale = st.stale[1:]
		}
	}
	st.viewGen = gen
	return nil
}

// removeView deletes a replaced snapshot directory: its entries are the store's names.
func (f *FS) removeView(st *store, gen uint64) error {
	dir := f.lay.view(st.id) + "/" + viewGenName(gen)
	for name := range st.secrets {
		if err := unix.Unlink(dir + "/" + name); err != nil && err != unix.ENOENT {
			return os.RemoveAll(dir)
		}
	}
	if err := unix.Rmdir(dir); err != nil && err != unix.ENOENT {
		return os.RemoveAll(dir)
	}
	return nil
}

// createView makes the view directory with its first snapshot and the per-name symlinks.
func (f *FS) createView(st *store, gens map[string]uint64) error {
	view := f.lay.view(st.id)
	if err := os.Mkdir(view, 0o700); err != nil {
		return err
	}
	if err := f.swapView(st, gens); err != nil {
		return err
	}
	for name := range gens {
		if err := os.Symlink(filepath.Join(ViewCurrent, name), filepath.Join(view, name)); err != nil {
			return err
		}
	}
	// Owned by the container's user so it can traverse it; nobody may write.
	if err := os.Lchown(view, st.uid, st.gid); err != nil {
		return err
	}
	return os.Chmod(view, 0o500)
}

// removeStaleViews deletes replaced view directories once readers had the grace to finish
// resolving paths through them, or earlier, oldest first, when they hold more than an eighth of
// the store or too many inodes (a burst). Their files are hard links: the versions live on in v/.
func (f *FS) removeStaleViews(st *store, now time.Time, due func(time.Time)) {
	keep := st.stale[:0] // written at or before the index read: safe
	for i, sv := range st.stale {
		left := len(st.stale) - i
		over := left > maxStaleViews && (st.staleSize > f.size/8 || left > maxStaleInodes)
		if now.Sub(sv.at) < f.grace && !over {
			keep = append(keep, sv)
			due(sv.at.Add(f.grace))
			continue
		}
		if err := f.removeView(st, sv.gen); err != nil {
			f.log.Warn("secretfs: remove replaced view directory", "store", st.id, "generation", sv.gen, "err", err)
			keep = append(keep, sv)
			continue
		}
		st.staleSize -= sv.size
	}
	st.stale = keep
}
