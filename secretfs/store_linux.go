package secretfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// Create makes the store of one service instance: every name is validated before anything is
// created, and on any failure nothing is left behind.
func (f *FS) Create(spec Spec) (*Store, error) {
	if err := validateSpec(spec); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	id := spec.ID
	if f.stores[id] != nil {
		return nil, fmt.Errorf("%w: store %q", ErrExists, id)
	}
	for _, p := range []string{f.lay.store(id), f.lay.feed(id), f.lay.publishDir(id), f.lay.viewMount(id), f.lay.fixDir(id)} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w: store %q: %s is left from an earlier store; Wipe it first", ErrExists, id, p)
		}
	}
	st, err := f.create(spec)
	if err != nil {
		if werr := f.wipe(id); werr != nil {
			f.log.Error("secretfs: clean up after failed create", "store", id, "err", werr)
		}
		return nil, fmt.Errorf("store %q: create: %w", id, err)
	}
	f.stores[id] = st
	f.pending[id] = true
	return f.public(st), nil
}

func (f *FS) create(spec Spec) (*store, error) {
	st := &store{id: spec.ID, mode: f.mode, uid: spec.UID, gid: spec.GID, secrets: map[string]*secret{}}
	dir := f.lay.store(st.id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	f.crashPoint("create: store directory made")
	if f.feat.MountPrivilege {
		if err := f.mountStore(st, dir); err != nil {
			return nil, err
		}
	}
	gens, err := f.writeFirstVersions(st, dir, spec.Secrets)
	if err != nil {
		return nil, err
	}
	if err := f.createView(st, gens); err != nil {
		return nil, fmt.Errorf("directory view: %w", err)
	}
	f.crashPoint("create: view made")
	if st.mode == ModeRestart {
		return st, f.publishFiles(st, dir)
	}
	return st, f.publishMounts(st)
}

// mountStore mounts the store's private tmpfs and records its device.
func (f *FS) mountStore(st *store, dir string) error {
	t := linux.Tmpfs{Size: f.size, Inodes: f.inodes, Mode: 0o700, NoSwap: f.feat.TmpfsNoswap}
	if err := linux.MountTmpfs(dir, storeSource, t); err != nil {
		return err
	}
	f.crashPoint("create: store mounted")
	// Private, so that binds of versions are not peers of the store (design §4.5). In restart
	// mode containers bind files straight from here, and Docker wants rslave sources to be
	// shared; nothing is ever mounted below it then.
	prop := uintptr(linux.Private)
	if st.mode == ModeRestart {
		prop = linux.Shared
	}
	if err := linux.SetPropagation(dir, prop); err != nil {
		return err
	}
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		return err
	}
	if s := linux.Stack(mounts, dir); len(s) > 0 {
		st.dev = [2]int{s[len(s)-1].Major, s[len(s)-1].Minor}
	}
	return nil
}

// writeFirstVersions writes version 1 of every secret, complete and owned before anything is
// mounted, and returns the generation of each.
func (f *FS) writeFirstVersions(st *store, dir string, secrets []Secret) (map[string]uint64, error) {
	if err := os.Mkdir(filepath.Join(dir, "v"), 0o700); err != nil {
		return nil, err
	}
	gens := make(map[string]uint64, len(secrets))
	for _, s := range secrets {
		data, err := content(s)
		if err != nil {
			return nil, err
		}
		if err := os.Mkdir(filepath.Join(dir, "v", s.Name), 0o700); err != nil {
			return nil, err
		}
		err = writeVersion(f.lay.version(st.id, s.Name, 1), data, st.uid, st.gid, f.umask)
		if s.Format != FormatValueOnly {
			clear(data)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.Name, err)
		}
		f.crashPoint("create: first version written")
		st.secrets[s.Name] = &secret{cur: 1, next: 2, size: int64(len(data)), bases: map[uint64]*base{}}
		gens[s.Name] = 1
	}
	return gens, nil
}

// publishMounts (mount modes) mounts the feed (mount-swap), every publish point and the view.
func (f *FS) publishMounts(st *store) error {
	tx := &swapTx{f: f}
	if st.mode == ModeMountSwap {
		group, err := f.mountFeed(st)
		if err != nil {
			return fmt.Errorf("feed: %w", err)
		}
		st.group = group
	}
	if err := os.Mkdir(f.lay.publishDir(st.id), 0o700); err != nil {
		return err
	}
	for _, name := range st.names() {
		if err := tx.do(func() error { return f.publishFirst(st, name, 1) }, nil); err != nil {
			return fmt.Errorf("secret %q: publish: %w", name, err)
		}
		f.crashPoint("create: published")
	}
	if err := f.mountView(st); err != nil {
		return fmt.Errorf("directory view: %w", err)
	}
	f.crashPoint("create: view mounted")
	return nil
}

