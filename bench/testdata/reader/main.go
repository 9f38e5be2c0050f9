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
	readers, err := strconv.Atoi(os.Args[3])
	if err != nil || readers < 1 {
		fmt.Fprintln(os.Stderr, "usage: read CTL READERS PATH...")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, st := range read(os.Args[2], readers, os.Args[4:]) {
		enc.Encode(st)
	}
}

// run is one `read` command: the phase the benchmark is in and the expected values.
type run struct {
	// phase: 0 before CTL/go, 1 while the updates run, 2 after CTL/end, 3 at CTL/stop.
	phase   atomic.Int32
	ready   sync.WaitGroup
	mu      sync.Mutex // guards the stats of every path while a reader adds its own
	cacheMu sync.Mutex
	cache   map[uint64][]byte
}

// read runs readers goroutines per path until CTL/stop and returns the stats per path.
func read(ctl string, readers int, paths []string) []*stats {
	r := &run{cache: map[uint64][]byte{}}
	go r.followPhase(ctl)
	all := make([]*stats, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		all[i] = &stats{Path: p, FirstSeq: ^uint64(0)}
		for range readers {
			wg.Add(1)
			r.ready.Add(1)
			go func(st *stats) {
				defer wg.Done()
				r.reader(st)
			}(all[i])
		}
	}
	// Tell the benchmark every reader has read once, so updates start under load.
	go func() {
		r.ready.Wait()
		os.WriteFile(filepath.Join(ctl, "ready"), nil, 0o644)
	}()
	wg.Wait()
	for _, st := range all {
		if st.FirstSeq == ^uint64(0) {
			st.FirstSeq = 0
		}
	}
	return all
}

// followPhase moves the phase on as CTL/go, CTL/end and CTL/stop appear.
func (r *run) followPhase(ctl string) {
	for i, name := range []string{"go", "end", "stop"} {
		for {
			if _, err := os.Stat(filepath.Join(ctl, name)); err == nil {
				r.phase.Store(int32(i + 1))
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// want is the value the benchmark writes for seq.
func (r *run) want(seq uint64) []byte {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	b, ok := r.cache[seq]
	if !ok {
		b = gen(seq)
		r.cache[seq] = b
	}
	return b
}

// reader reads st.Path in a loop until the stop phase, then adds what it saw to st.
func (r *run) reader(st *stats) {
	s := stats{FirstSeq: ^uint64(0)}
	var last uint64
	have, first := false, true
	for {
		ph := r.phase.Load()
		if ph == 3 {
			break
		}
		b, err := os.ReadFile(st.Path)
		r.classify(&s, b, err, ph == 1, &have, &last)
		if first {
			first = false
			r.ready.Done()
		}
	}
	if first {
		r.ready.Done()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st.add(&s, last)
}

// classify counts one read into s (errors, empty and torn reads only while counting) and
// tracks the value seen last.
func (r *run) classify(s *stats, b []byte, err error, count bool, have *bool, last *uint64) {
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
		if !ok || !bytes.Equal(b, r.want(seq)) {
			if count {
				s.Torn++
			}
			return
		}
		if *have && seq < *last {
			s.Backwards++
		}
		if !*have || seq != *last {
			s.Distinct++
		}
		*have, *last = true, seq
		s.FirstSeq = min(s.FirstSeq, seq)
	}
}

// add merges one reader's stats into the path's.
func (st *stats) add(s *stats, last uint64) {
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
}

func parse(b []byte) (uint64, bool) {
	if len(b) < 11 || b[10] != '|' {
		return 0, false
	}
	seq, err := strconv.ParseUint(string(b[:10]), 10, 64)
	return seq, err == nil
}
