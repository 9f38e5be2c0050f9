package embedded

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/secretstest"
)

func open(t *testing.T, dir string) *Manager {
	t.Helper()
	m, err := Open(dir)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestConformance(t *testing.T) {
	secretstest.Run(t, func(t *testing.T) secrets.Manager { return open(t, t.TempDir()) })
}

func TestKeyFileCreated0600(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("key file mode = %04o, want 0600", got)
	}
	if fi.Size() != KeySize {
		t.Fatalf("key file size = %d, want %d", fi.Size(), KeySize)
	}
	fi, err = os.Stat(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Fatalf("db file mode = %04o, want 0600", got)
	}
}

// The bbolt file (and anything else in the data dir but the key) never holds a value in clear,
// not even after overwrites and deletes leave old pages behind.
func TestNoClearValueOnDisk(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir)
	canaries := []string{
		secretstest.Value("disk-org-level-5d1c"),
		secretstest.Value("disk-user-node-9a0e"),
		secretstest.Value("disk-overwritten-31b7"),
		secretstest.Value("disk-deleted-c4f2"),
	}
	ctx := t.Context()
	put := func(name, v string) {
		if _, err := m.Put(ctx, "org", name, secrets.Secret{Key: "KEY-CANARY-" + name, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", canaries[0])
	put("user/u/node/n/b", canaries[1])
	put("c", canaries[2])
	put("c", "replacement")
	put("d", canaries[3])
	if err := m.Delete(ctx, "org", "d"); err != nil {
		t.Fatal(err)
	}
	// Read while open (bbolt mmaps the file) and again after Close.
	scan := func(when string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		scanned := 0
		for _, e := range entries {
			if e.Name() == KeyFile {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			scanned += len(b)
			for _, c := range append(canaries, "KEY-CANARY-") {
				if bytes.Contains(b, []byte(c)) {
					t.Errorf("%s: %s holds %q in clear", when, e.Name(), c)
				}
			}
			// The scan itself must be able to find things: the names are stored in clear.
			if e.Name() == DBFile && !bytes.Contains(b, []byte("user/u/node/n/b")) {
				t.Errorf("%s: the scan did not find the secret's name in %s; is it reading the right file?", when, e.Name())
			}
		}
		if scanned == 0 {
			t.Fatalf("%s: nothing scanned", when)
		}
	}
	scan("open")
	m.Close()
	scan("closed")
}

func TestKeyFileRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, keyPath string)
		rule  string
	}{
		{"group readable", func(t *testing.T, p string) { writeKey(t, p, 0o640) }, "mode 0640"},
		{"other readable", func(t *testing.T, p string) { writeKey(t, p, 0o604) }, "mode 0604"},
		{"group writable", func(t *testing.T, p string) { writeKey(t, p, 0o620) }, "mode 0620"},
		{"short", func(t *testing.T, p string) {
			if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "holds 5 bytes"},
		{"symlink", func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "elsewhere")
			writeKey(t, target, 0o600)
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"another user's", func(t *testing.T, p string) {
			if os.Geteuid() != 0 {
				if os.Getenv("CI") == "true" {
					t.Fatal("CI=true: this case needs root to chown the key file")
				}
				t.Skip("needs root to chown the key file to another user")
			}
			writeKey(t, p, 0o600)
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, filepath.Join(dir, KeyFile))
			m, err := Open(dir)
			if err == nil {
				m.Close()
				t.Fatal("Open succeeded, want the key file refused")
			}
			if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), tc.rule) {
				t.Fatalf("Open error = %v, want ErrKeyFile naming %q", err, tc.rule)
			}
			if _, err := os.Stat(filepath.Join(dir, DBFile)); err == nil {
				t.Fatal("a store was created although the key was refused")
			}
		})
	}
}

func writeKey(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Repeat([]byte{7}, KeySize), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask may have dropped bits
		t.Fatal(err)
	}
}

func TestWrongKeyRefused(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir)
	if _, err := m.Put(t.Context(), "org", "db", secrets.Secret{Key: "k", Value: secretstest.Value("wrong key")}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	writeKey(t, filepath.Join(dir, KeyFile), 0o600)
	m2, err := Open(dir)
	if err == nil {
		m2.Close()
		t.Fatal("Open with another key succeeded")
	}
	if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "is not the key") {
		t.Fatalf("Open error = %v, want ErrKeyFile saying it is not the key", err)
	}
}

