package secretfs

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

const (
	rootSource  = "anax-secrets"      // tmpfs source name of the root, how recovery recognises it
	storeSource = "anax-secret-store" // tmpfs source name of each store

	rootSize   = 1 << 20 // the root holds directories and empty publish files only
	rootInodes = 65536

	// reconcileDelay: the pass that follows an update waits this long, so that updates applied
	// together share one scan of the other mount namespaces...
	reconcileDelay = 2 * time.Millisecond
	// burstInterval: ...and passes are at least this far apart, so that a burst of updates does
	// not spend its time scanning. A container that started after the last scan (see
	// reconcile_linux.go) waits at most this long plus one scan for a new value.
	burstInterval = 20 * time.Millisecond
	// rescanInterval: how often the other mount namespaces are scanned without an update, so
	// that an update finds the containers started since and reaches them synchronously.
	rescanInterval = 10 * time.Second
	// defaultGrace is how long a replaced version keeps its content, for readers that opened it
	// just before the swap; after that it is zeroed.
	defaultGrace = time.Second
	// maxPendingUnbound bounds, per secret, replaced versions waiting for their grace: beyond it
	// the oldest are removed at once (unlink never tears a reader; only the zeroing waits).
	maxPendingUnbound = 4
	// maxStaleViews bounds replaced view directories waiting for their grace (they hard-link
	// old versions, so a burst of updates would otherwise fill the store).
	maxStaleViews = 4
	// maxStaleInodes bounds replaced view directories during a burst (one inode each).
	maxStaleInodes = 256
	// minRetry and maxRetry bound the wait before a scan that could not read every container's
	// mounts is tried again (doubling while it keeps failing).
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
	// maxRetired bounds, per secret, replaced versions waiting for a scan (also to a quarter of
	// the store size): beyond it Update scans itself instead of waiting for the background loop.
	maxRetired = 256
)

var errClosed = errors.New("secretfs: closed")

// FS is the secret file system under one root. It is safe for concurrent use.
type FS struct {
	lay    layout
	mode   Mode
	feat   Features
	size   int64
	inodes int
	log    *slog.Logger
	selfNS uint64
	grace  time.Duration
	// holders names each store's running containers (Options.Holders); nil: scan every process.
	holders Holders
	// readPID and readAll read mounts (linux.PIDMountinfo, linux.ForeignMounts); tests make
	// them fail.
	readPID func(pid int) ([]linux.MountInfo, error)
	readAll func(self uint64) ([]linux.MountInfo, error)
	// incomplete counts scans that could not read a store's containers; unreached holds the
	// stores (or "*": the whole machine) whose last scan failed, so each failure warns once.
	incomplete  atomic.Uint64
	cacheHits   atomic.Uint64 // store scans answered from the store's last read (tests)
	unreachedMu sync.Mutex
	unreached   map[string]bool
	umask       uint32 // the process umask, read once: when it cannot strip the bits we create with, chmod is skipped

	mu     sync.Mutex
	stores map[string]*store
	closed bool
	retry  time.Duration // current wait before retrying an incomplete scan (see nextRetry)
	// pending holds the stores a quiet pass visits (see scanTargets): every store that changed
	// since a pass last found it settled, or that has work waiting. A store not in pending is
	// settled. passDone and passHolders: a pass was applied, and the holders' version it began
	// at.
	pending     map[string]bool
	passDone    bool
	passHolders uint64
	// epoch counts retired versions. A namespace scan that starts at epoch e sees every container
	// based on a version retired at or before e: nobody can bind a version after it left its
	// publish point.
	epoch uint64
	// scans numbers the scans begun and applied the latest one applied: scans run without the
	// lock, so a slower scan can finish after one that began later, and what it saw (no
	// container that started in between) must not undo what the later one adopted.
	scans, applied uint64

	kick     chan struct{}
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// trash holds replaced publish-point mounts: moving a mount there is cheap, while unmounting
	// waits for an RCU grace period (~20 µs idle, milliseconds under load). The background loop
	// detaches a whole generation with one umount.
	trash struct {
		gen     uint64
		n       uint64
		mounted bool
	}

	// swapHook, when set by tests, runs before the n-th swap (1-based) of an Update or Create;
	// an error fails that swap.
	swapHook func(n int) error
	// crashHook: see Options.crashHook.
	crashHook func(point string)
}

