package agent

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// storeGuard watches the secret stores and repairs changes the agent did not make.
//
// It does not attribute events: after every change the agent makes to a store (create, update,
// wipe, through storeAdapter) it takes a baseline of what the store looks like (names, modes,
// owners, symlink targets and an HMAC of each file's content under a key that lives only in
// this process's memory). An fsnotify event, or a periodic check, compares each store that the
// agent is not changing right now with its baseline. A difference is logged (store, entry,
// what changed; never content) and repaired:
//   - an entry that appeared in the directory view is removed;
//   - a mode or owner that changed is put back where the store is writable;
//   - anything else (content changed, entry missing, mode not restorable) asks the agbot for
//     the agreement's current values (resync), which rewrites every secret of the store as
//     new versions.
type storeGuard struct {
	a   *Agent
	key [32]byte

	mu       sync.Mutex
	baseline map[string]*snapshot // store id -> what the agent left
	need     map[string]string    // agreement id -> why it needs a resync
	kick     chan struct{}

	// beforeSnap, set by tests, runs between reading a store's baseline and looking at it.
	beforeSnap func(id string)
}

// entry is one file system entry of a store as the guard sees it.
type entry struct {
	mode     fs.FileMode
	uid, gid uint32
	link     string
	mac      [32]byte
	hasMAC   bool
}

type snapshot struct {
	id      string
	entries map[string]entry // path -> entry
}

func newStoreGuard(a *Agent) *storeGuard {
	g := &storeGuard{a: a, baseline: map[string]*snapshot{}, need: map[string]string{}, kick: make(chan struct{}, 1)}
	if _, err := rand.Read(g.key[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return g
}

// storeByID returns the store the secret stores know as id, or nil.
func (g *storeGuard) storeByID(id string) *secretfs.Store {
	st, err := g.a.fs.Store(id)
	if err != nil {
		return nil
	}
	return st
}

// rebase takes the baseline of store id after the agent changed it (or forgets it when the
// store is gone).
func (g *storeGuard) rebase(id string, _ bool) {
	st := g.storeByID(id)
	g.mu.Lock()
	defer g.mu.Unlock()
	_, known := g.baseline[id]
	if st == nil {
		delete(g.baseline, id)
		g.poke()
		return
	}
	g.baseline[id] = g.snap(st)
	if !known {
		// A new store: watch its directories. An update changes no directory the watches need
		// at once (new view snapshots are picked up by the next periodic sync), so it does not
		// walk the secrets root again: that cost grew with every store on the node.
		g.poke()
	}
}

// rebaseAll takes every store's baseline (at start-up).
func (g *storeGuard) rebaseAll() {
	all, err := g.a.fs.Stores()
	if err != nil {
		g.a.log.Warn("store guard: list stores", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.baseline = map[string]*snapshot{}
	for _, st := range all {
		g.baseline[st.ID] = g.snap(st)
	}
}

func (g *storeGuard) forgetAll() {
	g.mu.Lock()
	g.need = map[string]string{}
	g.mu.Unlock()
	g.rebaseAll()
}

// poke asks the run loop to refresh its watches. Caller may hold g.mu.
func (g *storeGuard) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// snap describes store st: its secret files (through their publish paths) and its
// directory view with what the view's links point to.
func (g *storeGuard) snap(st *secretfs.Store) *snapshot {
	s := &snapshot{id: st.ID, entries: map[string]entry{}}
	for _, path := range st.Files {
		s.entries[path] = g.stat(path, true)
	}
	if st.DirView != "" {
		s.entries[st.DirView] = g.stat(st.DirView, false)
		names, _ := readDirNames(st.DirView)
		for _, name := range names {
			if secretfs.IsViewSnapshot(name) {
				// Versioned view directories: the current one is checked through ..data; the
				// replaced ones secretfs removes after a grace period.
				continue
			}
			p := filepath.Join(st.DirView, name)
			e := g.stat(p, false)
			s.entries[p] = e
			if e.mode&fs.ModeSymlink == 0 {
				continue
			}
			// Follow the link: the current version directory (..data) or one secret file.
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				s.entries[p+"@"] = entry{mode: fs.ModeIrregular}
			case fi.IsDir():
				sub, _ := readDirNames(p)
				for _, n := range sub {
					s.entries[filepath.Join(p, n)] = g.stat(filepath.Join(p, n), true)
				}
			default:
				s.entries[p+"@"] = g.stat(p, true)
			}
		}
	}
	return s
}

// maxWatches bounds the inotify watches one agent takes (several agents share a machine);
// what is not watched is still checked every guardInterval.
const maxWatches = 2048

// watchDirs lists the directories under the secrets root, where a change to a store shows:
// versions, publish points, views.
func watchDirs(root string, limit int) map[string]bool {
	out := map[string]bool{}
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".probe") || len(out) >= limit {
			return filepath.SkipDir
		}
		out[p] = true
		return nil
	})
	return out
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// stat describes path; content says whether to HMAC a regular file's content (following
// links), which never leaves this process.
func (g *storeGuard) stat(path string, content bool) entry {
	var e entry
	var fi fs.FileInfo
	var err error
	if content {
		fi, err = os.Stat(path)
	} else {
		fi, err = os.Lstat(path)
	}
	if err != nil {
		return entry{mode: fs.ModeIrregular} // missing or unreadable
	}
	e.mode = fi.Mode()
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.uid, e.gid = sys.Uid, sys.Gid
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		e.link, _ = os.Readlink(path)
	}
	if content && fi.Mode().IsRegular() && fi.Size() <= 1<<20 {
		if b, err := os.ReadFile(path); err == nil {
			m := hmac.New(sha256.New, g.key[:])
			m.Write(b)
			copy(e.mac[:], m.Sum(nil))
			e.hasMAC = true
			clear(b)
		}
	}
	return e
}