// Records are sealed to their org, name and version: flipping a byte, moving a record to another
// name or org, or editing its version in the header all fail authentication.
func TestTamperedRecordRefused(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(t *testing.T, tx *bolt.Tx) // edits the record that "org"/"victim" reads
		victim string
	}{
		{"flipped ciphertext byte", func(t *testing.T, tx *bolt.Tx) {
			b := tx.Bucket(bucketSecrets).Bucket([]byte("org"))
			rec := bytes.Clone(b.Get([]byte("victim")))
			rec[len(rec)-20] ^= 1
			must(t, b.Put([]byte("victim"), rec))
		}, "victim"},
		{"record moved to another name", func(t *testing.T, tx *bolt.Tx) {
			b := tx.Bucket(bucketSecrets).Bucket([]byte("org"))
			must(t, b.Put([]byte("victim"), bytes.Clone(b.Get([]byte("other")))))
		}, "victim"},
		{"record moved to another org", func(t *testing.T, tx *bolt.Tx) {
			from := tx.Bucket(bucketSecrets).Bucket([]byte("org2"))
			to := tx.Bucket(bucketSecrets).Bucket([]byte("org"))
			must(t, to.Put([]byte("victim"), bytes.Clone(from.Get([]byte("victim")))))
		}, "victim"},
		{"version edited", func(t *testing.T, tx *bolt.Tx) {
			b := tx.Bucket(bucketSecrets).Bucket([]byte("org"))
			rec := bytes.Clone(b.Get([]byte("victim")))
			rec[8]++ // low byte of the version
			must(t, b.Put([]byte("victim"), rec))
		}, "victim"},
		{"truncated", func(t *testing.T, tx *bolt.Tx) {
			b := tx.Bucket(bucketSecrets).Bucket([]byte("org"))
			must(t, b.Put([]byte("victim"), bytes.Clone(b.Get([]byte("victim"))[:headerLen+5])))
		}, "victim"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := open(t, dir)
			ctx := t.Context()
			for _, w := range []struct{ org, name string }{{"org", "victim"}, {"org", "other"}, {"org2", "victim"}} {
				if _, err := m.Put(ctx, w.org, w.name, secrets.Secret{Key: "k", Value: secretstest.Value(w.org + w.name)}); err != nil {
					t.Fatal(err)
				}
			}
			m.Close()
			db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			must(t, db.Update(func(tx *bolt.Tx) error { tc.edit(t, tx); return nil }))
			must(t, db.Close())

			m = open(t, dir)
			_, _, err = m.Get(ctx, "org", tc.victim)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Get of tampered record error = %v, want ErrTampered", err)
			}
			// The untouched record still reads.
			if got, _, err := m.Get(ctx, "org2", "victim"); err != nil || got.Value != secretstest.Value("org2victim") {
				t.Fatalf("Get of untouched record = %v", err)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Versions keep counting after a delete, and survive a reopen.
func TestVersionsPersist(t *testing.T) {
	dir := t.TempDir()
	m := open(t, dir)
	ctx := t.Context()
	s := secrets.Secret{Key: "k", Value: secretstest.Value("persist")}
	for want := int64(1); want <= 3; want++ {
		v, err := m.Put(ctx, "org", "db", s)
		if err != nil || v != want {
			t.Fatalf("Put #%d = %d, %v; want version %d", want, v, err, want)
		}
	}
	must(t, m.Delete(ctx, "org", "db"))
	m.Close()
	m = open(t, dir)
	if v, err := m.Create(ctx, "org", "db", s); err != nil || v != 4 {
		t.Fatalf("Create after delete and reopen = %d, %v; want version 4", v, err)
	}
	got, v, err := m.Get(ctx, "org", "db")
	if err != nil || got != s || v != 4 {
		t.Fatalf("Get after reopen = %v, %d, %v", got, v, err)
	}
}

func TestSecondOpenFails(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if m, err := Open(dir); err == nil {
		m.Close()
		t.Fatal("second Open of a store in use succeeded")
	}
}

func BenchmarkPut(b *testing.B) {
	m, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s := secrets.Secret{Key: "k", Value: secretstest.Value(strings.Repeat("x", 100))}
	for b.Loop() {
		if _, err := m.Put(b.Context(), "org", "db", s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGet(b *testing.B) {
	m, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	s := secrets.Secret{Key: "k", Value: secretstest.Value(strings.Repeat("x", 100))}
	if _, err := m.Put(b.Context(), "org", "db", s); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := m.Get(b.Context(), "org", "db"); err != nil {
			b.Fatal(err)
		}
	}
}
