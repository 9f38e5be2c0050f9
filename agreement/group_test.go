package agreement

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestGroupCommit(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	g := &groupCommit{bolt: b}
	errBad := errors.New("bad write")
	put := func(i int) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error {
			if i%10 == 7 {
				return errBad
			}
			return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%03d", i), []byte("v"))
		}
	}
	tests := []struct {
		name    string
		writers int
	}{{"alone", 1}, {"concurrent", 64}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := make([]error, tc.writers)
			var wg sync.WaitGroup
			for i := range tc.writers {
				wg.Go(func() { errs[i] = g.do(put(i)) })
			}
			wg.Wait()
			err := b.View(func(tx *bolt.Tx) error {
				for i := range tc.writers {
					got := tx.Bucket([]byte("b")).Get(fmt.Appendf(nil, "k%03d", i))
					switch {
					case i%10 == 7 && !errors.Is(errs[i], errBad):
						t.Errorf("write %d: error %v, want its own", i, errs[i])
					case i%10 != 7 && (errs[i] != nil || got == nil):
						t.Errorf("write %d: error %v, stored %q: another write's failure reached it", i, errs[i], got)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
