package secretfs

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLateStarters: containers that start after updates (restarts, crash loops) bind whatever
// version is current then, and must still get every later update, with a stack at most two
// deep in mount-swap mode. This is the case the first recipe of design §4 missed.
func TestLateStarters(t *testing.T) {
	tests := []struct {
		mode    Mode
		holders bool // Options.Holders names the readers (numbering its changes), as the agent's worker does
	}{{ModeMountSwap, false}, {ModeMountSwap, true}, {ModeMountStack, false}}
	for _, tc := range tests {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s/holders=%v", mode, tc.holders), func(t *testing.T) {
			e := newEnv(t)
			f, rs := openReaders(t, e, mode, "svc1", tc.holders)
			start, stop, reconcile := rs.start, rs.stop, rs.reconcile
			st, err := f.Create(e.spec("svc1", "a"))
			if err != nil {
				t.Fatal(err)
			}
			p := st.Files["a"]
			val := func(i int) Secret { return Secret{Name: "a", Value: canary("late", i), Format: FormatValueOnly} }
			update := func(i int) {
				t.Helper()
				if err := f.Update("svc1", []Secret{val(i)}); err != nil {
					t.Fatal(err)
				}
			}
			check := func(what string, i int, readers ...*nsReader) {
				t.Helper()
				for n, r := range readers {
					if got := r.read(); got != want(val(i)) {
						t.Errorf("%s: reader %d reads %q, want %q", what, n+1, got, want(val(i)))
					}
					if d := r.depth(); mode == ModeMountSwap && d > 2 {
						t.Errorf("%s: reader %d sees a stack %d deep, want <= 2", what, n+1, d)
					}
				}
			}
			r1 := start(p) // started with version 1
			update(2)
			r2 := start(p) // started with version 2, not scanned yet
			update(3)
			// A reader that started after the last scan gets the value from the scan that the
			// update triggers; run it now instead of waiting for the background loop.
			reconcile()
			check("after update 3", 3, r1, r2)

			r3 := start(p) // started with version 3
			reconcile()    // the scan sees it before the next update
			update(4)
			check("after update 4 (no reconcile needed)", 4, r1, r2, r3)
			for i := 5; i < 10; i++ {
				update(i)
			}
			check("after update 9", 9, r1, r2, r3)

			stop(r1, r2)
			f.mu.Lock()
			f.grace = 0
			f.mu.Unlock()
			reconcile()
			reconcile()
			check("after stopping two readers", 9, r3)
			if mode == ModeMountSwap {
				f.mu.Lock()
				bases := len(f.stores["svc1"].secrets["a"].bases)
				f.mu.Unlock()
				if bases != 1 {
					t.Errorf("%d versions still fed after two of three readers stopped, want 1", bases)
				}
				entries, _ := os.ReadDir(filepath.Join(f.lay.store("svc1"), "v", "a"))
				if len(entries) != 2 { // 3 (r3's base) and 9 (current)
					t.Errorf("%d versions left, want 2 (the running reader's and the current)", len(entries))
				}
				if d, _ := f.Depth("svc1", "a"); d != 2 {
					t.Errorf("Depth = %d, want 2", d)
				}
				if ds, err := f.Depths(); err != nil || ds["svc1"] != 2 {
					t.Errorf("Depths = %v %v, want svc1: 2 (as Depth)", ds, err)
				}
			}
			update(10)
			check("after update 10", 10, r3)
		})
	}
}

// TestStaleScanUndoesNothing: scans run without the lock, so one that began before a container
// started can finish after a later scan adopted that container's version. Applied then, it
// took the container's feed away and zeroed its version (the container read an empty file
// for good); it must change nothing.
func TestStaleScanUndoesNothing(t *testing.T) {
	e := newEnv(t)
	f := e.open(ModeMountSwap)
	st, err := f.Create(e.spec("svc1", "a"))
	if err != nil {
		t.Fatal(err)
	}
	val := Secret{Name: "a", Value: canary("stale", 2), Format: FormatValueOnly}
	f.mu.Lock()
	p := f.scanTargets(true) // the slow scan begins before the container starts
	f.mu.Unlock()
	old := f.scan(p.targets)

	r := startNSReader(t, st.Files["a"]) // starts with version 1
	if err := f.Update("svc1", []Secret{val}); err != nil {
		t.Fatal(err)
	}
	f.reconcile() // a later scan adopts version 1 and feeds it version 2
	if got := r.read(); got != want(val) {
		t.Fatalf("before the stale scan: reader reads %q, want %q", got, want(val))
	}
	f.mu.Lock()
	f.grace = 0
	f.apply(p, old)
	f.mu.Unlock()
	if got := r.read(); got != want(val) {
		t.Errorf("after a stale scan was applied: reader reads %q, want %q", got, want(val))
	}
	if _, err := os.Stat(f.lay.version("svc1", "a", 1)); err != nil {
		t.Errorf("the version the reader started with: %v", err)
	}
}

