// Package memtrim gives the operating system back the heap a burst left free, sooner and
// more completely than Go's background scavenger does. After 10,000 nodes connect at once
// or a fan-out's garbage is collected, the runtime keeps hundreds of MiB of free heap
// mapped (it releases it over minutes, and only down to about its next GC goal); a trim, one
// forced collection and debug.FreeOSMemory, returns it at once, when little is happening:
// never in the middle of a burst, whose memory would be faulted in again.
//
// Only the agbot's Server imports it; it imports only the standard library.
package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Options tune Run; zero fields take the defaults.
type Options struct {
	Every time.Duration // how often the free heap is read (default 5 s)
	Min   uint64        // free heap still mapped above which Run trims (default 64 MiB)
	Gap   time.Duration // the least time between two trims (default 30 s)
	Quiet uint64        // trims only after an Every with fewer bytes allocated (default 16 MiB)
	Log   *slog.Logger  // a debug line per trim (default: none)

	free   func() uint64 // tests: the free heap still mapped
	allocs func() uint64 // tests: the bytes allocated so far
	trim   func()        // tests: the trim
}

// Run reads the free heap every o.Every and trims when more than o.Min is still mapped, the
// process allocated less than o.Quiet since the last look, and the last trim is o.Gap ago,
// until ctx ends. A trim costs one full collection (tens of milliseconds for a heap of 100
// MiB), so at most one per Gap.
func Run(ctx context.Context, o Options) {
	o = o.withDefaults()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	var last time.Time
	allocated := o.allocs()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a := o.allocs()
			quiet := a-allocated < o.Quiet
			allocated = a
			if f := o.free(); f > o.Min && quiet && now.Sub(last) >= o.Gap {
				o.trim()
				last = now
				if o.Log != nil {
					o.Log.Debug("gave free heap back to the system", "free_mib", f>>20, "free_mib_after", o.free()>>20)
				}
			}
		}
	}
}

func (o Options) withDefaults() Options {
	if o.Every <= 0 {
		o.Every = 5 * time.Second
	}
	if o.Min == 0 {
		o.Min = 64 << 20
	}
	if o.Gap <= 0 {
		o.Gap = 30 * time.Second
	}
	if o.Quiet == 0 {
		o.Quiet = 16 << 20
	}
	if o.free == nil {
		o.free = FreeHeap
	}
	if o.allocs == nil {
		o.allocs = func() uint64 { return readUint64("/gc/heap/allocs:bytes") }
	}
	if o.trim == nil {
		o.trim = debug.FreeOSMemory
	}
	return o
}

// FreeHeap is the heap that is free and still mapped: what a trim would give back.
func FreeHeap() uint64 { return readUint64("/memory/classes/heap/free:bytes") }

func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
