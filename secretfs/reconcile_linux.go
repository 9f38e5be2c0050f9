package secretfs

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// Reconcile: which versions do running containers use?
//
// A container gets a copy of the mount that was on top of the publish point when it started,
// and that copy receives only what is mounted on its own version, through the feed. So after
// every update (and at start) secretfs scans the mount namespaces of the store's containers
// (Options.Holders; without it, every other namespace) for mounts that are slaves of the
// store's feed, outside the root: each is a container's /<name>, and its root names
// the version it started with (its base). A base that is not current gets the current version
// mounted on it; a base whose container is gone is released; a replaced version that no scan
// found after its replacement is zeroed and removed (nobody can bind it any more: it has left
// the publish point). So an update reaches at once every container the last scan saw; one that
// started after it (at most rescanInterval earlier) gets the value from the scan the update
// triggers, milliseconds later. A store whose containers could not all be read (unknown PIDs,
// a container restarting, a mountinfo that could not be read) is left as it is by that pass:
// nothing of it is zeroed or released, and the pass is retried (minRetry..maxRetry).

// poke asks the background loop to reconcile soon.
func (f *FS) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *FS) loop() {
	defer close(f.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	rescan := time.NewTicker(rescanInterval)
	defer rescan.Stop()
	var last time.Time
	for {
		full := false
		select {
		case <-f.quit:
			return
		case <-f.kick:
			wait := reconcileDelay
			if w := burstInterval - time.Since(last); w > wait {
				wait = w
			}
			select {
			case <-f.quit:
				return
			case <-time.After(wait):
			}
		case <-timer.C:
		case <-rescan.C:
			full = true // also a safety net: every store is looked at now and then
		}
		next := f.reconcilePass(full)
		last = time.Now()
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
}

// found maps feed group -> secret name -> versions containers started with.
type found map[int]map[string]map[uint64]bool

// scanResult is what one scan learnt: the versions containers use, the feed groups whose
// containers were all read (a group missing from complete keeps every version it has), and
// the stores' new scan caches.
type scanResult struct {
	seen     found
	complete map[int]bool
	caches   map[string]scanCache
}

// pass is what one reconcile pass looks at: the retire epoch its scan covers, the mount-swap
// stores to scan, every store it visits, and the holders' version it began at.
type pass struct {
	epoch   uint64
	seq     uint64 // numbers the passes: one that began before the last applied is stale (see apply)
	targets map[string]scanTarget
	visit   []string
	holders uint64
	quiet   bool // the holders' version did not change since the last pass: only pending stores are visited
}

// scanTarget is a store to scan, as it was when the pass began.
type scanTarget struct {
	group int
	mut   uint64
	cache scanCache
}

// reconcile runs one pass and returns when time-based work (zeroing after the grace, a retry
// of an incomplete scan) is next due, or the zero time. The scan and the trash umount run
// without the lock.
func (f *FS) reconcile() time.Time { return f.reconcilePass(false) }

// reconcilePass is reconcile; full visits every store even when the holders did not change.
func (f *FS) reconcilePass(full bool) time.Time {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return time.Time{}
	}
	p := f.scanTargets(full)
	f.mu.Unlock()

	res := f.scan(p.targets)

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return time.Time{}
	}
	if old := f.rotateTrash(); old != "" {
		// One umount for every publish-point mount replaced since the last pass.
		f.mu.Unlock()
		f.dropTrash(old)
		f.mu.Lock()
		if f.closed {
			return time.Time{}
		}
	}
	return f.apply(p, res)
}

// reconcileLocked is reconcile for a caller that holds the lock: Update uses it when a burst
// of updates outruns the background loop, so that replaced versions cannot fill the store.
func (f *FS) reconcileLocked() {
	p := f.scanTargets(false)
	res := f.scan(p.targets)
	if old := f.rotateTrash(); old != "" {
		f.dropTrash(old)
	}
	f.apply(p, res)
	f.poke() // let the loop re-arm its timer for what is still due
}

