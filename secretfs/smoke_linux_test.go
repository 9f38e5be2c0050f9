package secretfs

import (
	"path/filepath"
	"testing"
)

func TestSmoke(t *testing.T) {
	for _, mode := range allModes {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			f := e.open(mode)
			spec := e.spec("svc1", "token", "password")
			st, err := f.Create(spec)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range spec.Secrets {
				if got := readFile(t, st.Files[s.Name]); got != want(s) {
					t.Errorf("%s = %q, want %q", s.Name, got, want(s))
				}
				if got := readFile(t, filepath.Join(st.DirView, s.Name)); got != want(s) {
					t.Errorf("view %s = %q, want %q", s.Name, got, want(s))
				}
			}
			for i := 2; i < 5; i++ {
				up := []Secret{{Name: "token", Value: canary("tok", i), Format: FormatValueOnly}}
				if err := f.Update("svc1", up); err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, st.Files["token"]); got != want(up[0]) {
					t.Errorf("after update %d: %q", i, got)
				}
				if got := readFile(t, filepath.Join(st.DirView, "token")); got != want(up[0]) {
					t.Errorf("view after update %d: %q", i, got)
				}
				d, err := f.Depth("svc1", "token")
				t.Logf("depth %d %v", d, err)
			}
			f.reconcile()
			if err := f.Wipe("svc1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
