package secretfs

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// recover rebuilds the stores a previous run left, from the directories under the root and
// /proc/self/mountinfo. Running containers keep their mounts and nothing is mounted twice; only
// what a run killed in the middle of a swap left is repaired (repair_linux.go): hidden layers
// are detached and every point shows the same version of each secret. It returns how many
// stores it found.
//
// What it finds replaced (versions, covered bases, view directories) counts as replaced at
// recovery: the previous run may have swapped it out just before it died, and a reader that
// opened it then must still get the whole grace before it is zeroed or removed.
func (f *FS) recover() (int, error) {
	now := time.Now()
	ids := map[string]bool{}
	for _, dir := range []string{"stores", "feed", "publish", "view", "fix"} {
		entries, err := os.ReadDir(filepath.Join(f.lay.root, dir))
		if err != nil && !os.IsNotExist(err) {
			return 0, err
		}
		for _, e := range entries {
			if ValidateID(e.Name()) != nil {
				f.log.Warn("secretfs: ignoring an entry that is not a store id", "path", filepath.Join(f.lay.root, dir, e.Name()))
				continue
			}
			ids[e.Name()] = true
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	// One read of the mount table for every store (each store's mounts are its own: a repair
	// of one changes no other's); read again only when a repair changed something.
	mounts, err := linux.SelfMountTable()
	if err != nil {
		return 0, err
	}
	repaired := false
	for id := range ids {
		repaired = f.repairMounts(id, mounts) || repaired
	}
	if repaired {
		if mounts, err = linux.SelfMountTable(); err != nil {
			return 0, err
		}
	}
	for id := range ids {
		st := f.recoverStore(id, mounts, now)
		f.repairView(st)
		f.stores[id] = st
		f.pending[id] = true
	}
	return len(ids), nil
}

// recoverStore reads what it can; a half-created store comes back with what exists, so that
// Stores lists it and Wipe removes it.
func (f *FS) recoverStore(id string, mounts *linux.MountTable, now time.Time) *store {
	st := &store{id: id, mode: f.mode, secrets: map[string]*secret{}}
	dir := f.lay.store(id)
	if s := mounts.Stack(dir); len(s) > 0 {
		st.dev = [2]int{s[len(s)-1].Major, s[len(s)-1].Minor}
	}
	feed := mounts.Stack(f.lay.feed(id))
	switch {
	case len(feed) > 0:
		st.mode = ModeMountSwap
		st.group = feed[len(feed)-1].Shared
	case exists(filepath.Join(dir, "files")):
		st.mode = ModeRestart
	case hasMountsUnder(mounts.All(), f.lay.publishDir(id)):
		st.mode = ModeMountStack
	}
	if fi, err := os.Lstat(f.lay.view(id)); err == nil {
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.uid, st.gid = int(sys.Uid), int(sys.Gid)
		}
	}

	names, _ := os.ReadDir(filepath.Join(dir, "v"))
	for _, n := range names {
		if sec := f.recoverSecret(st, n.Name(), mounts, now); sec != nil {
			st.secrets[n.Name()] = sec
		}
	}

	if link, err := os.Readlink(filepath.Join(f.lay.view(id), ViewCurrent)); err == nil {
		st.viewGen, _ = parseViewGen(link)
	}
	if entries, err := os.ReadDir(f.lay.view(id)); err == nil {
		for _, e := range entries {
			if g, ok := parseViewGen(e.Name()); ok && g != st.viewGen {
				st.stale = append(st.stale, staleView{gen: g, at: now})
			}
		}
	}
	return st
}

// recoverSecret rebuilds one secret of st from its version files and the mount table: the
// current generation, retired ones still to clear and, in mount-swap mode, fed bases. It
// returns nil when no version of name is left. now is the recovery's time (see recover).
func (f *FS) recoverSecret(st *store, name string, mounts *linux.MountTable, now time.Time) *secret {
	id := st.id
	entries, _ := os.ReadDir(filepath.Join(f.lay.store(id), "v", name))
	var gens []uint64
	var top uint64
	for _, e := range entries {
		if g, ok := parseGen(e.Name()); ok {
			gens = append(gens, g)
			top = max(top, g)
		}
	}
	if top == 0 {
		return nil
	}
	sec := &secret{cur: top, next: top + 1, bases: map[uint64]*base{}}
	if st.mode == ModeRestart {
		sec.cur = sameFile(f.lay.file(id, name), func(g uint64) string { return f.lay.version(id, name, g) }, gens, top)
	} else if s := mounts.Stack(f.lay.publish(id, name)); len(s) > 0 {
		if n, g, ok := parseVersionRoot(s[len(s)-1].Root); ok && n == name {
			sec.cur = g
		}
	}
	if fi, err := os.Stat(f.lay.version(id, name, sec.cur)); err == nil {
		sec.size = fi.Size()
	}
	for _, g := range gens {
		switch {
		case g == sec.cur:
		case st.mode == ModeMountSwap && len(mounts.Stack(f.lay.feedPoint(id, name, g))) > 0:
			sec.bases[g] = &base{fed: true, fedAt: now} // its own content is zeroed after the grace
		case st.mode == ModeRestart:
			os.Remove(f.lay.version(id, name, g)) // a running container holds its inode if it needs it
		default:
			r := retired{gen: g, at: now} // epoch 0: the first scan decides
			if fi, err := os.Stat(f.lay.version(id, name, g)); err == nil {
				r.size = fi.Size()
			}
			sec.retired = append(sec.retired, r)
		}
	}
	return sec
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func hasMountsUnder(mounts []linux.MountInfo, dir string) bool {
	for _, m := range mounts {
		if strings.HasPrefix(m.Mountpoint, dir+"/") {
			return true
		}
	}
	return false
}

// sameFile returns the version whose inode files/<name> is, or fallback.
func sameFile(file string, version func(uint64) string, gens []uint64, fallback uint64) uint64 {
	fi, err := os.Stat(file)
	if err != nil {
		return fallback
	}
	for _, g := range gens {
		if vi, err := os.Stat(version(g)); err == nil && os.SameFile(fi, vi) {
			return g
		}
	}
	return fallback
}
