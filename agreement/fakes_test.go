package agreement

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// fakeStores keeps each store as a directory of plain files under a temporary root, written
// in the anax format (JSON {"key","value"} or the raw value), so that the manager's read-back
// and checks see what they would see on tmpfs. Failures are injected per store id.
type fakeStores struct {
	root string
	mode StoreMode

	mu         sync.Mutex
	stores     map[string]*Store
	calls      []string         // "create id", "update id a,b", "wipe id"
	failCreate map[string]error // by store id
	failUpdate map[string]error // by store id
	failWipe   map[string]error
	onUpdate   func(id string)     // called before an update writes anything
	written    map[string][]string // "store/secret" -> contents written by Update, in order
}

// history returns the tags of the values Update wrote to a secret, in order.
func (f *fakeStores) history(id, name string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, c := range f.written[id+"/"+name] {
		i := strings.LastIndex(c, "-")
		n, _ := strconv.Atoi(strings.TrimRight(c[i+1:], `"}`))
		out = append(out, n)
	}
	return out
}

func newFakeStores(t testing.TB) *fakeStores {
	return &fakeStores{root: t.TempDir(), mode: secretfs.ModeMountSwap, stores: map[string]*Store{},
		failCreate: map[string]error{}, failUpdate: map[string]error{}, failWipe: map[string]error{}}
}

func fileContent(s StoreSecret) []byte {
	if s.Format == formatValueOnly {
		return append([]byte(nil), s.Value...)
	}
	b, _ := json.Marshal(struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}{s.Key, string(s.Value)})
	return b
}

func (f *fakeStores) Create(spec StoreSpec) (*Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "create "+spec.ID)
	if err := f.failCreate[spec.ID]; err != nil {
		return nil, err
	}
	if _, ok := f.stores[spec.ID]; ok {
		return nil, fmt.Errorf("store %q exists", spec.ID)
	}
	dir := filepath.Join(f.root, spec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	st := &Store{ID: spec.ID, Mode: f.mode, Files: map[string]string{}, DirView: dir}
	for _, s := range spec.Secrets {
		p := filepath.Join(dir, s.Name)
		if err := os.WriteFile(p, fileContent(s), 0o400); err != nil {
			return nil, err
		}
		st.Files[s.Name] = p
	}
	f.stores[spec.ID] = st
	return st, nil
}

func (f *fakeStores) Update(id string, secrets []StoreSecret) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, len(secrets))
	for i, s := range secrets {
		names[i] = s.Name
	}
	f.calls = append(f.calls, fmt.Sprintf("update %s %v", id, names))
	if hook := f.onUpdate; hook != nil {
		f.mu.Unlock() // a hook may block: other stores go on meanwhile
		func() {
			defer f.mu.Lock() // also when the hook panics (a simulated crash)
			hook(id)
		}()
	}
	if err := f.failUpdate[id]; err != nil {
		return err
	}
	st, ok := f.stores[id]
	if !ok {
		return fmt.Errorf("store %q: not found", id)
	}
	for _, s := range secrets {
		if _, ok := st.Files[s.Name]; !ok {
			return fmt.Errorf("store %q: no secret %q", id, s.Name)
		}
	}
	for _, s := range secrets {
		p := st.Files[s.Name]
		tmp := p + ".new"
		if err := os.WriteFile(tmp, fileContent(s), 0o400); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		if f.written == nil {
			f.written = map[string][]string{}
		}
		f.written[id+"/"+s.Name] = append(f.written[id+"/"+s.Name], string(fileContent(s)))
	}
	return nil
}

func (f *fakeStores) Wipe(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "wipe "+id)
	if err := f.failWipe[id]; err != nil {
		return err
	}
	delete(f.stores, id)
	return os.RemoveAll(filepath.Join(f.root, id))
}

