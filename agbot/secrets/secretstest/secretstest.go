// Package secretstest is the conformance suite every secrets.Manager passes, in the manner of
// testing/fstest.TestFS. An implementation's test calls
//
//	secretstest.Run(t, func(t *testing.T) secrets.Manager { ... })
//
// The factory is called once per sub-test and must register its own cleanup (t.Cleanup). Each
// sub-test works in orgs of its own with random names, so the factory may hand out managers over
// one shared backend (a single OpenBao server). Changes made through a manager must reach its
// watchers without waiting for any poll: give polling managers a long poll interval here.
//
// Secret values are canaries ("CANARY-...") so leak scans can find them. Only tests import it.
package secretstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// Canary starts every value the suite stores.
const Canary = "CANARY-secretstest-"

// WaitChange bounds how long the suite waits for a change notification. It only turns a missing
// notification into a failure instead of a hang; it is not a speed requirement.
var WaitChange = 10 * time.Second

// Run runs the conformance suite.
func Run(t *testing.T, newManager func(t *testing.T) secrets.Manager) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, secrets.Manager)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"Create", testCreate},
		{"Delete", testDelete},
		{"GetMissing", testGetMissing},
		{"Levels", testLevels},
		{"OrgIsolation", testOrgIsolation},
		{"List", testList},
		{"InvalidNames", testInvalidNames},
		{"InvalidSecret", testInvalidSecret},
		{"Watch", testWatch},
		{"WatchCancel", testWatchCancel},
		{"ConcurrentPut", testConcurrentPut},
		{"ConcurrentCreate", testConcurrentCreate},
		{"CancelledContext", testCancelledContext},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newManager(t))
		})
	}
}

// Org returns a fresh org name so sub-tests sharing a backend never see each other.
func Org(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "conf-" + hex.EncodeToString(b[:])
}

// Value returns a recognisable canary value.
func Value(what string) string { return Canary + what }

func mustPut(t *testing.T, m secrets.Manager, org, name string, s secrets.Secret) int64 {
	t.Helper()
	v, err := m.Put(t.Context(), org, name, s)
	if err != nil {
		t.Fatalf("Put(%q, %q) = %v", org, name, err)
	}
	if v <= 0 {
		t.Fatalf("Put(%q, %q) version = %d, want > 0", org, name, v)
	}
	return v
}

func wantGet(t *testing.T, m secrets.Manager, org, name string, want secrets.Secret, wantVersion int64) {
	t.Helper()
	got, v, err := m.Get(t.Context(), org, name)
	if err != nil {
		t.Fatalf("Get(%q, %q) = %v, want %v", org, name, err, want)
	}
	if got != want {
		// Both are canaries: printing them helps and leaks nothing real.
		t.Fatalf("Get(%q, %q) = {%q, %q}, want {%q, %q}", org, name, got.Key, got.Value, want.Key, want.Value)
	}
	if wantVersion != 0 && v != wantVersion {
		t.Fatalf("Get(%q, %q) version = %d, want %d", org, name, v, wantVersion)
	}
}

func wantNotFound(t *testing.T, m secrets.Manager, org, name string) {
	t.Helper()
	if _, _, err := m.Get(t.Context(), org, name); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("Get(%q, %q) error = %v, want ErrNotFound", org, name, err)
	}
}

func testPutGet(t *testing.T, m secrets.Manager) {
	org := Org(t)
	tests := []struct {
		name string
		sec  secrets.Secret
	}{
		{"plain", secrets.Secret{Key: "user", Value: Value("plain")}},
		{"empty-value", secrets.Secret{Key: "k", Value: ""}},
		{"empty-key", secrets.Secret{Key: "", Value: Value("no key")}},
		{"unicode", secrets.Secret{Key: "clé", Value: Value("πß漢字 \U0001F511")}},
		{"json-like", secrets.Secret{Key: "k", Value: Value(`{"key":"x","value":"y"}` + "\n\t\\\"")}},
		{"nul-and-controls", secrets.Secret{Key: "k", Value: Value("a\x00b\x01\x7f\r\n")}},
		{"64KiB", secrets.Secret{Key: "big", Value: Value(strings.Repeat("x", 64<<10-len(Canary)))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := mustPut(t, m, org, tc.name, tc.sec)
			wantGet(t, m, org, tc.name, tc.sec, v)
		})
	}
}