// TestTornReads: readers hammer a publish point, the directory view and (mount-swap) the copy of
// a container that started with version 1, while 1000 updates with values of 0 B to 64 KiB are
// applied. Every read must be one of the values current at some moment during that read.
func TestTornReads(t *testing.T) {
	const updates = 1000
	for _, mode := range []Mode{ModeMountSwap, ModeMountStack} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f, err := Open(Options{Root: e.root, Mode: mode, StoreSize: 256 << 20, MaxInodes: 4 * updates, Logger: testLogger(e)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })

			rng := rand.New(rand.NewPCG(1, 2))
			vals := make([][]byte, updates+1)
			index := map[[32]byte][]int{}
			for i := range vals {
				n := rng.IntN(64<<10 + 1)
				switch i {
				case 500:
					n = 0
				case 501:
					n = 64 << 10
				}
				v := make([]byte, n)
				copy(v, fmt.Sprintf("CANARY-torn-%04d-", i))
				for j := 18; j < n; j++ {
					v[j] = byte('a' + (i+j)%26)
				}
				vals[i] = v
				h := sha256.Sum256(v)
				index[h] = append(index[h], i)
			}
			st, err := f.Create(Spec{ID: "torn", UID: 1000, GID: 1000, Secrets: []Secret{{Name: "s", Value: vals[0], Format: FormatValueOnly}}})
			if err != nil {
				t.Fatal(err)
			}
			paths := []string{st.Files["s"], filepath.Join(st.DirView, "s")}
			var r1 *nsReader
			if mode == ModeMountSwap {
				r1 = startNSReader(t, st.Files["s"])
				f.reconcile()
				paths = append(paths, fmt.Sprintf("/proc/%d/root%s", r1.pid, r1.target))
			}

			var current atomic.Int64 // index of the value applied last
			var reads, torn atomic.Int64
			var firstBad atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, p := range paths {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						lo := current.Load()
						b, err := os.ReadFile(p)
						hi := current.Load() + 1 // the next value may be visible before current moves
						reads.Add(1)
						ok := false
						if err == nil {
							for _, i := range index[sha256.Sum256(b)] {
								if int64(i) >= lo && int64(i) <= hi {
									ok = true
								}
							}
						}
						if !ok {
							torn.Add(1)
							firstBad.CompareAndSwap(nil, fmt.Sprintf("%s: %d bytes %.24q (err %v), current %d..%d", p, len(b), b, err, lo, hi))
						}
					}
				}()
			}
			for i := 1; i <= updates; i++ {
				if err := f.Update("torn", []Secret{{Name: "s", Value: vals[i], Format: FormatValueOnly}}); err != nil {
					close(stop)
					wg.Wait()
					t.Fatalf("update %d: %v", i, err)
				}
				current.Store(int64(i))
			}
			close(stop)
			wg.Wait()
			t.Logf("%s: %d reads during %d updates, %d torn, stale or empty", mode, reads.Load(), updates, torn.Load())
			if n := torn.Load(); n != 0 {
				t.Errorf("%d of %d reads were torn, stale or empty; first: %s", n, reads.Load(), firstBad.Load())
			}
			if reads.Load() < int64(updates) {
				t.Errorf("only %d reads during %d updates: the readers did not really overlap", reads.Load(), updates)
			}
			if r1 != nil {
				if d := r1.depth(); d > 2 {
					t.Errorf("the container's stack is %d deep, want <= 2", d)
				}
			}
		})
	}
}