func (f *fakeStores) Stores() ([]*Store, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Store
	for _, s := range f.stores {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeStores) Mode() StoreMode { return f.mode }

// read returns the file content of a secret in a store.
func (f *fakeStores) read(t testing.TB, id, name string) string {
	t.Helper()
	f.mu.Lock()
	st, ok := f.stores[id]
	f.mu.Unlock()
	if !ok {
		t.Fatalf("store %q does not exist", id)
	}
	b, err := os.ReadFile(st.Files[name])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *fakeStores) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.stores {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

func (f *fakeStores) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// lose drops every store, as a reboot empties the tmpfs.
func (f *fakeStores) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.stores {
		os.RemoveAll(filepath.Join(f.root, id))
	}
	f.stores = map[string]*Store{}
}

// fakeRunner keeps containers in memory by instance.
type fakeRunner struct {
	mu         sync.Mutex
	next       int
	containers map[string][]container.Container // by instance
	calls      []string
	users      map[string][2]int // by image; absent: 1000:1000
	failUser   map[string]error  // by image
	onResolve  func()            // called (without the lock) before ResolveUser answers
	failStart  error
	failAfter  error
	failStop   error
	panicAfter bool // AfterUpdate panics with crashPanic{}
	afterNames [][]string
	specs      map[string][]container.Spec   // by instance: what the last Start asked for
	insts      map[string]container.Instance // by instance: the last Start's instance
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{containers: map[string][]container.Container{}, users: map[string][2]int{}, failUser: map[string]error{}}
}

func (r *fakeRunner) ResolveUser(ctx context.Context, image, user string) (int, int, error) {
	if r.onResolve != nil {
		r.onResolve()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.failUser[image]; err != nil {
		return 0, 0, err
	}
	if ids, ok := r.users[image]; ok {
		return ids[0], ids[1], nil
	}
	return 1000, 1000, nil
}

func (r *fakeRunner) Start(ctx context.Context, inst container.Instance) ([]container.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "start "+inst.InstanceID)
	if r.failStart != nil {
		return nil, r.failStart
	}
	if len(r.containers[inst.InstanceID]) > 0 {
		return nil, fmt.Errorf("containers of %q exist", inst.InstanceID)
	}
	if r.specs == nil {
		r.specs = map[string][]container.Spec{}
	}
	r.specs[inst.InstanceID] = inst.Containers
	if r.insts == nil {
		r.insts = map[string]container.Instance{}
	}
	r.insts[inst.InstanceID] = inst
	var out []container.Container
	for _, s := range inst.Containers {
		if len(s.Secrets) > 0 && s.Store == nil {
			return nil, errors.New("secrets without a store")
		}
		r.next++
		c := container.Container{ID: fmt.Sprintf("c%d", r.next), Name: inst.InstanceID + "-" + s.Name,
			InstanceID: inst.InstanceID, Spec: s.Name, State: "running"}
		if s.Store != nil {
			c.StoreID = s.Store.ID
		}
		for _, sec := range s.Secrets {
			c.Secrets = append(c.Secrets, sec.Name)
		}
		out = append(out, c)
	}
	r.containers[inst.InstanceID] = out
	return out, nil
}

func (r *fakeRunner) AfterUpdate(ctx context.Context, id string, changed []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "after "+id)
	r.afterNames = append(r.afterNames, changed)
	if r.panicAfter {
		panic(crashPanic{})
	}
	return r.failAfter
}

func (r *fakeRunner) Restart(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "restart "+id)
	if len(r.containers[id]) == 0 {
		return fmt.Errorf("agreement %q: %w", id, container.ErrNotFound)
	}
	for i := range r.containers[id] {
		r.containers[id][i].State = "running"
	}
	return nil
}

func (r *fakeRunner) Stop(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "stop "+id)
	if r.failStop != nil {
		return r.failStop
	}
	delete(r.containers, id)
	return nil
}

func (r *fakeRunner) List(ctx context.Context) ([]container.Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []container.Container
	for _, cs := range r.containers {
		out = append(out, cs...)
	}
	return out, nil
}

func (r *fakeRunner) takeCalls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *fakeRunner) instances() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id := range r.containers {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// setState changes the engine state of every container of an instance.
func (r *fakeRunner) setState(inst, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.containers[inst] {
		r.containers[inst][i].State = state
	}
}