func testOverwrite(t *testing.T, m secrets.Manager) {
	org := Org(t)
	v1 := mustPut(t, m, org, "db", secrets.Secret{Key: "k1", Value: Value("one")})
	v2 := mustPut(t, m, org, "db", secrets.Secret{Key: "k2", Value: Value("two")})
	if v2 <= v1 {
		t.Fatalf("overwrite version = %d after %d, want it to grow", v2, v1)
	}
	wantGet(t, m, org, "db", secrets.Secret{Key: "k2", Value: Value("two")}, v2)
}

func testCreate(t *testing.T, m secrets.Manager) {
	org := Org(t)
	first := secrets.Secret{Key: "k", Value: Value("first")}
	v, err := m.Create(t.Context(), org, "user/bob/db", first)
	if err != nil || v <= 0 {
		t.Fatalf("Create(new) = %d, %v; want a version > 0", v, err)
	}
	_, err = m.Create(t.Context(), org, "user/bob/db", secrets.Secret{Key: "k", Value: Value("second")})
	if !errors.Is(err, secrets.ErrExists) {
		t.Fatalf("Create(existing) error = %v, want ErrExists", err)
	}
	wantGet(t, m, org, "user/bob/db", first, v)
}

func testDelete(t *testing.T, m secrets.Manager) {
	org := Org(t)
	v1 := mustPut(t, m, org, "node/n1/db", secrets.Secret{Key: "k", Value: Value("gone")})
	if err := m.Delete(t.Context(), org, "node/n1/db"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	wantNotFound(t, m, org, "node/n1/db")
	if err := m.Delete(t.Context(), org, "node/n1/db"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("second Delete error = %v, want ErrNotFound", err)
	}
	if names, err := m.List(t.Context(), org, "node/n1"); err != nil || len(names) != 0 {
		t.Fatalf("List after Delete = %q, %v; want empty", names, err)
	}
	again := secrets.Secret{Key: "k", Value: Value("again")}
	v2, err := m.Create(t.Context(), org, "node/n1/db", again)
	if err != nil {
		t.Fatalf("Create after Delete = %v", err)
	}
	wantGet(t, m, org, "node/n1/db", again, v2)
	_ = v1 // versions may restart (Vault) or continue (embedded) after a delete
}

func testGetMissing(t *testing.T, m secrets.Manager) {
	org := Org(t)
	for _, name := range []string{"nope", "user/u/nope", "node/n/nope", "user/u/node/n/nope"} {
		wantNotFound(t, m, org, name)
		if err := m.Delete(t.Context(), org, name); !errors.Is(err, secrets.ErrNotFound) {
			t.Fatalf("Delete(%q) of missing error = %v, want ErrNotFound", name, err)
		}
	}
}

var levels = []string{"db", "user/bob/db", "node/n1/db", "user/bob/node/n1/db"}

func testLevels(t *testing.T, m secrets.Manager) {
	org := Org(t)
	for _, name := range levels {
		mustPut(t, m, org, name, secrets.Secret{Key: "k", Value: Value(name)})
	}
	for _, name := range levels {
		wantGet(t, m, org, name, secrets.Secret{Key: "k", Value: Value(name)}, 0)
	}
	// Deleting one level leaves the others.
	if err := m.Delete(t.Context(), org, "node/n1/db"); err != nil {
		t.Fatal(err)
	}
	for _, name := range levels {
		if name == "node/n1/db" {
			wantNotFound(t, m, org, name)
			continue
		}
		wantGet(t, m, org, name, secrets.Secret{Key: "k", Value: Value(name)}, 0)
	}
}

func testOrgIsolation(t *testing.T, m secrets.Manager) {
	a := Org(t)
	b := a + "-b" // a prefix of the other org must not matter either
	mustPut(t, m, a, "db", secrets.Secret{Key: "k", Value: Value("org a")})
	mustPut(t, m, b, "db", secrets.Secret{Key: "k", Value: Value("org b")})
	mustPut(t, m, a, "user/bob/only-a", secrets.Secret{Key: "k", Value: Value("only a")})
	wantGet(t, m, a, "db", secrets.Secret{Key: "k", Value: Value("org a")}, 0)
	wantGet(t, m, b, "db", secrets.Secret{Key: "k", Value: Value("org b")}, 0)
	wantNotFound(t, m, b, "user/bob/only-a")
	if names, err := m.List(t.Context(), b, "user/bob"); err != nil || len(names) != 0 {
		t.Fatalf("List(org b, user/bob) = %q, %v; want empty", names, err)
	}
	if err := m.Delete(t.Context(), b, "db"); err != nil {
		t.Fatal(err)
	}
	wantGet(t, m, a, "db", secrets.Secret{Key: "k", Value: Value("org a")}, 0)
}

func testList(t *testing.T, m secrets.Manager) {
	org := Org(t)
	put := []string{
		"b", "a", "c.x",
		"user/bob/u2", "user/bob/u1", "user/amy/u1",
		"node/n1/s", "node/n2/s",
		"user/bob/node/n1/x", "user/bob/node/n1/w", "user/bob/node/n2/x",
		"test/password1", "test/more-passwords/password2", "user/bob/t/x", "node/n1/d/e",
	}
	for _, name := range put {
		mustPut(t, m, org, name, secrets.Secret{Key: "k", Value: Value(name)})
	}
	tests := []struct {
		scope string
		want  []string
	}{
		{"", []string{"a", "b", "c.x", "test/more-passwords/password2", "test/password1"}},
		{"user/bob", []string{"user/bob/t/x", "user/bob/u1", "user/bob/u2"}},
		{"user/amy", []string{"user/amy/u1"}},
		{"node/n1", []string{"node/n1/d/e", "node/n1/s"}},
		{"user/bob/node/n1", []string{"user/bob/node/n1/w", "user/bob/node/n1/x"}},
		{"user/nobody", []string{}},
		{"node/none", []string{}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.scope), func(t *testing.T) {
			got, err := m.List(t.Context(), org, tc.scope)
			if err != nil {
				t.Fatalf("List(%q) = %v", tc.scope, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("List(%q) = %q, want %q", tc.scope, got, tc.want)
			}
		})
	}
	if got, err := m.List(t.Context(), Org(t), ""); err != nil || len(got) != 0 {
		t.Fatalf("List(empty org) = %q, %v; want empty", got, err)
	}
	for _, scope := range []string{"user", "user/bob/", "db", "user/../node/n1", "openhorizon/user/bob"} {
		if _, err := m.List(t.Context(), org, scope); !errors.Is(err, secrets.ErrInvalidName) {
			t.Fatalf("List(scope %q) error = %v, want ErrInvalidName", scope, err)
		}
	}
}

func testInvalidNames(t *testing.T, m secrets.Manager) {
	org := Org(t)
	s := secrets.Secret{Key: "k", Value: Value("must not be stored")}
	tests := []struct {
		name      string
		org, path string
		rule      string
	}{
		{"dotdot", org, "user/../db", `".."`},
		{"dotdot-org-escape", org, "../other/db", `".."`},
		{"empty-segment", org, "user//db", "empty segments"},
		{"trailing-slash", org, "db/", "empty segments"},
		{"mount-prefix", org, "openhorizon/" + org + "/db", `"openhorizon/"`},
		{"bad-char", org, "d b", "byte 1"},
		{"bad-shape", org, "user/bob", "must be name, user/<user>/name"},
		{"empty", org, "", "must not be empty"},
		{"bad-org", "a/b", "db", "secret manager org"},
		{"empty-org", "", "db", "secret manager org"},
		{"dotdot-org", "..", "db", "secret manager org"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, secrets.ErrInvalidName) || !strings.Contains(err.Error(), tc.rule) {
					t.Fatalf("%s(%q, %q) error = %v, want ErrInvalidName naming %q", op, tc.org, tc.path, err, tc.rule)
				}
			}
			_, err := m.Put(t.Context(), tc.org, tc.path, s)
			check("Put", err)
			_, err = m.Create(t.Context(), tc.org, tc.path, s)
			check("Create", err)
			_, _, err = m.Get(t.Context(), tc.org, tc.path)
			check("Get", err)
			check("Delete", m.Delete(t.Context(), tc.org, tc.path))
		})
	}
	if names, err := m.List(t.Context(), org, ""); err != nil || len(names) != 0 {
		t.Fatalf("after refused writes List = %q, %v; want empty", names, err)
	}
}