type store struct {
	id        string
	mode      Mode
	uid, gid  int
	group     int    // mount-swap: peer group of the feed bind
	dev       [2]int // major:minor of the store tmpfs (0:0 when it is a plain directory)
	secrets   map[string]*secret
	viewGen   uint64
	stale     []staleView // replaced view directories, removed after the grace
	staleSize int64       // bytes the stale view directories hold through their hard links
	// mut counts changes to what this store's containers see (swaps, feed mounts); scan is
	// what the last read of its containers' mounts found, reused while neither mut nor the
	// containers' PIDs changed (a container's mounts change only through those).
	mut  uint64
	scan scanCache
}

// scanCache is one store's last complete read of its containers' mounts.
type scanCache struct {
	valid bool
	mut   uint64
	pids  []int
	seen  map[string]map[uint64]bool // secret name -> versions containers use
}

type staleView struct {
	gen  uint64
	at   time.Time
	size int64
}

type secret struct {
	cur  uint64 // current version
	next uint64 // next version number
	size int64  // bytes of the current version
	// mount-swap: versions a running container started with (found by scanning the other mount
	// namespaces), which get the current version mounted on them through the feed.
	bases   map[uint64]*base
	retired []retired // replaced versions that are not bases, waiting to be zeroed and removed
}

type base struct {
	fed    bool      // a feed mount sits on it
	fedAt  time.Time // when it was first covered
	zeroed bool      // its own content was zeroed after the grace
}

type retired struct {
	gen   uint64
	size  int64 // bytes, to bound what replaced versions hold
	epoch uint64
	at    time.Time
}

// Open prepares the root, probes the kernel once, chooses the mode, recovers the stores a
// previous run left and logs the mode once.
func Open(opts Options) (*FS, error) {
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.StoreSize <= 0 {
		opts.StoreSize = DefaultStoreSize
	}
	if opts.MaxInodes <= 0 {
		opts.MaxInodes = DefaultMaxInodes
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	switch opts.Mode {
	case "", ModeMountSwap, ModeMountStack, ModeRestart:
	default:
		return nil, fmt.Errorf("%w: mode %q: must be empty, %q, %q or %q", ErrInvalid, opts.Mode, ModeMountSwap, ModeMountStack, ModeRestart)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("secretfs: root %q: %w", opts.Root, err)
	}
	f := &FS{
		lay:    layout{root: root},
		size:   opts.StoreSize,
		inodes: opts.MaxInodes,
		log:    opts.Logger,
		grace:  cmp.Or(opts.grace, defaultGrace),
		stores: map[string]*store{},

		pending:   map[string]bool{},
		holders:   opts.Holders,
		readPID:   linux.PIDMountinfo,
		readAll:   linux.ForeignMounts,
		unreached: map[string]bool{},
		kick:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),

		crashHook: opts.crashHook,
	}
	if f.selfNS, err = linux.MountNS("self"); err != nil {
		return nil, fmt.Errorf("secretfs: own mount namespace: %w", err)
	}
	f.umask = linux.Umask()
	if err := f.prepareRoot(opts.Mode); err != nil {
		return nil, err
	}
	n, err := f.recover()
	if err != nil {
		return nil, fmt.Errorf("secretfs: recover stores under %s: %w", root, err)
	}
	f.log.Info("secretfs ready", "mode", f.mode, "root", root, "kernel", f.feat.Kernel,
		"new_mount_api", f.feat.NewMountAPI, "move_mount_beneath", f.feat.MoveMountBeneath,
		"move_mount_set_group", f.feat.MoveMountSetGroup, "tmpfs_noswap", f.feat.TmpfsNoswap,
		"mount_privilege", f.feat.MountPrivilege, "recovered_stores", n)
	go f.loop()
	f.poke()
	return f, nil
}