// scanTargets plans a pass: the retire epoch a scan starting now covers, and the stores to
// look at. While the holders' version stays the same as at the last pass (quiet), a settled
// store (its last scan is current and nothing of it waits for a grace or a release) has
// nothing a pass could do: a quiet pass visits only the stores in pending, which every change
// of a store enters, so it costs in proportion to the stores that changed, not to the node.
// Any other pass (the first, a change of the holders, the periodic rescan: full) visits every
// store. Passes are numbered (seq). Call with the lock held.
func (f *FS) scanTargets(full bool) pass {
	f.scans++
	p := pass{epoch: f.epoch, seq: f.scans, targets: map[string]scanTarget{}}
	if v, ok := f.holders.(HoldersVersioner); ok {
		p.holders = v.HoldersVersion()
		p.quiet = !full && f.passDone && p.holders == f.passHolders
	}
	add := func(st *store) {
		p.visit = append(p.visit, st.id)
		if st.mode == ModeMountSwap && st.group != 0 {
			p.targets[st.id] = scanTarget{group: st.group, mut: st.mut, cache: st.scan}
		}
	}
	if p.quiet {
		for id := range f.pending {
			if st := f.stores[id]; st != nil {
				add(st)
			}
		}
		return p
	}
	for _, st := range f.stores {
		add(st)
	}
	return p
}

// settled reports whether a pass has nothing to do for st while its containers stay as they
// are: mount-swap, its last scan saw its current mounts; no replaced version or view waits to
// be zeroed or removed; every fed base is zeroed.
func (st *store) settled() bool {
	if len(st.stale) > 0 {
		return false
	}
	if st.mode == ModeMountSwap && (!st.scan.valid || st.scan.mut != st.mut) {
		return false
	}
	for _, sec := range st.secrets {
		if len(sec.retired) > 0 {
			return false
		}
		for _, b := range sec.bases {
			if b.fed && !b.zeroed {
				return false
			}
		}
	}
	return true
}

// scan finds the versions running containers started with. With Options.Holders it reads the
// mounts of each store's containers, and only of stores that changed since their last read
// (an update, a feed mount, a container started or stopped), so an update costs in proportion
// to the containers of its store; without Holders it reads every process on the machine.
func (f *FS) scan(targets map[string]scanTarget) scanResult {
	res := scanResult{seen: found{}, complete: map[int]bool{}, caches: map[string]scanCache{}}
	if len(targets) == 0 {
		return res
	}
	if f.holders == nil {
		mounts, err := f.readAll(f.selfNS)
		if err != nil {
			f.scanFailed("*", "", 0, err)
			return res
		}
		groups := map[int]bool{}
		for id, t := range targets {
			groups[t.group] = true
			f.scanReached(id)
		}
		f.index(res.seen, mounts, groups)
		res.complete = groups
		return res
	}
	for id, t := range targets {
		c, err := f.scanStore(id, t)
		if err != nil {
			continue
		}
		if len(c.seen) > 0 {
			res.seen[t.group] = c.seen
		}
		res.complete[t.group] = true
		res.caches[id] = c
	}
	return res
}

// scanStore reads the mounts of the running containers that use store id, or reuses its last
// read when neither the store nor its containers changed since.
func (f *FS) scanStore(id string, t scanTarget) (scanCache, error) {
	holders, known := f.holders.Holders(id)
	if !known {
		err := fmt.Errorf("%w: its containers are not known yet (starting, restarting, or the engine's events are behind)", linux.ErrScanIncomplete)
		f.scanFailed(id, "", 0, err)
		return scanCache{}, err
	}
	pids := make([]int, len(holders))
	for i, h := range holders {
		pids[i] = h.PID
	}
	slices.Sort(pids)
	if t.cache.valid && t.cache.mut == t.mut && slices.Equal(t.cache.pids, pids) {
		f.cacheHits.Add(1)
		return t.cache, nil
	}
	seen := found{}
	groups := map[int]bool{t.group: true}
	for _, h := range holders {
		mounts, err := f.readPID(h.PID)
		if err != nil {
			err = fmt.Errorf("%w: %w", linux.ErrScanIncomplete, err)
			f.scanFailed(id, h.Container, h.PID, err)
			return scanCache{}, err
		}
		f.index(seen, mounts, groups)
	}
	f.scanReached(id)
	return scanCache{valid: true, mut: t.mut, pids: pids, seen: seen[t.group]}, nil
}

