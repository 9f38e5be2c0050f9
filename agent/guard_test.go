package agent

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/edge-secrets/anax-agent/secretfs"
)

// dirStores is a stand-in for secretfs: one directory per store, one file per secret,
// rewritten (new file renamed over the old one) on Update.
type dirStores struct {
	root string
	mu   sync.Mutex
	ids  []string
}

func (d *dirStores) file(id, name string) string { return filepath.Join(d.root, id, name) }

func (d *dirStores) write(id string, secrets []secretfs.Secret) error {
	for _, s := range secrets {
		tmp := d.file(id, s.Name) + ".tmp"
		if err := os.WriteFile(tmp, s.Value, 0o400); err != nil {
			return err
		}
		if err := os.Rename(tmp, d.file(id, s.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (d *dirStores) Create(spec secretfs.Spec) (*secretfs.Store, error) {
	if err := os.MkdirAll(filepath.Join(d.root, spec.ID), 0o700); err != nil {
		return nil, err
	}
	if err := d.write(spec.ID, spec.Secrets); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.ids = append(d.ids, spec.ID)
	d.mu.Unlock()
	return d.store(spec.ID), nil
}

func (d *dirStores) store(id string) *secretfs.Store {
	return &secretfs.Store{ID: id, Mode: secretfs.ModeRestart, Files: map[string]string{"db": d.file(id, "db")}}
}

func (d *dirStores) Update(id string, secrets []secretfs.Secret) error { return d.write(id, secrets) }
func (d *dirStores) Wipe(id string) error                              { return os.RemoveAll(filepath.Join(d.root, id)) }
func (d *dirStores) Stores() ([]*secretfs.Store, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*secretfs.Store
	for _, id := range d.ids {
		out = append(out, d.store(id))
	}
	return out, nil
}
func (d *dirStores) Store(id string) (*secretfs.Store, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Contains(d.ids, id) {
		return nil, secretfs.ErrNotFound
	}
	return d.store(id), nil
}
func (d *dirStores) Mode() secretfs.Mode                { return secretfs.ModeRestart }
func (d *dirStores) Features() secretfs.Features        { return secretfs.Features{} }
func (d *dirStores) Depth(id, name string) (int, error) { return 0, nil }
func (d *dirStores) Depths() (map[string]int, error)    { return map[string]int{}, nil }
func (d *dirStores) Close() error                       { return nil }

func guardForTest(t *testing.T) (*storeGuard, *dirStores, *storeAdapter) {
	fs := &dirStores{root: t.TempDir()}
	a := &Agent{fs: fs, stores: newStoreAdapter(fs), log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: NewMetrics()}
	g := newStoreGuard(a)
	a.stores.changed = g.rebase
	return g, fs, a.stores
}

// TestGuardIgnoresTheAgentsOwnChanges: updates made through the adapter while the guard
// compares, many times over, are never taken for tampering.
func TestGuardIgnoresTheAgentsOwnChanges(t *testing.T) {
	g, _, stores := guardForTest(t)
	for i := range 4 {
		if _, err := stores.Create(secretfs.Spec{ID: fmt.Sprintf("s%d", i), Secrets: []secretfs.Secret{{Name: "db", Value: []byte("v0")}}}); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				stores.Update(fmt.Sprintf("s%d", i), []secretfs.Secret{{Name: "db", Value: fmt.Appendf(nil, "v%d", n)}})
			}
		})
	}
	for range 2000 {
		if c := g.changes(); len(c) > 0 {
			close(stop)
			wg.Wait()
			t.Fatalf("the agent's own update taken for tampering: store %s %s %s", c[0].base.id, c[0].diffs[0].path, c[0].diffs[0].what)
		}
	}
	close(stop)
	wg.Wait()
}

// TestGuardAgentChangeWhileLooking: the agent updates a store after the guard read its
// baseline and before it looks at the store; the guard must not take that for tampering.
func TestGuardAgentChangeWhileLooking(t *testing.T) {
	g, _, stores := guardForTest(t)
	if _, err := stores.Create(secretfs.Spec{ID: "s", Secrets: []secretfs.Secret{{Name: "db", Value: []byte("v0")}}}); err != nil {
		t.Fatal(err)
	}
	n := 0
	g.beforeSnap = func(id string) {
		n++
		if err := stores.Update(id, []secretfs.Secret{{Name: "db", Value: fmt.Appendf(nil, "v%d", n)}}); err != nil {
			t.Fatal(err)
		}
	}
	if c := g.changes(); len(c) != 0 {
		t.Fatalf("the agent's own update taken for tampering: %s %s", c[0].diffs[0].path, c[0].diffs[0].what)
	}
	g.beforeSnap = nil
	if c := g.changes(); len(c) != 0 || n != 1 {
		t.Fatalf("next look: %d changes, %d updates", len(c), n)
	}
}

// TestGuardFindsOthersChanges: a change made behind the adapter's back is found.
func TestGuardFindsOthersChanges(t *testing.T) {
	g, fs, stores := guardForTest(t)
	if _, err := stores.Create(secretfs.Spec{ID: "s", Secrets: []secretfs.Secret{{Name: "db", Value: []byte("v0")}}}); err != nil {
		t.Fatal(err)
	}
	if c := g.changes(); len(c) != 0 {
		t.Fatalf("fresh store: %+v", c)
	}
	os.Chmod(fs.file("s", "db"), 0o644)
	c := g.changes()
	if len(c) != 1 || c[0].diffs[0].what != "mode 0644, want 0400" || c[0].diffs[0].fix == nil {
		t.Fatalf("chmod: %+v", c)
	}
	if err := c[0].diffs[0].fix(); err != nil {
		t.Fatal(err)
	}
	if c := g.changes(); len(c) != 0 {
		t.Fatalf("after the fix: %+v", c)
	}
	os.WriteFile(fs.file("s", "db"), []byte("tampered"), 0o400)
	if c := g.changes(); len(c) != 1 || c[0].diffs[0].what != "content changed" {
		t.Fatalf("content: %+v", c)
	}
}
