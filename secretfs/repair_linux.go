package secretfs

import (
	"os"
	"path/filepath"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// Repair after a kill: a run killed in the middle of a swap leaves one of these shapes (the
// trash, the other half-done step, is dropped by prepareRoot before recovery):
//
//   - a publish point two deep, the new version mounted beneath the old top (killed before the
//     top went to the trash). The top is the value everyone still sees, and it is complete
//     (a version is complete before it is mounted): keep it, detach what is under it. No feed
//     mount of that secret has been touched yet (the publish point is swapped first), so the
//     secret is "old" everywhere.
//   - a feed point two deep, the new version beneath the old (killed before the old was
//     unmounted): the publish point already shows the new version, so the feed point is made to
//     show it too, by unmounting the old top. Containers started with that base see the new
//     value at once, in one step.
//   - a directory view that still holds the old snapshot while the publish points show new
//     values (killed before the view's rename): a snapshot of the current versions is made.
//
// Afterwards every publish point and feed point is one deep and shows the current version, so
// each secret holds its old or its new value at every point (the agreement manager's digest
// check then sees which). Containers started with the replaced version and not yet fed get the
// current one from the first reconcile, milliseconds after Open, as after any update.
//
// Every step is itself safe to be killed in: the only one that leaves a publish point without
// its top moves the top to fix/<id>/<name> first, and the next recovery puts it back.

// viewFixName is the entry in fix/<id> for the view mount (secret names never start with '.').
const viewFixName = ".view"

// repairMounts brings the mounts of a mount-swap store back to their shape (see above), from
// mounts, the mount table as it was before (other stores' repairs change none of this store's
// mounts). It returns whether it changed anything. Failures are logged: recovery goes on with
// what is there.
func (f *FS) repairMounts(id string, mounts *linux.MountTable) bool {
	changed := f.restoreTops(id, mounts)
	defer func() {
		if err := os.RemoveAll(f.lay.fixDir(id)); err != nil {
			f.log.Warn("secretfs: recovery: remove", "path", f.lay.fixDir(id), "err", err)
		}
	}()
	if len(mounts.Stack(f.lay.feed(id))) == 0 {
		// Not a mount-swap store, or one killed while it was created or wiped: only Wipe
		// touches it.
		return changed
	}
	if changed {
		var err error
		if mounts, err = linux.SelfMountTable(); err != nil {
			f.log.Warn("secretfs: recovery: mountinfo", "store", id, "err", err)
			return changed
		}
	}
	names, _ := os.ReadDir(filepath.Join(f.lay.store(id), "v"))
	for _, n := range names {
		name := n.Name()
		p := f.lay.publish(id, name)
		pub := mounts.Stack(p)
		if len(pub) == 0 {
			continue // never published (killed in Create): the store is wiped
		}
		pname, cur, ok := parseVersionRoot(pub[len(pub)-1].Root)
		if !ok || pname != name {
			f.log.Warn("secretfs: recovery: publish point shows something other than a version; left as it is", "store", id, "secret", name)
			continue
		}
		if len(pub) > 1 {
			if err := f.collapse(id, name, p); err != nil {
				f.log.Warn("secretfs: recovery: detach hidden layers of a publish point", "store", id, "secret", name, "err", err)
			} else {
				f.log.Info("secretfs: recovery: publish point was left mid-swap; kept the value on top", "store", id, "secret", name, "version", cur, "layers_detached", len(pub)-1)
			}
			changed = true
		}
		entries, _ := os.ReadDir(filepath.Join(f.lay.store(id), "v", name))
		for _, e := range entries {
			gen, ok := parseGen(e.Name())
			if !ok {
				continue
			}
			fp := f.lay.feedPoint(id, name, gen)
			fed := mounts.Stack(fp)
			if len(fed) == 0 {
				continue
			}
			did, err := f.repairFeed(id, name, gen, cur, fed)
			changed = changed || did
			if err != nil {
				f.log.Warn("secretfs: recovery: feed point", "store", id, "secret", name, "version", gen, "err", err)
			} else if did {
				f.log.Info("secretfs: recovery: feed point was left mid-swap; it shows the current version", "store", id, "secret", name, "version", gen, "current", cur)
			}
		}
	}
	if view := mounts.Stack(f.lay.viewMount(id)); len(view) > 1 {
		if err := f.collapse(id, viewFixName, f.lay.viewMount(id)); err != nil {
			f.log.Warn("secretfs: recovery: detach hidden layers of the directory view", "store", id, "err", err)
		}
		changed = true
	}
	return changed
}

// fixTarget is where collapse keeps the top of mount point entry (a secret name or viewFixName).
func (f *FS) fixTarget(id, entry string) string {
	if entry == viewFixName {
		return filepath.Join(f.lay.fixDir(id), viewFixName)
	}
	return filepath.Join(f.lay.fixDir(id), entry)
}

func (f *FS) fixSource(id, entry string) string {
	if entry == viewFixName {
		return f.lay.viewMount(id)
	}
	return f.lay.publish(id, entry)
}

// collapse leaves only the top mount at p (a publish point or the view mount), the same mount
// object, by setting it aside in fix/<id>, detaching what was under it and moving it back.
// Until it is back, p shows a hidden layer or the empty file under the mounts: nobody reads a
// publish point during recovery, and Docker refuses to bind the empty file rslave (its mount,
// the root, is private), so a container that starts just then fails and is restarted.
func (f *FS) collapse(id, entry, p string) error {
	hold := f.fixTarget(id, entry)
	if err := os.MkdirAll(f.lay.fixDir(id), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(hold, nil, 0o400); err != nil {
		return err
	}
	f.crashPoint("repair: holding file made")
	// 1. The top's parent is the layer under it, a slave: the kernel lets it move.
	if err := linux.Move(p, hold); err != nil {
		return err
	}
	f.crashPoint("repair: top set aside")
	// 2. Whatever is left at p is hidden layers.
	if _, err := linux.UnmountAll(p); err != nil {
		return err
	}
	f.crashPoint("repair: hidden layers detached")
	// 3. Back, one deep.
	if err := linux.Move(hold, p); err != nil {
		return err
	}
	f.crashPoint("repair: top moved back")
	return os.Remove(hold)
}

// restoreTops puts back the tops a recovery killed inside collapse had set aside.
func (f *FS) restoreTops(id string, mounts *linux.MountTable) bool {
	entries, err := os.ReadDir(f.lay.fixDir(id))
	if err != nil {
		return false
	}
	changed := false
	for _, e := range entries {
		hold := filepath.Join(f.lay.fixDir(id), e.Name())
		if len(mounts.Stack(hold)) > 0 {
			changed = true
			p := f.fixSource(id, e.Name())
			_, err := linux.UnmountAll(p) // hidden layers, or nothing
			if err == nil {
				err = linux.Move(hold, p)
			}
			if err != nil {
				f.log.Warn("secretfs: recovery: put back a top set aside by a recovery that was stopped", "path", p, "err", err)
				linux.UnmountAll(hold) // p is unusable anyway; do not leave a hidden mount behind
			}
			f.crashPoint("repair: set-aside top put back")
		}
	}
	return changed
}

// repairFeed makes the feed point of version base show cur, one deep (no mount at all when base
// is cur: containers that started with the current version see it as it is). It returns
// whether it changed anything.
func (f *FS) repairFeed(id, name string, base, cur uint64, stack []linux.MountInfo) (bool, error) {
	fp := f.lay.feedPoint(id, name, base)
	if base == cur {
		_, err := linux.UnmountAll(fp)
		return true, err
	}
	shows := func(m linux.MountInfo) bool {
		n, g, ok := parseVersionRoot(m.Root)
		return ok && n == name && g == cur
	}
	changed := false
	// 1. The top becomes cur, in one step: unmount the top if cur is right under it (the shape
	// a kill inside feed leaves), else mount cur beneath the top and unmount the top.
	if !shows(stack[len(stack)-1]) {
		if len(stack) < 2 || !shows(stack[len(stack)-2]) {
			d, err := clone(f.lay.version(id, name, cur), 0)
			if err != nil {
				return changed, err
			}
			if err := d.MoveTo(fp, true); err != nil {
				return changed, err
			}
			f.crashPoint("repair: current version mounted beneath a feed point")
			stack = append(stack[:len(stack)-1:len(stack)-1], linux.MountInfo{Root: versionRel1(name, cur)}, stack[len(stack)-1])
		}
		if err := linux.Unmount(fp); err != nil {
			return true, err
		}
		f.crashPoint("repair: feed point top unmounted")
		stack = stack[:len(stack)-1]
		changed = true
	}
	// 2. Layers under the top that show cur too go without anyone seeing a change.
	for len(stack) > 1 && shows(stack[len(stack)-2]) {
		if err := linux.Unmount(fp); err != nil {
			return true, err
		}
		f.crashPoint("repair: feed point top unmounted")
		stack = stack[:len(stack)-1]
		changed = true
	}
	if len(stack) == 1 {
		return changed, nil
	}
	// 3. Older layers under it (no kill leaves this): detach all, then mount cur. Containers of
	// this base see their own version for the instant in between.
	f.log.Warn("secretfs: recovery: feed point holds older layers under the current version; remounting it", "store", id, "secret", name, "version", base, "layers", len(stack))
	if _, err := linux.UnmountAll(fp); err != nil {
		return true, err
	}
	d, err := clone(f.lay.version(id, name, cur), 0)
	if err != nil {
		return true, err
	}
	return true, d.MoveTo(fp, false)
}

// versionRel1 is versionRel as mountinfo shows a mount root (with the leading slash).
func versionRel1(name string, gen uint64) string { return "/" + versionRel(name, gen) }

// repairView makes the directory view show the current versions, when a kill came between the
// swaps of the publish points (or files) and the view's rename; and removes snapshot
// directories a killed swapView made but never published (the next swapView makes one of the
// same name, which the stale list must not then remove).
func (f *FS) repairView(st *store) {
	view := f.lay.view(st.id)
	if st.viewGen == 0 {
		return // killed in Create before the first snapshot: the store is wiped
	}
	keep := st.stale[:0]
	for _, sv := range st.stale {
		if sv.gen > st.viewGen {
			if err := os.RemoveAll(filepath.Join(view, viewGenName(sv.gen))); err != nil {
				f.log.Warn("secretfs: recovery: remove an unpublished view snapshot", "store", st.id, "generation", sv.gen, "err", err)
				keep = append(keep, sv)
			}
			continue
		}
		keep = append(keep, sv)
	}
	st.stale = keep
	os.Remove(filepath.Join(view, "..data.tmp"))

	gens := make(map[string]uint64, len(st.secrets))
	same := true
	snap := filepath.Join(view, viewGenName(st.viewGen))
	for name, sec := range st.secrets {
		gens[name] = sec.cur
		cur, err := os.Lstat(f.lay.version(st.id, name, sec.cur))
		if err != nil {
			f.log.Warn("secretfs: recovery: current version missing; directory view left as it is", "store", st.id, "secret", name, "version", sec.cur)
			return
		}
		if got, err := os.Lstat(filepath.Join(snap, name)); err != nil || !os.SameFile(cur, got) {
			same = false
		}
	}
	if same {
		return
	}
	if err := f.swapView(st, gens); err != nil {
		f.log.Warn("secretfs: recovery: directory view", "store", st.id, "err", err)
		return
	}
	f.log.Info("secretfs: recovery: directory view was left behind the files by a stopped update; it shows the current versions", "store", st.id)
}