// prepareRoot creates the root, mounts its tmpfs when allowed, probes and chooses the mode.
func (f *FS) prepareRoot(forced Mode) error {
	root := f.lay.root
	owned, err := mountRoot(root)
	if err != nil {
		return err
	}
	probe := f.lay.probe()
	os.Remove(probe)
	if err := os.Mkdir(probe, 0o700); err != nil {
		return fmt.Errorf("secretfs: probe directory: %w", err)
	}
	p := linux.Probe(probe)
	os.Remove(probe)
	f.feat = Features{
		Kernel:            p.Kernel,
		NewMountAPI:       p.NewMountAPI,
		MoveMountBeneath:  p.MoveMountBeneath,
		MoveMountSetGroup: p.SetGroup,
		TmpfsNoswap:       p.TmpfsNoswap,
		MountPrivilege:    p.MountPrivilege && owned,
		SharedRoot:        p.Shared,
	}
	canSwap := f.feat.MountPrivilege && f.feat.NewMountAPI && f.feat.SharedRoot && f.feat.MoveMountSetGroup && f.feat.MoveMountBeneath
	canStack := f.feat.MountPrivilege && f.feat.NewMountAPI && f.feat.SharedRoot
	switch {
	case forced == ModeMountSwap && !canSwap:
		return fmt.Errorf("%w: mode %s needs mount privilege, the new mount API, MOVE_MOUNT_SET_GROUP and MOVE_MOUNT_BENEATH (features: %+v)", ErrNotSupported, forced, f.feat)
	case forced == ModeMountStack && !canStack:
		return fmt.Errorf("%w: mode %s needs mount privilege and the new mount API (features: %+v)", ErrNotSupported, forced, f.feat)
	case forced != "":
		f.mode = forced
	case canSwap:
		f.mode = ModeMountSwap
	case canStack:
		f.mode = ModeMountStack
	default:
		f.mode = ModeRestart
	}
	if f.mode == ModeRestart && !f.feat.MountPrivilege {
		// Without our own tmpfs the files land wherever the root is: refuse a disk.
		mem, err := linux.IsMemoryFS(root)
		if err != nil {
			return fmt.Errorf("secretfs: root: %w", err)
		}
		if !mem {
			return fmt.Errorf("%w: restart mode without mount privilege needs the root %s on tmpfs or ramfs, so no secret reaches a disk", ErrNotSupported, root)
		}
	}
	for _, dir := range []string{f.lay.storesDir(), filepath.Join(root, "feed"), filepath.Join(root, "publish"), filepath.Join(root, "view"), f.lay.trashDir(), filepath.Join(root, "fix")} {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("secretfs: %w", err)
		}
	}
	// Trash from an earlier run, whatever its name: nothing uses it. (Generations start at 0,
	// which parseGen refuses: a run killed before its first background pass left trash/0
	// mounted for good.) Numbering goes on after the highest, should one not go away.
	if entries, err := os.ReadDir(f.lay.trashDir()); err == nil {
		for _, e := range entries {
			f.dropTrash(filepath.Join(f.lay.trashDir(), e.Name()))
			if gen, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && gen >= f.trash.gen {
				f.trash.gen = gen + 1
			}
		}
	}
	return nil
}

// mountRoot makes root 0700 and mounts the root's small private tmpfs unless an earlier run
// left it; owned false means no mount privilege (the probe then says so).
func mountRoot(root string) (bool, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return false, fmt.Errorf("secretfs: root: %w", err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return false, fmt.Errorf("secretfs: root: %w", err)
	}
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		return false, fmt.Errorf("secretfs: mountinfo: %w", err)
	}
	owned := false
	if st := linux.Stack(mounts, root); len(st) > 0 {
		top := st[len(st)-1]
		owned = top.FSType == "tmpfs" && top.Source == rootSource
	}
	if !owned {
		// A failure here means no mount privilege; the probe reports it.
		if linux.MountTmpfs(root, rootSource, linux.Tmpfs{Size: rootSize, Inodes: rootInodes, Mode: 0o700}) == nil {
			owned = true
		}
	}
	if owned {
		// Private: our mounts must not propagate to copies of the root in other namespaces.
		if err := linux.SetPropagation(root, linux.Private); err != nil {
			return false, fmt.Errorf("secretfs: root: %w", err)
		}
	}
	return owned, nil
}

