package secretfs

import (
	"os"
	"path/filepath"
	"time"
)

// The directory view, Kubernetes AtomicWriter style: view/..data is a symlink to a versioned
// directory of hard links to the current versions, and view/<name> -> ..data/<name>. A new
// snapshot is a new directory and one rename(2) of a new ..data symlink over the old one, so a
// reader of several secrets sees one consistent set.

// swapView publishes a new view directory holding gens (name -> version) and retires the old.
func (f *FS) swapView(st *store, gens map[string]uint64) error {
	view := f.lay.view(st.id)
	gen := st.viewGen + 1
	dir := filepath.Join(view, viewGenName(gen))
	os.RemoveAll(dir) // left by an attempt that failed
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(dir)
		return err
	}
	for name, g := range gens {
		if err := os.Link(f.lay.version(st.id, name, g), filepath.Join(dir, name)); err != nil {
			return fail(err)
		}
	}
	if err := os.Lchown(dir, st.uid, st.gid); err != nil {
		return fail(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		return fail(err)
	}
	tmp := filepath.Join(view, "..data.tmp")
	os.Remove(tmp)
	if err := os.Symlink(viewGenName(gen), tmp); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(view, "..data")); err != nil {
		os.Remove(tmp)
		return fail(err)
	}
	if st.viewGen != 0 {
		st.stale = append(st.stale, staleView{gen: st.viewGen, at: time.Now()})
	}
	st.viewGen = gen
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
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(view, name)); err != nil {
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
// resolving paths through them. Their files are hard links: the versions live on in v/.
func (f *FS) removeStaleViews(st *store, now time.Time, due func(time.Time)) {
	keep := st.stale[:0]
	for i, sv := range st.stale {
		// Beyond maxStaleViews the oldest go at once: removing a directory never tears a read
		// of an open file, it can only fail a path lookup that is many updates late.
		young := len(st.stale)-i <= maxStaleViews
		if now.Sub(sv.at) < f.grace && young {
			keep = append(keep, sv)
			due(sv.at.Add(f.grace))
			continue
		}
		if err := os.RemoveAll(filepath.Join(f.lay.view(st.id), viewGenName(sv.gen))); err != nil {
			f.log.Warn("secretfs: remove replaced view directory", "store", st.id, "generation", sv.gen, "err", err)
			keep = append(keep, sv)
		}
	}
	st.stale = keep
}