// scanFailed counts an incomplete scan and warns once per store until it is reached again.
func (f *FS) scanFailed(id, container string, pid int, err error) {
	f.incomplete.Add(1)
	f.unreachedMu.Lock()
	_, told := f.unreached[id]
	f.unreached[id] = true
	f.unreachedMu.Unlock()
	if told {
		return
	}
	f.log.Warn("secretfs: could not see which versions a container uses; its replaced versions are kept and the scan is retried",
		"store", id, "container", container, "pid", pid, "err", err)
}

// scanReached notes a complete scan of store id and says so when an earlier one failed.
func (f *FS) scanReached(id string) {
	f.unreachedMu.Lock()
	_, was := f.unreached[id]
	delete(f.unreached, id)
	_, all := f.unreached["*"]
	delete(f.unreached, "*")
	f.unreachedMu.Unlock()
	if was || all {
		f.log.Info("secretfs: the containers of a store are reached again", "store", id)
	}
}

// IncompleteScans counts the scans (per store) that could not read every container's mounts
// since Open: each kept every replaced version of its store and was retried.
func (f *FS) IncompleteScans() uint64 { return f.incomplete.Load() }

// apply acts on the scan of pass p. Call with the lock held.
func (f *FS) apply(p pass, res scanResult) time.Time {
	now := time.Now()
	incomplete := false
	var next time.Time
	due := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	// A scan that began before one already applied can not know of containers that started in
	// between: nothing it saw is acted on.
	stale := p.seq < f.applied
	if stale {
		res = scanResult{}
	}
	f.applied = max(f.applied, p.seq)
	for id, c := range res.caches {
		if st := f.stores[id]; st != nil {
			st.scan = c
		}
	}
	for _, id := range p.visit {
		st := f.stores[id]
		if st == nil {
			continue // wiped meanwhile
		}
		switch st.mode {
		case ModeMountSwap:
			scanned := res.complete[st.group]
			incomplete = incomplete || (!scanned && !stale)
			f.reconcileSwap(st, scanned, res.seen[st.group], p.epoch, now, due)
		case ModeMountStack:
			f.reconcileStack(st, now, due)
		}
		f.removeStaleViews(st, now, due)
		if st.settled() {
			delete(f.pending, id)
		} else {
			f.pending[id] = true
		}
	}
	if !stale {
		f.passDone, f.passHolders = true, p.holders
	}
	if incomplete {
		due(now.Add(f.nextRetry()))
	} else {
		f.retry = 0
	}
	return next
}

// nextRetry is how long to wait before scanning again after an incomplete scan: from
// minRetry, doubling up to maxRetry while scans stay incomplete. Call with the lock held.
func (f *FS) nextRetry() time.Duration {
	switch {
	case f.retry == 0:
		f.retry = minRetry
	case f.retry < maxRetry:
		f.retry = min(2*f.retry, maxRetry)
	}
	return f.retry
}

// index keeps the mounts that are a container's copy of a publish point: slaves of a feed,
// rooted at a version, mounted outside our root (copies of our own tree in namespaces that
// were created while it existed sit under the root and are no container's /<name>).
func (f *FS) index(out found, mounts []linux.MountInfo, groups map[int]bool) {
	for _, m := range mounts {
		if !groups[m.Master] || under(m.Mountpoint, f.lay.root) {
			continue
		}
		name, gen, ok := parseVersionRoot(m.Root)
		if !ok {
			continue
		}
		if out[m.Master] == nil {
			out[m.Master] = map[string]map[uint64]bool{}
		}
		if out[m.Master][name] == nil {
			out[m.Master][name] = map[uint64]bool{}
		}
		out[m.Master][name][gen] = true
	}
}

