// Package memtrim gives the operating system back the heap a burst left free, sooner and
// more completely than Go's background scavenger does. After 10,000 nodes connect at once
// or a fan-out's garbage is collected, the runtime keeps hundreds of MiB of free heap
// mapped (it releases it over minutes, and only down to about its next GC goal); a trim, one
// forced collection and debug.FreeOSMemory, returns it at once, when little is happening:
// never in the middle of a burst, whose memory would be faulted in again. A trim also calls
// Options.Release, with which the agbot drops the pages of its state file that bbolt's
// mapping kept in its memory (agbot/store.ReleaseMapped): the same bursts leave 100 MiB and
// more of them, which the kernel's page cache keeps while the process no longer holds them.
//
// Only the agbot's Server imports it (and agbot/store's tests, for FileMapped); it imports
// only the standard library.
package memtrim

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Options tune Run; zero fields take the defaults.
type Options struct {
	Every time.Duration // how often the free heap is read (default 5 s)
	Min   uint64        // free heap still mapped above which Run trims (default 64 MiB)
	Gap   time.Duration // the least time between two trims (default 30 s)
	Quiet uint64        // trims only after an Every with fewer bytes allocated (default 16 MiB)
	Log   *slog.Logger  // a debug line per trim (default: none)
	// Release, if set, is called at each trim after the heap's: it gives back file pages the
	// process mapped. Run also trims when the file pages mapped (RssFile) grew by more than
	// Min since the last trim, so a burst that read much and left little heap is given back.
	Release func() error

	free   func() uint64 // tests: the free heap still mapped
	mapped func() uint64 // tests: the file pages mapped
	allocs func() uint64 // tests: the bytes allocated so far
	trim   func()        // tests: the trim
}

// Run reads the free heap every o.Every and trims when more than o.Min is still mapped (or,
// with a Release, the file pages mapped grew by more than o.Min since the last trim), the
// process allocated less than o.Quiet since the last look, and the last trim is o.Gap ago,
// until ctx ends. A trim costs one full collection (tens of milliseconds for a heap of 100
// MiB), so at most one per Gap.
func Run(ctx context.Context, o Options) {
	o = o.withDefaults()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	var last time.Time
	var mappedAfter uint64 // file pages mapped after the last trim
	allocated := o.allocs()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a := o.allocs()
			quiet := a-allocated < o.Quiet
			allocated = a
			if !quiet || now.Sub(last) < o.Gap {
				continue
			}
			f, m := o.free(), uint64(0)
			if o.Release != nil {
				m = o.mapped()
			}
			if f > o.Min || m > mappedAfter+o.Min {
				mappedAfter = o.trimAll(f, m)
				last = now
			}
		}
	}
}

// trimAll gives back the free heap and, with a Release, the mapped file pages; it returns the
// file pages still mapped.
func (o Options) trimAll(free, mapped uint64) uint64 {
	o.trim()
	if o.Release == nil {
		if o.Log != nil {
			o.Log.Debug("gave free heap back to the system", "free_mib", free>>20, "free_mib_after", o.free()>>20)
		}
		return 0
	}
	if err := o.Release(); err != nil && o.Log != nil {
		o.Log.Warn("could not give mapped file pages back to the system", "err", err)
	}
	after := o.mapped()
	if o.Log != nil {
		o.Log.Debug("gave free heap and mapped file pages back to the system", "free_mib", free>>20,
			"free_mib_after", o.free()>>20, "file_mib", mapped>>20, "file_mib_after", after>>20)
	}
	return after
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
	if o.mapped == nil {
		o.mapped = FileMapped
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

// FileMapped is the process's resident file pages (RssFile in /proc/self/status: its binary
// and the files it mapped), 0 where the system does not tell.
func FileMapped() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssFile:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

func readUint64(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
