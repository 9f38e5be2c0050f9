package secretfs

import (
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// fakeHolders answers Holders from a map; known=false for every store while unknown is set.
// It numbers its changes (HoldersVersioner), as the container worker does, and counts lookups.
type fakeHolders struct {
	mu      sync.Mutex
	pids    map[string][]int
	unknown bool
	version uint64
	lookups int
}

func (h *fakeHolders) Holders(id string) ([]Holder, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lookups++
	if h.unknown {
		return nil, false
	}
	var out []Holder
	for _, pid := range h.pids[id] {
		out = append(out, Holder{Container: "c-" + id, PID: pid})
	}
	return out, true
}

func (h *fakeHolders) HoldersVersion() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.version
}

func (h *fakeHolders) set(id string, pids ...int) {
	h.mu.Lock()
	h.pids[id] = pids
	h.version++
	h.mu.Unlock()
}

func (h *fakeHolders) add(id string, pid int) {
	h.mu.Lock()
	h.pids[id] = append(h.pids[id], pid)
	h.version++
	h.mu.Unlock()
}

func (h *fakeHolders) setUnknown(v bool) {
	h.mu.Lock()
	h.unknown = v
	h.version++
	h.mu.Unlock()
}

// takeLookups returns the Holders lookups since the last call.
func (h *fakeHolders) takeLookups() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := h.lookups
	h.lookups = 0
	return n
}

// checkPending checks the invariant quiet passes rely on: a store that is not pending is
// settled.
func checkPending(t testing.TB, f *FS, when string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, st := range f.stores {
		if !f.pending[id] && !st.settled() {
			t.Errorf("%s: store %s is not settled and not pending: a quiet pass would skip it", when, id)
		}
	}
}

// readerSet starts and stops readers of one store and, with holders, keeps them named there as
// the container worker does.
type readerSet struct {
	t       testing.TB
	f       *FS
	h       *fakeHolders // nil: no Options.Holders
	store   string
	running []*nsReader
}

// openReaders opens an FS in mode on e, with a versioned fakeHolders when holders is set.
func openReaders(t testing.TB, e *env, mode Mode, store string, holders bool) (*FS, *readerSet) {
	rs := &readerSet{t: t, store: store}
	if !holders {
		rs.f = e.open(mode)
		return rs.f, rs
	}
	rs.h = &fakeHolders{pids: map[string][]int{}}
	f, err := Open(Options{Root: e.root, Mode: mode, Logger: testLogger(e), Holders: rs.h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkPending(t, f, "at the end of the test")
		f.Close()
	})
	rs.f = f
	return f, rs
}

// reconcile runs a pass and checks that a store that is not pending is settled.
func (rs *readerSet) reconcile() {
	rs.t.Helper()
	rs.f.reconcile()
	checkPending(rs.t, rs.f, "after a pass")
}

// start starts a reader of the publish point p in its own mount namespace.
func (rs *readerSet) start(p string) *nsReader {
	r := startNSReader(rs.t, p)
	rs.running = append(rs.running, r)
	if rs.h != nil {
		rs.h.add(rs.store, r.pid)
	}
	return r
}

// stop stops readers.
func (rs *readerSet) stop(readers ...*nsReader) {
	for _, r := range readers {
		r.stop()
		rs.running = slices.DeleteFunc(rs.running, func(x *nsReader) bool { return x == r })
	}
	if rs.h != nil {
		pids := make([]int, 0, len(rs.running))
		for _, r := range rs.running {
			pids = append(pids, r.pid)
		}
		rs.h.set(rs.store, pids...)
	}
}

// unversioned hides fakeHolders' HoldersVersion: a Holders that does not number its changes.
type unversioned struct{ h *fakeHolders }

func (u unversioned) Holders(id string) ([]Holder, bool) { return u.h.Holders(id) }

