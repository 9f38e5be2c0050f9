package memtrim

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestRunTrims: Run trims when more than Min is free and the process is quiet, not more
// often than Gap, and not at all below Min or while it allocates.
func TestRunTrims(t *testing.T) {
	for _, tc := range []struct {
		name      string
		free      uint64
		rate      uint64 // bytes allocated between two looks
		gap       time.Duration
		wantTrims func(n int) bool
	}{
		{"below the minimum", 10, 0, time.Millisecond, func(n int) bool { return n == 0 }},
		{"above, small gap", 1000, 0, time.Millisecond, func(n int) bool { return n >= 3 }},
		{"above, gap longer than the run", 1000, 0, time.Hour, func(n int) bool { return n == 1 }},
		{"above, in a burst", 1000, 50, time.Millisecond, func(n int) bool { return n == 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			n := 0
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			var allocated uint64
			Run(ctx, Options{Every: 5 * time.Millisecond, Min: 100, Gap: tc.gap, Quiet: 10,
				free:   func() uint64 { return tc.free },
				allocs: func() uint64 { allocated += tc.rate; return allocated },
				trim:   func() { mu.Lock(); n++; mu.Unlock() }})
			if mu.Lock(); !tc.wantTrims(n) {
				t.Errorf("%d trims", n)
			}
			mu.Unlock()
		})
	}
}

// TestRunReleasesMapped: with a Release, Run also trims when the file pages mapped grew by
// more than Min since the last trim, though little heap is free, and calls Release at each
// trim; file pages that stay as the last trim left them cause none.
func TestRunReleasesMapped(t *testing.T) {
	for _, tc := range []struct {
		name         string
		free         uint64
		mapped       func(trims int) uint64 // the file pages mapped after that many trims
		after        uint64                 // the file pages mapped just after a trim
		wantReleases func(n int) bool
	}{
		{"little mapped", 10, func(int) uint64 { return 50 }, 50, func(n int) bool { return n == 0 }},
		{"mapped once, given back", 10, func(n int) uint64 { return map[bool]uint64{true: 500, false: 20}[n == 0] }, 20,
			func(n int) bool { return n == 1 }},
		{"mapped again after each trim", 10, func(n int) uint64 { return 520 }, 20, func(n int) bool { return n >= 3 }},
		{"mapped kept by the system", 10, func(n int) uint64 { return 500 }, 500, func(n int) bool { return n == 1 }},
		{"mapped stays, heap free", 1000, func(int) uint64 { return 500 }, 500, func(n int) bool { return n >= 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			trims, releases, justReleased := 0, 0, false
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			Run(ctx, Options{Every: 5 * time.Millisecond, Min: 100, Gap: time.Millisecond, Quiet: 10,
				free: func() uint64 { return tc.free },
				mapped: func() uint64 {
					mu.Lock()
					defer mu.Unlock()
					if justReleased {
						justReleased = false
						return tc.after
					}
					return tc.mapped(releases)
				},
				allocs:  func() uint64 { return 0 },
				trim:    func() { mu.Lock(); trims++; mu.Unlock() },
				Release: func() error { mu.Lock(); releases++; justReleased = true; mu.Unlock(); return nil }})
			mu.Lock()
			defer mu.Unlock()
			if !tc.wantReleases(releases) || trims != releases {
				t.Errorf("%d releases, %d trims", releases, trims)
			}
		})
	}
}

var sink [][]byte

// TestTrimGivesFreeHeapBack: after a burst of 256 MiB is garbage, a real trim leaves less
// than the minimum free and mapped. Without Run the runtime keeps all of it mapped for more
// than 20 s (measured with go1.26: the scavenger releases nothing above the heap's goal).
func TestTrimGivesFreeHeapBack(t *testing.T) {
	for range 4096 {
		sink = append(sink, make([]byte, 64<<10))
	}
	sink = nil
	runtime.GC()
	before := FreeHeap()
	if before < 128<<20 {
		t.Fatalf("the runtime kept only %d MiB free after the burst: the test shows nothing", before>>20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, Options{Every: 10 * time.Millisecond}); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for FreeHeap() > 64<<20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if after := FreeHeap(); after > 64<<20 {
		t.Fatalf("free heap %d MiB before, %d MiB after Run", before>>20, after>>20)
	}
}
