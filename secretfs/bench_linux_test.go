package secretfs

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSwap measures the latency of one Update of one secret (write the new version,
// swap the publish point, swap the directory view) per mode and value size, for updates that
// are spaced out as rotations are: the background loop is stopped and its work (namespace
// scan, garbage) is done untimed every 16 updates. No container uses the store;
// BenchmarkSwapWithContainer adds one, BenchmarkSwapBurst measures back-to-back updates with
// the background loop running.
func BenchmarkSwap(b *testing.B) {
	for _, mode := range allModes {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", mode, sizeName(size)), func(b *testing.B) {
				benchSwap(b, mode, size, false, false)
			})
		}
	}
}

// BenchmarkSwapWithContainer is BenchmarkSwap in mount-swap mode with one running reader (in
// its own mount namespace, as a container) that started with the first version: each update
// also swaps the feed mount that reader sees, which is what makes the new value visible to it.
func BenchmarkSwapWithContainer(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%s/%s", ModeMountSwap, sizeName(size)), func(b *testing.B) {
			benchSwap(b, ModeMountSwap, size, true, false)
		})
	}
}

// BenchmarkSwapBurst applies updates back to back with the background loop running: the cost
// per update of a burst, including the scans and garbage collection it causes.
func BenchmarkSwapBurst(b *testing.B) {
	for _, mode := range allModes {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", mode, sizeName(size)), func(b *testing.B) {
				benchSwap(b, mode, size, false, true)
			})
		}
	}
}

var benchSizes = []int{64, 4 << 10, 64 << 10}

func benchSwap(b *testing.B, mode Mode, size int, reader, burst bool) {
	e := newEnv(b)
	f := e.open(mode)
	if !burst {
		// Updates spaced more than the grace apart, as rotations are: what the background loop
		// would do between them (scan, zero and remove replaced versions and view snapshots,
		// detach the trash) runs untimed every 16 updates.
		f.stopLoop()
		f.grace = 0
	}
	vals := [2][]byte{[]byte(strings.Repeat("A", size)), []byte(strings.Repeat("B", size))}
	spec := Spec{ID: "bench", UID: 1000, GID: 1000, Secrets: []Secret{{Name: "s", Value: vals[0], Format: FormatValueOnly}}}
	st, err := f.Create(spec)
	if err != nil {
		b.Fatal(err)
	}
	if reader {
		startNSReader(b, st.Files["s"])
		f.reconcile()
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !burst && i%16 == 15 {
			b.StopTimer()
			f.reconcile()
			b.StartTimer()
		}
		// mount-stack grows one mount per update: start a fresh store every 200 updates so
		// the path walk through the stack does not dominate.
		if mode == ModeMountStack && i > 0 && i%200 == 0 {
			b.StopTimer()
			if err := f.Wipe("bench"); err != nil {
				b.Fatal(err)
			}
			if _, err := f.Create(spec); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if err := f.Update("bench", []Secret{{Name: "s", Value: vals[(i+1)%2], Format: FormatValueOnly}}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkUpdateAmongStores measures one update of one store and the background pass that
// follows it (the scan of containers' mounts, feeding, garbage), with N other stores on the
// node, each with a running reader in its own mount namespace (Options.Holders names their
// PIDs, as the agent's container worker does). The cost should not grow with N (issue 16):
// compare the sub-benchmarks.
func BenchmarkUpdateAmongStores(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("stores=%d", n), func(b *testing.B) { benchAmongStores(b, n) })
	}
}

func benchAmongStores(b *testing.B, n int) {
	e := newEnv(b)
	h := &fakeHolders{pids: map[string][]int{}}
	f, err := Open(Options{Root: e.root, Mode: ModeMountSwap, Logger: testLogger(e), Holders: h, StoreSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	f.stopLoop()
	f.grace = 0 // updates spaced as rotations are: each pass finishes the last one's garbage
	var hot *nsReader
	for i := range n {
		id := fmt.Sprintf("s%04d", i)
		st, err := f.Create(e.spec(id, "a"))
		if err != nil {
			b.Fatal(err)
		}
		r := startLeanNSReader(b, st.Files["a"], e.root)
		h.set(id, r.pid)
		if i == 0 {
			hot = r
		}
	}
	f.reconcile()
	vals := [2][]byte{[]byte(strings.Repeat("A", 64)), []byte(strings.Repeat("B", 64))}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Update("s0000", []Secret{{Name: "a", Value: vals[i%2], Format: FormatValueOnly}}); err != nil {
			b.Fatal(err)
		}
		f.reconcile()
	}
	b.StopTimer()
	// The updates reached the running reader (a lean namespace still gets the feed's mounts).
	if got := hot.read(); got != string(vals[(b.N-1)%2]) {
		b.Fatalf("the reader of the updated store reads %q, want the last value", got)
	}
}

// BenchmarkPassPlan measures what a background pass spends, under the lock, choosing the
// stores it visits, with 1,000 settled stores on the node and one changed (in memory: no
// mounts): a pass that visits every store (the first, after a container started or stopped,
// the periodic rescan), and a quiet one, which visits the pending set only (issue 16).
func BenchmarkPassPlan(b *testing.B) {
	f := &FS{stores: map[string]*store{}, pending: map[string]bool{}, holders: &fakeHolders{pids: map[string][]int{}}}
	for i := range 1000 {
		id := fmt.Sprintf("s%04d", i)
		f.stores[id] = &store{id: id, mode: ModeMountSwap, group: i + 1, mut: 3, scan: scanCache{valid: true, mut: 3},
			secrets: map[string]*secret{"db_password": {cur: 3, bases: map[uint64]*base{2: {fed: true, zeroed: true}}}}}
	}
	f.pending["s0000"] = true
	for _, quiet := range []bool{false, true} {
		b.Run(fmt.Sprintf("quiet=%v", quiet), func(b *testing.B) {
			f.passDone = true
			for b.Loop() {
				if p := f.scanTargets(!quiet); quiet && len(p.visit) != 1 || !quiet && len(p.visit) != 1000 {
					b.Fatalf("visits %d stores", len(p.visit))
				}
			}
		})
	}
}