// difference is one change the agent did not make.
type difference struct {
	path, what string
	fix        func() error // nil: only a resync repairs it
}

// diff compares a store now with its baseline. writable maps a path the guard looks through
// (read-only publish points and views) to one where a fix can be written.
func diff(base, now *snapshot, writable func(string) string) []difference {
	var out []difference
	for path, b := range base.entries {
		n, ok := now.entries[path]
		switch {
		case !ok || n.mode == fs.ModeIrregular && b.mode != fs.ModeIrregular:
			out = append(out, difference{path: path, what: "missing"})
		case b.hasMAC && n.hasMAC && b.mac != n.mac || b.hasMAC != n.hasMAC:
			out = append(out, difference{path: path, what: "content changed"})
		case b.link != n.link:
			out = append(out, difference{path: path, what: "link target changed"})
		case b.mode.Type() != n.mode.Type():
			out = append(out, difference{path: path, what: "type changed"})
		case b.mode.Perm() != n.mode.Perm():
			p, mode := path, b.mode.Perm()
			out = append(out, difference{path: path, what: fmt.Sprintf("mode %#o, want %#o", n.mode.Perm(), mode),
				fix: func() error { return onWritable(p, writable, func(q string) error { return os.Chmod(q, mode) }) }})
		case b.uid != n.uid || b.gid != n.gid:
			p, uid, gid := path, b.uid, b.gid
			out = append(out, difference{path: path, what: fmt.Sprintf("owner %d:%d, want %d:%d", n.uid, n.gid, uid, gid),
				fix: func() error {
					return onWritable(p, writable, func(q string) error { return os.Chown(q, int(uid), int(gid)) })
				}})
		}
	}
	for path := range now.entries {
		if _, ok := base.entries[path]; !ok {
			p := path
			out = append(out, difference{path: path, what: "appeared", fix: func() error { return onWritable(p, writable, os.RemoveAll) }})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

// onWritable runs op on the path itself, and where that is read-only (a publish point, a
// mounted view) on the writable path the store has for it.
func onWritable(p string, writable func(string) string, op func(string) error) error {
	err := op(strings.TrimSuffix(p, "@"))
	if errors.Is(err, syscall.EROFS) {
		if q := writable(p); q != strings.TrimSuffix(p, "@") {
			err = op(q)
		}
	}
	return err
}

// writable returns how to reach a path of store st for a repair. Publish points and mounted
// views are read-only binds; the store's own view directory (Store.ViewSource, whose
// ViewCurrent link holds hard links to the current versions) is where a mode, an owner or an
// intruding entry can be put right.
func (g *storeGuard) writable(st *secretfs.Store) func(string) string {
	return func(p string) string {
		p = strings.TrimSuffix(p, "@")
		if st == nil || st.ViewSource == "" || st.DirView == st.ViewSource {
			return p
		}
		if rel, err := filepath.Rel(st.DirView, p); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return filepath.Join(st.ViewSource, rel)
		}
		for name, f := range st.Files {
			if f == p {
				return filepath.Join(st.ViewSource, secretfs.ViewCurrent, name)
			}
		}
		return p
	}
}

// check compares every store the agent is not changing with its baseline and repairs.
// A store the agent changed while it looked (its change count moved) is left for the next
// check: its baseline is being taken again.
func (g *storeGuard) check() {
	for _, c := range g.changes() {
		g.repair(c.base, c.diffs)
	}
}

// change is a store that differs from its baseline by someone else's doing.
type change struct {
	base  *snapshot
	diffs []difference
}

// changes compares the stores with their baselines.
func (g *storeGuard) changes() []change {
	var out []change
	ids := g.baselineIDs()
	all, err := g.a.fs.Stores()
	if err != nil {
		return nil
	}
	byID := make(map[string]*secretfs.Store, len(all))
	for _, st := range all {
		byID[st.ID] = st
	}
	for _, id := range ids {
		gen0, busy := g.a.stores.state(id)
		if busy {
			continue
		}
		g.mu.Lock()
		b := g.baseline[id]
		g.mu.Unlock()
		if b == nil {
			continue
		}
		st := byID[id]
		if st == nil {
			// Gone from secretfs's own list since the listing above, or wiped meanwhile:
			// ask again, so that a store wiped by the agent is not taken for tampering.
			st = g.storeByID(id)
		}
		if g.beforeSnap != nil {
			g.beforeSnap(id)
		}
		now := &snapshot{id: id, entries: map[string]entry{}}
		if st != nil {
			now = g.snap(st)
		}
		diffs := diff(b, now, g.writable(st))
		if len(diffs) == 0 {
			continue
		}
		if gen1, busy := g.a.stores.state(id); busy || gen1 != gen0 {
			continue
		}
		out = append(out, change{b, diffs})
	}
	return out
}

func (g *storeGuard) baselineIDs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.baseline))
}