// publishFiles (restart mode) links every secret's current version under files/.
func (f *FS) publishFiles(st *store, dir string) error {
	tx := &swapTx{f: f}
	if err := os.Mkdir(filepath.Join(dir, "files"), 0o700); err != nil {
		return err
	}
	for _, name := range st.names() {
		err := tx.do(func() error { return linkOver(f.lay.version(st.id, name, 1), f.lay.file(st.id, name)) }, nil)
		if err != nil {
			return fmt.Errorf("secret %q: publish: %w", name, err)
		}
	}
	return nil
}

// swapTx runs the swaps of one Update and undoes them, newest first, if a later one fails.
type swapTx struct {
	f    *FS
	n    int
	undo []func() error
}

func (tx *swapTx) do(step, undo func() error) error {
	tx.n++
	if hook := tx.f.swapHook; hook != nil {
		if err := hook(tx.n); err != nil {
			return err
		}
	}
	if err := step(); err != nil {
		return err
	}
	if undo != nil {
		tx.undo = append(tx.undo, undo)
	}
	return nil
}

func (tx *swapTx) rollback() error {
	var errs []error
	for i := len(tx.undo) - 1; i >= 0; i-- {
		if err := tx.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	tx.undo = nil
	return errors.Join(errs...)
}

// Update gives existing secrets new values, all or nothing: every new version is staged
// completely (content, owner, mode) first, then each publish point is swapped; if any step
// fails, what was swapped is swapped back and the error names the secret and the cause.
//
// When it returns, the publish points and the directory view show the new values, and so does
// every running container the last scan of mount namespaces saw (scans run every 10 s and
// after every update). A container started after that scan gets the values from the scan this
// update triggers, milliseconds later. In restart mode only the directory view changes live:
// the caller restarts the container to give it the new files.
func (f *FS) Update(id string, secrets []Secret) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := validateSecrets(id, secrets); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	st := f.stores[id]
	if st == nil {
		return fmt.Errorf("%w: store %q", ErrNotFound, id)
	}
	for _, s := range secrets {
		if st.secrets[s.Name] == nil {
			return fmt.Errorf("%w: store %q: secret %q", ErrNotFound, id, s.Name)
		}
	}
	if len(secrets) == 0 {
		return nil
	}
	f.pending[id] = true // before anything changes, whether it succeeds or not
	changes, err := f.stage(st, secrets)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := f.swapAll(st, changes, now); err != nil {
		f.unstage(st, changes)
		return err
	}
	for _, c := range changes {
		c.sec.cur, c.sec.next = c.gen, c.gen+1
		f.retire(st, c.name, c.sec, c.old, now)
		c.sec.size = c.size
	}
	if f.behind(st) {
		f.reconcileLocked() // a burst that outruns the background loop: scan now rather than fill the store
	} else {
		f.poke()
	}
	return nil
}

// change is one secret of an Update: its staged version gen replaces old.
type change struct {
	name     string
	sec      *secret
	old, gen uint64
	size     int64
}

// stage writes the new version of every secret, none visible yet. On error nothing is left.
func (f *FS) stage(st *store, secrets []Secret) ([]change, error) {
	changes := make([]change, 0, len(secrets))
	for _, s := range secrets {
		sec := st.secrets[s.Name]
		data, err := content(s)
		if err != nil {
			f.unstage(st, changes)
			return nil, fmt.Errorf("store %q: %w", st.id, err)
		}
		gen := sec.next
		err = writeVersion(f.lay.version(st.id, s.Name, gen), data, st.uid, st.gid, f.umask)
		if s.Format != FormatValueOnly {
			clear(data)
		}
		if err != nil {
			f.unstage(st, changes)
			return nil, fmt.Errorf("store %q: secret %q: stage: %w", st.id, s.Name, err)
		}
		f.crashPoint("update: version staged")
		changes = append(changes, change{s.Name, sec, sec.cur, gen, int64(len(data))})
	}
	return changes, nil
}

func (f *FS) unstage(st *store, changes []change) {
	for _, c := range changes {
		os.Remove(f.lay.version(st.id, c.name, c.gen))
	}
}

// swapAll swaps every publish point and every version a running container started with, then
// the directory view as one snapshot; on error everything is swapped back.
func (f *FS) swapAll(st *store, changes []change, now time.Time) error {
	tx := &swapTx{f: f}
	fail := func(err error) error {
		if rerr := tx.rollback(); rerr != nil {
			err = fmt.Errorf("%w (and swapping back failed: %v)", err, rerr)
		}
		return err
	}
	for _, c := range changes {
		if err := f.swapSecret(tx, st, c.name, c.sec, c.old, c.gen, now); err != nil {
			return fail(fmt.Errorf("store %q: secret %q: swap: %w", st.id, c.name, err))
		}
	}
	gens := make(map[string]uint64, len(st.secrets))
	for name, sec := range st.secrets {
		gens[name] = sec.cur
	}
	for _, c := range changes {
		gens[c.name] = c.gen
	}
	if err := f.swapView(st, gens); err != nil {
		return fail(fmt.Errorf("store %q: directory view: %w", st.id, err))
	}
	return nil
}

