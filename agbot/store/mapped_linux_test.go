package store_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/memtrim"
	"github.com/edge-secrets/anax-agent/agbot/store"
)

// rssFileKiB is the process's resident file pages, as the agbot's trim reads them.
func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	n := memtrim.FileMapped()
	if n == 0 {
		t.Fatal("no RssFile in /proc/self/status")
	}
	return int64(n >> 10)
}

// TestReleaseMappedGivesPagesBack: after reading a 24 MiB state file, its pages are in the
// process's RSS; ReleaseMapped takes them out, and the records read the same afterwards.
func TestReleaseMappedGivesPagesBack(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type big struct{ Pad string }
	tb := store.NewTable[big](s, "big")
	pad := strings.Repeat("p", 8<<10)
	err = s.Update(func(tx store.Tx) error {
		for i := range 3000 {
			if err := tb.PutTx(tx, "o", fmt.Sprintf("r%04d", i), big{Pad: pad}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		t.Helper()
		n := 0
		err := s.View(func(tx store.Tx) error {
			return tb.EachTx(tx, "o", func(_, _ string, b big) error {
				if b.Pad != pad {
					return fmt.Errorf("record %d changed", n)
				}
				n++
				return nil
			})
		})
		if err != nil || n != 3000 {
			t.Fatalf("read %d records: %v", n, err)
		}
	}
	readAll()
	before := rssFileKiB(t)
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	if before-after < 20<<10 {
		t.Fatalf("RssFile %d KiB before ReleaseMapped, %d KiB after: want at least 20 MiB less", before, after)
	}
	readAll()
	if again := rssFileKiB(t); again-after < 20<<10 {
		t.Fatalf("RssFile %d KiB after reading again (%d after release): the pages were not mapped again", again, after)
	}
}
