// The swap benchmark's reader: the entrypoint of a FROM-scratch image. Without arguments it
// sleeps; `cat PATH` prints a file; `read CTL R PATH...` starts R goroutines per PATH, each
// reading the whole file in a loop (open, read, close, so every read walks the mount table
// again) until CTL/stop exists, then prints one JSON line per PATH. Only reads between
// CTL/go and CTL/end (the updates) are counted; the value seen last is tracked to the end. Each value the benchmark
// writes is self-describing (see gen), so a read is classified without knowing the sequence
// of updates: ok, empty or torn.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// gen must match bench.genValue: a 10-digit sequence, '|', then a filler byte up to a length
// derived from the sequence (16 B .. 64 KiB).
func gen(seq uint64) []byte {
	n := 16 + int((seq*2654435761)%(64<<10-16))
	b := make([]byte, n)
	copy(b, fmt.Sprintf("%010d|", seq))
	for i := 11; i < n; i++ {
		b[i] = byte('a' + seq%26)
	}
	return b
}

type stats struct {
	Path      string `json:"path"`
	Reads     int64  `json:"reads"`
	Empty     int64  `json:"empty"`
	Torn      int64  `json:"torn"`
	Errors    int64  `json:"errors"`
	Backwards int64  `json:"backwards"` // a reader saw an older value after a newer one
	FirstSeq  uint64 `json:"firstSeq"`
	LastSeq   uint64 `json:"lastSeq"`
	Distinct  int64  `json:"distinct"` // changes of value seen, summed over readers
	FirstErr  string `json:"firstErr,omitempty"`
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "cat" {
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
		return
	}
	if len(os.Args) < 4 || os.Args[1] != "read" {
		for {
			time.Sleep(time.Hour)
		}
	}
	ctl := os.Args[2]
	readers, err := strconv.Atoi(os.Args[3])
	if err != nil || readers < 1 {
		fmt.Fprintln(os.Stderr, "usage: read CTL READERS PATH...")
		os.Exit(2)
	}
	paths := os.Args[4:]
	// phase: 0 before CTL/go, 1 while the updates run, 2 after CTL/end, 3 at CTL/stop.
	var phase atomic.Int32
	go func() {
		for i, name := range []string{"go", "end", "stop"} {
			for {
				if _, err := os.Stat(filepath.Join(ctl, name)); err == nil {
					phase.Store(int32(i + 1))
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}()
	all := make([]*stats, len(paths))
	var mu sync.Mutex
	var wg, ready sync.WaitGroup
	cache := map[uint64][]byte{}
	var cacheMu sync.Mutex
	want := func(seq uint64) []byte {
		cacheMu.Lock()
		defer cacheMu.Unlock()
		b, ok := cache[seq]
		if !ok {
			b = gen(seq)
			cache[seq] = b
		}
		return b
	}
	for i, p := range paths {
		all[i] = &stats{Path: p, FirstSeq: ^uint64(0)}
		for r := 0; r < readers; r++ {
			wg.Add(1)
			ready.Add(1)
			go func(st *stats) {
				defer wg.Done()
				var s stats
				s.FirstSeq = ^uint64(0)
				var last uint64
				have := false
				first := true
				for {
					ph := phase.Load()
					if ph == 3 {
						break
					}
					count := ph == 1
					b, err := os.ReadFile(st.Path)
					if count {
						s.Reads++
					}
					switch {
					case err != nil:
						if count {
							s.Errors++
						}
						if s.FirstErr == "" {
							s.FirstErr = err.Error()
						}
					case len(b) == 0:
						if count {
							s.Empty++
						}
					default:
						seq, ok := parse(b)
						if !ok || !bytes.Equal(b, want(seq)) {
							if count {
								s.Torn++
							}
							break
						}
						if have && seq < last {
							s.Backwards++
						}
						if !have || seq != last {
							s.Distinct++
						}
						have, last = true, seq
						s.FirstSeq = min(s.FirstSeq, seq)
					}
					if first {
						first = false
						ready.Done()
					}
				}
				if first {
					ready.Done()
				}
				mu.Lock()
				st.Reads += s.Reads
				st.Empty += s.Empty
				st.Torn += s.Torn
				st.Errors += s.Errors
				st.Backwards += s.Backwards
				st.Distinct += s.Distinct
				st.FirstSeq = min(st.FirstSeq, s.FirstSeq)
				st.LastSeq = max(st.LastSeq, last)
				if st.FirstErr == "" {
					st.FirstErr = s.FirstErr
				}
				mu.Unlock()
			}(all[i])
		}
	}
	// Tell the benchmark every reader has read once, so updates start under load.
	go func() {
		ready.Wait()
		os.WriteFile(filepath.Join(ctl, "ready"), nil, 0o644)
	}()
	wg.Wait()
	enc := json.NewEncoder(os.Stdout)
	for _, st := range all {
		if st.FirstSeq == ^uint64(0) {
			st.FirstSeq = 0
		}
		enc.Encode(st)
	}
}

func parse(b []byte) (uint64, bool) {
	if len(b) < 11 || b[10] != '|' {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(b[:10]), 10, 64)
	return seq, err == nil
}