// repair fixes what it can in place and asks for a resync for the rest.
func (g *storeGuard) repair(b *snapshot, diffs []difference) {
	a := g.a
	needResync := false
	for _, d := range diffs {
		how := "resync"
		if d.fix != nil {
			if err := d.fix(); err != nil {
				needResync = true
				how = "resync (" + trimErr(err.Error()) + ")"
			} else {
				how = "put back"
			}
		} else {
			needResync = true
		}
		a.metrics.Failures.WithLabelValues("repair").Inc()
		a.log.Warn("secret store changed by someone other than the agent; repairing", "store", b.id,
			"entry", d.path, "change", d.what, "repair", how)
	}
	if !needResync {
		g.rebase(b.id, true)
		return
	}
	agreementID := g.agreementOf(b.id)
	if agreementID == "" {
		a.log.Warn("a changed secret store belongs to no agreement; wiping it", "store", b.id)
		_ = a.stores.Wipe(b.id)
		return
	}
	g.mu.Lock()
	g.need[agreementID] = "secret store " + b.id + " was changed on the node by someone other than the agent"
	g.mu.Unlock()
	if c := a.connection(); c != nil {
		go c.sendResyncs(a.work)
	}
}

func (g *storeGuard) agreementOf(storeID string) string {
	list, err := g.a.mgr.Agreements()
	if err != nil {
		return ""
	}
	for _, in := range list {
		for _, c := range in.Containers {
			if c.StoreID == storeID {
				return in.ID
			}
		}
	}
	return ""
}

// resyncs returns the resync requests for agreements whose stores were tampered with.
func (g *storeGuard) resyncs(reg *Registration) []*protocol.Resync {
	g.mu.Lock()
	need := make(map[string]string, len(g.need))
	for k, v := range g.need {
		need[k] = v
	}
	g.mu.Unlock()
	var out []*protocol.Resync
	for id, why := range need {
		in, err := g.a.mgr.Agreement(id)
		if errors.Is(err, agreement.ErrNotFound) {
			g.repaired(id)
			continue
		}
		if err != nil || in.Phase != agreement.PhaseActive {
			continue // the manager asks for it itself (Resyncs) when it waits for one
		}
		out = append(out, &protocol.Resync{
			Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeResync, Agreement: id,
				From: reg.ID(), To: in.Agbot, Seq: in.Sequence, Time: time.Now().UTC()},
			Reason: why,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Agreement < out[j].Agreement })
	return out
}

// repaired records that an agreement got its values again.
func (g *storeGuard) repaired(agreementID string) {
	g.mu.Lock()
	_, was := g.need[agreementID]
	delete(g.need, agreementID)
	g.mu.Unlock()
	if was {
		g.a.log.Info("secret store repaired from the agbot's current values", "agreement", agreementID)
	}
}

// guardInterval is how often every store is checked even without an event.
const guardInterval = 30 * time.Second

// run watches the store directories and checks the stores after each burst of events.
func (g *storeGuard) run(ctx context.Context) {
	a := g.a
	g.rebaseAll()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.log.Error("store guard: fsnotify; stores are checked every "+guardInterval.String()+" only", "err", err)
	}
	watched := map[string]bool{}
	sync := func() {
		if w == nil {
			return
		}
		want := watchDirs(a.cfg.SecretsRoot, maxWatches)
		for d := range watched {
			if !want[d] {
				_ = w.Remove(d)
				delete(watched, d)
			}
		}
		for d := range want {
			if !watched[d] {
				if err := w.Add(d); err == nil {
					watched[d] = true
				}
			}
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	sync()
	tick := time.NewTicker(guardInterval)
	defer tick.Stop()
	var quiet *time.Timer
	var quietC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
			sync()
		case <-events:
			// Wait for the burst to end before looking.
			if quiet == nil {
				quiet = time.NewTimer(150 * time.Millisecond)
			} else {
				quiet.Reset(150 * time.Millisecond)
			}
			quietC = quiet.C
		case err := <-errs:
			a.log.Warn("store guard: fsnotify", "err", err)
		case <-quietC:
			quietC = nil
			g.check()
			sync()
		case <-tick.C:
			g.check()
			sync()
		}
	}
}
