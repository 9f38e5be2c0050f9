package ess

import (
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkAttachMemory: the memory (heap in use plus goroutine stacks, after a GC) that one
// attached store's API holds, with 1,000 attached.
//
//	go test -run '^$' -bench AttachMemory -benchtime 1x ./ess/
func BenchmarkAttachMemory(b *testing.B) {
	const stores = 1000
	for range b.N {
		f := newFixture(b)
		s := f.open()
		before := inUse()
		for i := range stores {
			if _, err := s.Attach(fmt.Sprintf("s%032x", i), 1000, 1000); err != nil {
				b.Fatal(err)
			}
		}
		after := inUse()
		b.ReportMetric(float64(after-before)/stores/1024, "KiB/store")
		s.Close()
	}
}

func inUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}