// crashPoint marks a step after which a kill leaves a state that recovery must handle; tests
// stop operations there (Options.crashHook).
func (f *FS) crashPoint(point string) {
	if f.crashHook != nil {
		f.crashHook(point)
	}
}

// toTrash moves the top mount at p into the current trash generation.
func (f *FS) toTrash(p string) error {
	dir := f.lay.trash(f.trash.gen)
	if !f.trash.mounted {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := linux.MountTmpfs(dir, rootSource, linux.Tmpfs{Size: 64 << 10, Inodes: 1 << 20, Mode: 0o700}); err != nil {
			return err
		}
		f.trash.mounted = true
		f.crashPoint("trash mounted")
	}
	f.trash.n++
	target := filepath.Join(dir, strconv.FormatUint(f.trash.n, 10))
	if err := unix.Mknod(target, unix.S_IFREG|0o400, 0); err != nil {
		return &os.PathError{Op: "mknod", Path: target, Err: err}
	}
	f.crashPoint("trash file made")
	if err := linux.Move(p, target); err != nil {
		return err
	}
	f.crashPoint("old top moved to the trash")
	return nil
}

// rotateTrash starts a new trash generation and returns the old one for dropTrash, or "".
func (f *FS) rotateTrash() string {
	if !f.trash.mounted {
		return ""
	}
	old := f.lay.trash(f.trash.gen)
	f.trash.gen++
	f.trash.n = 0
	f.trash.mounted = false
	return old
}

// dropTrash detaches a trash generation and everything in it with one umount.
func (f *FS) dropTrash(dir string) {
	if _, err := linux.UnmountAll(dir); err != nil {
		f.log.Warn("secretfs: unmount trash", "path", dir, "err", err)
		return
	}
	os.Remove(dir)
}

// stopLoop stops the background loop; benchmarks call it to drive reconcile themselves.
func (f *FS) stopLoop() {
	f.stopOnce.Do(func() {
		close(f.quit)
		<-f.done
	})
}

// Mode returns the mode chosen (or forced) at Open. Stores recovered from an earlier run keep
// the mode they were created in (Store.Mode).
func (f *FS) Mode() Mode { return f.mode }

// Features returns what Open probed.
func (f *FS) Features() Features { return f.feat }

// Close stops background work and leaves every store in place: the agent restarts without
// disturbing running containers.
func (f *FS) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	old := f.rotateTrash()
	f.mu.Unlock()
	f.stopLoop()
	if old != "" {
		f.dropTrash(old)
	}
	return nil
}