// TestIncompleteScanKeepsVersions is the failure mode of issue 11: the agent could not read a
// container's mount namespace (EACCES under the unit's capabilities), concluded that nobody used
// the version that container started with, and zeroed it: the container's /<name> turned empty
// for good. A scan that can not prove a version unused must keep it, warn once naming the
// store, count the failure and retry; once the scan works again the container gets the current
// value.
func TestIncompleteScanKeepsVersions(t *testing.T) {
	eacces := func(int) ([]linux.MountInfo, error) {
		return nil, &os.PathError{Op: "open", Path: "/proc/4242/mountinfo", Err: syscall.EACCES}
	}
	eaccesAll := func(uint64) ([]linux.MountInfo, error) {
		return nil, &os.PathError{Op: "open", Path: "/proc/4242/mountinfo", Err: syscall.EACCES}
	}
	breakPID := func(f *FS, h *fakeHolders) { f.mu.Lock(); f.readPID = eacces; f.mu.Unlock() }
	fixPID := func(f *FS, h *fakeHolders, r1, r2 int) {
		f.mu.Lock()
		f.readPID = linux.PIDMountinfo
		f.mu.Unlock()
		h.set("svc1", r1, r2)
	}
	breakKnown := func(f *FS, h *fakeHolders) { h.setUnknown(true) }
	fixKnown := func(f *FS, h *fakeHolders, r1, r2 int) { h.set("svc1", r1, r2); h.setUnknown(false) }
	tests := []struct {
		name    string
		holders string                                  // Options.Holders: "" none, "versioned" (numbers its changes, as the worker does), "plain"
		breakIt func(f *FS, h *fakeHolders)             // the scan fails from here on
		fixIt   func(f *FS, h *fakeHolders, r1, r2 int) // and works again
	}{
		{"holder mountinfo EACCES", "versioned", breakPID, fixPID},
		{"holder mountinfo EACCES, unversioned holders", "plain", breakPID, fixPID},
		{"holders not known", "versioned", breakKnown, fixKnown},
		{"holders not known, unversioned holders", "plain", breakKnown, fixKnown},
		{"machine-wide scan EACCES", "",
			func(f *FS, h *fakeHolders) { f.mu.Lock(); f.readAll = eaccesAll; f.mu.Unlock() },
			func(f *FS, h *fakeHolders, r1, r2 int) { f.mu.Lock(); f.readAll = linux.ForeignMounts; f.mu.Unlock() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := &fakeHolders{pids: map[string][]int{}}
			opts := Options{Root: e.root, Mode: ModeMountSwap, Logger: testLogger(e)}
			switch tc.holders {
			case "versioned":
				opts.Holders = h
			case "plain":
				opts.Holders = unversioned{h}
			}
			f, err := Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.stopLoop() // the test drives reconcile itself
			st, err := f.Create(e.spec("svc1", "a"))
			if err != nil {
				t.Fatal(err)
			}
			val := func(i int) Secret { return Secret{Name: "a", Value: canary("incomplete", i), Format: FormatValueOnly} }
			update := func(i int) {
				t.Helper()
				e.remember(val(i).Value)
				if err := f.Update("svc1", []Secret{val(i)}); err != nil {
					t.Fatal(err)
				}
			}
			r1 := startNSReader(t, st.Files["a"]) // a container that started with version 1
			h.set("svc1", r1.pid)
			f.reconcile()
			update(2)
			if got := r1.read(); got != want(val(2)) {
				t.Fatalf("reader 1 reads %q after update 2, want %q", got, want(val(2)))
			}
			r2 := startNSReader(t, st.Files["a"]) // started with version 2; never seen by a scan
			tc.breakIt(f, h)
			f.mu.Lock()
			f.grace = 0
			f.mu.Unlock()
			before := f.IncompleteScans()
			update(3)
			for range 3 {
				f.reconcile()
				checkPending(t, f, "a failing pass")
			}
			// Reader 2's version was replaced and no scan could tell whether anyone used it: it
			// must keep its content (the container reads the last value it had), never zeros.
			if got := r2.read(); got != want(val(2)) {
				t.Errorf("while the scan fails, reader 2 reads %q, want its last value %q", got, want(val(2)))
			}
			if got := r1.read(); got != want(val(3)) {
				t.Errorf("reader 1 (seen before the failure) reads %q, want %q", got, want(val(3)))
			}
			if n := f.IncompleteScans() - before; n < 3 {
				t.Errorf("IncompleteScans grew by %d over 3 failed passes, want >= 3", n)
			}
			logs := e.log.String()
			if n := strings.Count(logs, "could not see which versions a container uses"); n != 1 {
				t.Errorf("%d warnings for the failing scans, want exactly 1 (once per store)", n)
			}
			if tc.holders != "" && !strings.Contains(logs, "store=svc1") {
				t.Errorf("the warning does not name the store:\n%s", logs)
			}
			f.mu.Lock()
			next := f.apply(f.scanTargets(false), scanResult{seen: found{}, complete: map[int]bool{}})
			f.mu.Unlock()
			if next.IsZero() {
				t.Error("an incomplete scan did not schedule a retry")
			}

			tc.fixIt(f, h, r1.pid, r2.pid)
			f.reconcile()
			for n, r := range []*nsReader{r1, r2} {
				if got := r.read(); got != want(val(3)) {
					t.Errorf("after the scan works again, reader %d reads %q, want %q", n+1, got, want(val(3)))
				}
			}
			if !strings.Contains(e.log.String(), "reached again") {
				t.Error("no log line says the store is reached again")
			}
		})
	}
}