func (f *FS) reconcileSwap(st *store, scanned bool, seen map[string]map[uint64]bool, epoch uint64, now time.Time, due func(time.Time)) {
	for name, sec := range st.secrets {
		if scanned {
			f.updateBases(st, name, sec, seen[name], now)
		}
		// A fed base is hidden in every container that uses it: zero its own content once
		// readers that opened it before it was covered had the grace to finish.
		for gen, b := range sec.bases {
			if !b.fed || b.zeroed {
				continue
			}
			if now.Sub(b.fedAt) < f.grace {
				due(b.fedAt.Add(f.grace))
				continue
			}
			if err := zeroFile(f.lay.version(st.id, name, gen)); err != nil {
				f.log.Warn("secretfs: zero covered version", "store", st.id, "secret", name, "version", gen, "err", err)
				continue
			}
			b.zeroed = true
		}
		if !scanned {
			if len(sec.retired) > 0 {
				due(now.Add(f.grace))
			}
			continue
		}
		// Replaced versions that no container uses: zero and remove after the grace; beyond
		// maxPendingUnbound per secret remove at once (unlinking never tears a reader).
		keep := make([]retired, 0, len(sec.retired)) // filled newest first: must not alias
		pending := 0
		for i := len(sec.retired) - 1; i >= 0; i-- { // newest first, so the cap drops the oldest
			r := sec.retired[i]
			path := f.lay.version(st.id, name, r.gen)
			switch {
			case r.epoch > epoch: // replaced after the scan began: not verified yet
				keep = append(keep, r)
				continue
			case now.Sub(r.at) >= f.grace:
				if err := zeroFile(path); err != nil && !os.IsNotExist(err) {
					f.log.Warn("secretfs: zero replaced version", "store", st.id, "secret", name, "version", r.gen, "err", err)
				}
			case pending < maxPendingUnbound:
				pending++
				keep = append(keep, r)
				due(r.at.Add(f.grace))
				continue
			}
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
				f.log.Warn("secretfs: remove replaced version", "store", st.id, "secret", name, "version", r.gen, "err", err)
				keep = append(keep, r)
			}
		}
		// keep was filled newest first; restore oldest-first order.
		for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
			keep[i], keep[j] = keep[j], keep[i]
		}
		sec.retired = keep
	}
}

// updateBases adopts the versions running containers started with and releases the ones whose
// containers are gone.
func (f *FS) updateBases(st *store, name string, sec *secret, seen map[uint64]bool, now time.Time) {
	for gen := range seen {
		if sec.bases[gen] != nil {
			continue
		}
		if gen != sec.cur && !exists(f.lay.version(st.id, name, gen)) {
			f.log.Error("secretfs: a container uses a version that was already removed; it keeps that value until it restarts",
				"store", st.id, "secret", name, "version", gen)
			continue
		}
		b := &base{}
		sec.bases[gen] = b
		sec.retired = dropRetired(sec.retired, gen)
		if gen == sec.cur {
			continue // fed when it is replaced
		}
		if err := f.feed(st, name, gen, sec.cur, false); err != nil {
			f.log.Error("secretfs: give the current version to a container that started with an older one",
				"store", st.id, "secret", name, "version", gen, "err", err)
			continue
		}
		b.fed, b.fedAt = true, now
		f.log.Info("secretfs: container started with a replaced version; current version mounted on it",
			"store", st.id, "secret", name, "version", gen, "current", sec.cur)
	}
	for gen, b := range sec.bases {
		if seen[gen] {
			continue
		}
		if b.fed {
			if err := f.unfeed(st, name, gen); err != nil {
				f.log.Warn("secretfs: release version of a stopped container", "store", st.id, "secret", name, "version", gen, "err", err)
				continue
			}
		}
		delete(sec.bases, gen)
		if gen != sec.cur {
			sec.retired = append(sec.retired, retired{gen: gen}) // verified by this scan, grace passed
		}
	}
}

func dropRetired(rs []retired, gen uint64) []retired {
	out := rs[:0]
	for _, r := range rs {
		if r.gen != gen {
			out = append(out, r)
		}
	}
	return out
}

// reconcileStack zeroes covered layers of mount-stack publish points after the grace. They stay
// mounted (removing a layer would remove everything above it).
func (f *FS) reconcileStack(st *store, now time.Time, due func(time.Time)) {
	for name, sec := range st.secrets {
		keep := sec.retired[:0]
		for _, r := range sec.retired {
			if now.Sub(r.at) < f.grace {
				keep = append(keep, r)
				due(r.at.Add(f.grace))
				continue
			}
			if err := zeroFile(f.lay.version(st.id, name, r.gen)); err != nil && !os.IsNotExist(err) {
				f.log.Warn("secretfs: zero covered layer", "store", st.id, "secret", name, "version", r.gen, "err", err)
				keep = append(keep, r)
			}
		}
		sec.retired = keep
	}
}