// Stores returns the stores that exist now, sorted by id.
func (f *FS) Stores() ([]*Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	out := make([]*Store, 0, len(f.stores))
	for _, st := range f.stores {
		out = append(out, f.public(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Store returns the paths of one store, without listing the others.
func (f *FS) Store(id string) (*Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	st := f.stores[id]
	if st == nil {
		return nil, fmt.Errorf("%w: store %q", ErrNotFound, clip(id))
	}
	return f.public(st), nil
}

func (f *FS) public(st *store) *Store {
	s := &Store{ID: st.id, Mode: st.mode, Files: make(map[string]string, len(st.secrets))}
	for name := range st.secrets {
		if st.mode == ModeRestart {
			s.Files[name] = f.lay.file(st.id, name)
		} else {
			s.Files[name] = f.lay.publish(st.id, name)
		}
	}
	s.ViewSource = f.lay.view(st.id)
	if st.mode == ModeRestart {
		s.DirView = f.lay.view(st.id)
	} else {
		s.DirView = f.lay.viewMount(st.id)
	}
	return s
}

// Depth returns how many mounts a container bound to the publish point of name can see stacked
// at /<name>: in mount-swap mode the publish point's stack, or the version the container started
// with plus what the feed mounted on it (2); in mount-stack mode every update adds one; restart
// mode has no mounts (0).
func (f *FS) Depth(id, name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, sec, err := f.lookup(id, name)
	if err != nil {
		return 0, err
	}
	if st.mode == ModeRestart {
		return 0, nil
	}
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		return 0, err
	}
	depth := len(linux.Stack(mounts, f.lay.publish(id, name)))
	for gen := range sec.bases {
		if d := len(linux.Stack(mounts, f.lay.feedPoint(id, name, gen))); d > 0 && 1+d > depth {
			depth = 1 + d
		}
	}
	return depth, nil
}

// Depths returns Depth's answer for every store (the deepest of its secrets), from one read of
// the mount table, so measuring a node costs in proportion to its mounts, not mounts × secrets.
func (f *FS) Depths() (map[string]int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, errClosed
	}
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		return nil, err
	}
	at := make(map[string]int, len(mounts))
	for _, m := range mounts {
		at[m.Mountpoint]++ // every mount of a stack sits at the same mount point
	}
	out := make(map[string]int, len(f.stores))
	for id, st := range f.stores {
		deepest := 0
		if st.mode != ModeRestart {
			for name, sec := range st.secrets {
				deepest = max(deepest, at[f.lay.publish(id, name)])
				for gen := range sec.bases {
					if d := at[f.lay.feedPoint(id, name, gen)]; d > 0 {
						deepest = max(deepest, 1+d)
					}
				}
			}
		}
		out[id] = deepest
	}
	return out, nil
}

func (f *FS) lookup(id, name string) (*store, *secret, error) {
	if f.closed {
		return nil, nil, errClosed
	}
	if err := ValidateID(id); err != nil {
		return nil, nil, err
	}
	st := f.stores[id]
	if st == nil {
		return nil, nil, fmt.Errorf("%w: store %q", ErrNotFound, id)
	}
	sec := st.secrets[name]
	if sec == nil {
		return nil, nil, fmt.Errorf("%w: store %q: secret %q", ErrNotFound, id, clip(name))
	}
	return st, sec, nil
}

func (st *store) names() []string {
	names := make([]string, 0, len(st.secrets))
	for name := range st.secrets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// writeVersion creates path with data, owned by uid:gid, mode 0400, before anyone can see it:
// the directory is root-only and nothing is mounted from the file yet.
func writeVersion(path string, data []byte, uid, gid int, umask uint32) (err error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return &os.PathError{Op: "create", Path: path, Err: err}
	}
	defer func() {
		if cerr := unix.Close(fd); err == nil && cerr != nil {
			err = &os.PathError{Op: "close", Path: path, Err: cerr}
		}
		if err != nil {
			unix.Unlink(path)
		}
	}()
	for rest := data; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			return &os.PathError{Op: "write", Path: path, Err: err}
		}
		rest = rest[n:]
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: path, Err: err}
	}
	if umask&0o400 != 0 { // the umask stripped what we created with
		if err := unix.Fchmod(fd, 0o400); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return nil
}

// zeroFile overwrites a regular file with zeros and truncates it, so its old content leaves
// memory even while a mount or an open file still holds the inode.
func zeroFile(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	zeros := make([]byte, 32<<10)
	for left := st.Size; left > 0; {
		n := int64(len(zeros))
		if left < n {
			n = left
		}
		w, err := unix.Write(fd, zeros[:n])
		if err != nil {
			return &os.PathError{Op: "zero", Path: path, Err: err}
		}
		left -= int64(w)
	}
	if err := unix.Ftruncate(fd, 0); err != nil {
		return &os.PathError{Op: "truncate", Path: path, Err: err}
	}
	return nil
}

// zeroTree zeroes every regular file below dir without following symlinks.
func zeroTree(dir string) error {
	var errs []error
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			return nil
		}
		if d.Type().IsRegular() {
			if err := zeroFile(path); err != nil {
				errs = append(errs, err)
			}
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