func testInvalidSecret(t *testing.T, m secrets.Manager) {
	org := Org(t)
	for _, s := range []secrets.Secret{{Key: "\xff", Value: Value("v")}, {Key: "k", Value: Value("\xc3")}} {
		if _, err := m.Put(t.Context(), org, "db", s); !errors.Is(err, secrets.ErrInvalidSecret) {
			t.Fatalf("Put(non-UTF-8) error = %v, want ErrInvalidSecret", err)
		}
	}
	wantNotFound(t, m, org, "db")
}

// NextChange waits for the next change on ch, failing the test after WaitChange.
func NextChange(t *testing.T, ch <-chan secrets.Change) secrets.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed, want a change")
		}
		return c
	case <-time.After(WaitChange):
		t.Fatalf("no change within %v", WaitChange)
	}
	return secrets.Change{}
}

func testWatch(t *testing.T, m secrets.Manager) {
	org := Org(t)
	ch := m.Watch(t.Context())
	want := func(name string, kind secrets.ChangeKind, version int64) {
		t.Helper()
		got := NextChange(t, ch)
		if got.Org != org || got.Name != name || got.Kind != kind {
			t.Fatalf("change = %+v, want %s %s/%s", got, kind, org, name)
		}
		if version != 0 && got.Version != version {
			t.Fatalf("change version = %d, want %d", got.Version, version)
		}
	}
	v := mustPut(t, m, org, "user/bob/node/n1/db", secrets.Secret{Key: "k", Value: Value("w1")})
	want("user/bob/node/n1/db", secrets.Updated, v)
	v, err := m.Create(t.Context(), org, "db", secrets.Secret{Key: "k", Value: Value("w2")})
	if err != nil {
		t.Fatal(err)
	}
	want("db", secrets.Updated, v)
	if err := m.Delete(t.Context(), org, "db"); err != nil {
		t.Fatal(err)
	}
	want("db", secrets.Deleted, 0)
	// Refused and failed writes announce nothing: the next change is the marker's.
	m.Create(t.Context(), org, "user/bob/node/n1/db", secrets.Secret{Key: "k", Value: Value("refused")})
	m.Put(t.Context(), org, "../db", secrets.Secret{Key: "k", Value: Value("refused")})
	m.Delete(t.Context(), org, "missing")
	v = mustPut(t, m, org, "marker", secrets.Secret{Key: "k", Value: Value("marker")})
	want("marker", secrets.Updated, v)
}