// TestScanReadsOnlyChangedStores: with Holders, a pass reads the mounts of a store's containers
// only when the store changed (an update, a feed mount) or its containers did (a PID came or
// went); an update of one store among many costs one store's read (issue 16), and the answer
// stays right: a late starter still gets the current value.
func TestScanReadsOnlyChangedStores(t *testing.T) {
	e := newEnv(t)
	h := &fakeHolders{pids: map[string][]int{}}
	f, err := Open(Options{Root: e.root, Mode: ModeMountSwap, Logger: testLogger(e), Holders: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	f.stopLoop()
	var mu sync.Mutex
	reads := map[int]int{}
	f.readPID = func(pid int) ([]linux.MountInfo, error) {
		mu.Lock()
		reads[pid]++
		mu.Unlock()
		return linux.PIDMountinfo(pid)
	}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range reads {
			n += c
		}
		clear(reads)
		return n
	}
	ids := []string{"s1", "s2", "s3", "s4"}
	files := map[string]string{}
	for _, id := range ids {
		st, err := f.Create(e.spec(id, "a"))
		if err != nil {
			t.Fatal(err)
		}
		files[id] = st.Files["a"]
		r := startNSReader(t, st.Files["a"])
		h.set(id, r.pid)
	}
	val := func(i int) Secret { return Secret{Name: "a", Value: canary("cache", i), Format: FormatValueOnly} }
	steps := []struct {
		name  string
		do    func()
		reads int
	}{
		{"first pass reads every store", func() {}, 4},
		{"nothing changed: no read", func() {}, 0},
		{"update of one store: its containers only", func() {
			e.remember(val(2).Value)
			if err := f.Update("s2", []Secret{val(2)}); err != nil {
				t.Fatal(err)
			}
		}, 1},
		{"settled again", func() {}, 0},
		{"a container of s3 starts: that store only", func() {
			r := startNSReader(t, files["s3"])
			h.add("s3", r.pid)
		}, 2},
	}
	for _, st := range steps {
		st.do()
		checkPending(t, f, st.name+" (before the pass)")
		f.reconcile()
		if n := total(); n != st.reads {
			t.Errorf("%s: %d mountinfo reads, want %d", st.name, n, st.reads)
		}
		checkPending(t, f, st.name)
	}
}

// TestQuietPassVisitsChangedStoresOnly: with a Holders that numbers its changes, a pass while
// no container started, stopped or restarted looks only at the stores that changed or have
// work waiting (a grace, a release), not at every store on the node (issue 16: the pass over
// 1,000 stores took 28% of the agent's CPU during a stream to one of them); any change of the
// holders, and the periodic rescan, make a pass look at every store again. A Holders without a
// number gets every store looked at in every pass. Either way a container that started later
// gets the next value, and a store that is not pending is settled.
func TestQuietPassVisitsChangedStoresOnly(t *testing.T) {
	tests := []struct {
		name      string
		versioned bool
		lookups   []int // Holders lookups per step below
	}{
		{"versioned holders", true, []int{4, 0, 1, 0, 4, 0, 4, 0, 1}},
		{"unversioned holders", false, []int{4, 4, 4, 4, 4, 4, 4, 4, 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			h := &fakeHolders{pids: map[string][]int{}}
			var hs Holders = unversioned{h}
			if tc.versioned {
				hs = h
			}
			f, err := Open(Options{Root: e.root, Mode: ModeMountSwap, Logger: testLogger(e), Holders: hs})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			f.stopLoop()
			f.mu.Lock()
			f.grace = 0 // a pass finishes an update's garbage at once: the store settles
			f.mu.Unlock()
			files := map[string]string{}
			for _, id := range []string{"s1", "s2", "s3", "s4"} {
				st, err := f.Create(e.spec(id, "a"))
				if err != nil {
					t.Fatal(err)
				}
				files[id] = st.Files["a"]
				h.set(id, startNSReader(t, st.Files["a"]).pid)
			}
			val := func(i int) Secret { return Secret{Name: "a", Value: canary("quiet", i), Format: FormatValueOnly} }
			update := func(id string, i int) {
				e.remember(val(i).Value)
				if err := f.Update(id, []Secret{val(i)}); err != nil {
					t.Fatal(err)
				}
			}
			var late *nsReader
			steps := []struct {
				name string
				full bool // the periodic rescan
				do   func()
			}{
				{"first pass", false, func() {}},
				{"nothing changed", false, func() {}},
				{"update of s2", false, func() { update("s2", 2) }},
				{"s2 settled", false, func() {}},
				{"a container of s3 starts", false, func() {
					late = startNSReader(t, files["s3"])
					h.add("s3", late.pid)
				}},
				{"quiet again", false, func() {}},
				{"periodic rescan", true, func() {}},
				{"quiet after the rescan", false, func() {}},
				{"update of s3", false, func() { update("s3", 3) }},
			}
			h.takeLookups()
			for i, st := range steps {
				st.do()
				checkPending(t, f, st.name+" (before the pass)")
				f.reconcilePass(st.full)
				if n := h.takeLookups(); n != tc.lookups[i] {
					t.Errorf("%s: %d stores looked up, want %d", st.name, n, tc.lookups[i])
				}
				checkPending(t, f, st.name)
			}
			if got := late.read(); got != want(val(3)) {
				t.Errorf("the container that started later reads %q, want %q", got, want(val(3)))
			}
			update("s3", 4) // its base, seen by a pass, is fed by the update itself
			if got := late.read(); got != want(val(4)) {
				t.Errorf("after the next update it reads %q, want %q", got, want(val(4)))
			}
		})
	}
}
