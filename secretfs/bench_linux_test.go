package secretfs

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkSwap measures one Update of one secret (stage the new version, swap the publish
// point, swap the directory view) per mode and value size. No container uses the store: a
// container that started with an older version adds one feed swap per update (see
// BenchmarkSwapWithContainer).
func BenchmarkSwap(b *testing.B) {
	for _, mode := range allModes {
		for _, size := range []int{64, 4 << 10, 64 << 10} {
			b.Run(fmt.Sprintf("%s/%s", mode, sizeName(size)), func(b *testing.B) {
				benchSwap(b, mode, size, false)
			})
		}
	}
}

// BenchmarkSwapWithContainer is BenchmarkSwap in mount-swap mode with one running reader (in
// its own mount namespace) that started with the first version: each update also swaps the
// feed mount that reader sees.
func BenchmarkSwapWithContainer(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%s/%s", ModeMountSwap, sizeName(size)), func(b *testing.B) {
			benchSwap(b, ModeMountSwap, size, true)
		})
	}
}

func benchSwap(b *testing.B, mode Mode, size int, reader bool) {
	e := newEnv(b)
	f := e.open(mode)
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