func testWatchCancel(t *testing.T, m secrets.Manager) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := m.Watch(ctx)
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(WaitChange):
		t.Fatal("watch channel not closed after its context was cancelled")
	}
}

func testConcurrentPut(t *testing.T, m secrets.Manager) {
	org := Org(t)
	const writers = 8
	versions := make([]int64, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			v, err := m.Put(t.Context(), org, "db", secrets.Secret{Key: "k", Value: Value(fmt.Sprint(i))})
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
			versions[i] = v
		})
	}
	wg.Wait()
	slices.Sort(versions)
	if len(slices.Compact(slices.Clone(versions))) != writers {
		t.Fatalf("versions of concurrent writes = %v, want %d distinct", versions, writers)
	}
	got, v, err := m.Get(t.Context(), org, "db")
	if err != nil {
		t.Fatal(err)
	}
	if v != versions[writers-1] {
		t.Fatalf("Get version = %d, want the last written %d", v, versions[writers-1])
	}
	if !strings.HasPrefix(got.Value, Canary) {
		t.Fatalf("Get value %q is not one that was written", got.Value)
	}
}

func testConcurrentCreate(t *testing.T, m secrets.Manager) {
	org := Org(t)
	const writers = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
	)
	for i := range writers {
		wg.Go(func() {
			_, err := m.Create(t.Context(), org, "node/n1/db", secrets.Secret{Key: "k", Value: Value(fmt.Sprint(i))})
			switch {
			case err == nil:
				mu.Lock()
				winners = append(winners, i)
				mu.Unlock()
			case !errors.Is(err, secrets.ErrExists):
				t.Errorf("writer %d: %v, want nil or ErrExists", i, err)
			}
		})
	}
	wg.Wait()
	if len(winners) != 1 {
		t.Fatalf("%d concurrent Creates succeeded (%v), want exactly 1", len(winners), winners)
	}
	wantGet(t, m, org, "node/n1/db", secrets.Secret{Key: "k", Value: Value(fmt.Sprint(winners[0]))}, 0)
}

func testCancelledContext(t *testing.T, m secrets.Manager) {
	org := Org(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := m.Put(ctx, org, "db", secrets.Secret{Key: "k", Value: Value("late")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put(cancelled) error = %v, want context.Canceled", err)
	}
	if _, _, err := m.Get(ctx, org, "db"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get(cancelled) error = %v, want context.Canceled", err)
	}
	wantNotFound(t, m, org, "db")
}

func testClose(t *testing.T, m secrets.Manager) {
	org := Org(t)
	ch := m.Watch(t.Context())
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("change after Close, want the channel closed")
		}
	case <-time.After(WaitChange):
		t.Fatal("watch channel still open after Close")
	}
	if _, err := m.Put(t.Context(), org, "db", secrets.Secret{Key: "k", Value: Value("closed")}); !errors.Is(err, secrets.ErrClosed) {
		t.Fatalf("Put after Close error = %v, want ErrClosed", err)
	}
	if _, _, err := m.Get(t.Context(), org, "db"); !errors.Is(err, secrets.ErrClosed) {
		t.Fatalf("Get after Close error = %v, want ErrClosed", err)
	}
}