// behind reports whether a mount-swap store's replaced versions outgrew what the background
// loop may leave waiting (count or a quarter of the store).
func (f *FS) behind(st *store) bool {
	if st.mode != ModeMountSwap {
		return false
	}
	var held int64
	for _, sec := range st.secrets {
		if len(sec.retired) > maxRetired {
			return true
		}
		for _, r := range sec.retired {
			held += r.size
		}
	}
	return held > f.size/4
}

// swapSecret swaps one secret from old to gen at its publish point and, in mount-swap mode, on
// every version a running container started with.
func (f *FS) swapSecret(tx *swapTx, st *store, name string, sec *secret, old, gen uint64, now time.Time) error {
	st.mut++
	undoPublish := func() error { return f.swapPublish(st, name, old) }
	if st.mode == ModeMountStack {
		undoPublish = func() error { return f.unstack(st, name) }
	}
	if err := tx.do(func() error { return f.swapPublish(st, name, gen) }, undoPublish); err != nil {
		return err
	}
	if st.mode != ModeMountSwap {
		return nil
	}
	bases := make([]uint64, 0, len(sec.bases))
	for b := range sec.bases {
		bases = append(bases, b)
	}
	slices.Sort(bases)
	for _, b := range bases {
		bs := sec.bases[b]
		wasFed, wasAt := bs.fed, bs.fedAt
		step := func() error {
			if err := f.feed(st, name, b, gen, wasFed); err != nil {
				return fmt.Errorf("feed version %d: %w", b, err)
			}
			bs.fed = true
			if !wasFed {
				bs.fedAt = now
			}
			return nil
		}
		undo := func() error {
			bs.fed, bs.fedAt = wasFed, wasAt
			if wasFed {
				return f.feed(st, name, b, old, true)
			}
			return f.unfeed(st, name, b)
		}
		if err := tx.do(step, undo); err != nil {
			return err
		}
	}
	return nil
}

// retire records that old is no longer the current version of name.
func (f *FS) retire(st *store, name string, sec *secret, old uint64, now time.Time) {
	switch st.mode {
	case ModeMountSwap:
		if sec.bases[old] != nil {
			return // a running container started with it: it stays, fed, until the container is gone
		}
		f.epoch++
		sec.retired = append(sec.retired, retired{gen: old, epoch: f.epoch, at: now, size: sec.size})
	case ModeMountStack:
		sec.retired = append(sec.retired, retired{gen: old, at: now}) // a covered layer: zeroed after the grace
	default:
		// The running container holds the old inode until it is restarted; the name can go.
		if err := os.Remove(f.lay.version(st.id, name, old)); err != nil {
			f.log.Warn("secretfs: remove replaced version", "store", st.id, "secret", name, "version", old, "err", err)
		}
	}
}

// Wipe unmounts everything of a store, zeroes its files and removes it. It is idempotent and
// works on a half-created store or one recovered from an earlier run.
func (f *FS) Wipe(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errClosed
	}
	// Replaced publish-point mounts of this store may sit in the trash: drop them first.
	if old := f.rotateTrash(); old != "" {
		f.dropTrash(old)
	}
	if err := f.wipe(id); err != nil {
		return err
	}
	delete(f.stores, id)
	delete(f.pending, id)
	return nil
}

func (f *FS) wipe(id string) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	pub := f.lay.publishDir(id)
	// Publish points, and tops a recovery had set aside (fix/<id>).
	for _, dir := range []string{pub, f.lay.fixDir(id)} {
		if entries, err := os.ReadDir(dir); err == nil {
			for _, e := range entries {
				_, err := linux.UnmountAll(filepath.Join(dir, e.Name()))
				add(err)
				f.crashPoint("wipe: unmounted a publish point")
			}
		}
	}
	_, err := linux.UnmountAll(f.lay.viewMount(id))
	add(err)
	f.crashPoint("wipe: view unmounted")
	_, err = linux.UnmountAll(f.lay.feed(id)) // the feed takes its feed mounts with it
	add(err)
	f.crashPoint("wipe: feed unmounted")
	add(zeroTree(f.lay.store(id)))
	f.crashPoint("wipe: store zeroed")
	_, err = linux.UnmountAll(f.lay.store(id))
	add(err)
	f.crashPoint("wipe: store unmounted")
	if len(errs) == 0 {
		for _, p := range []string{pub, f.lay.fixDir(id), f.lay.viewMount(id), f.lay.feed(id), f.lay.store(id)} {
			add(os.RemoveAll(p))
			f.crashPoint("wipe: directory removed")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("store %q: wipe: %w", id, errors.Join(errs...))
	}
	return nil
}
