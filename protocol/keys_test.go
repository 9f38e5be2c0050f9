package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestKeysSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "node.key")
	k, err := LoadOrCreateKeys(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKeys (create): %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode %#o, want 0600", got)
	}
	dst, _ := os.Stat(dir)
	if got := dst.Mode().Perm(); got != 0o700 {
		t.Errorf("key directory mode %#o, want 0700", got)
	}
	again, err := LoadOrCreateKeys(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKeys (load): %v", err)
	}
	if !again.Public().Equal(k.Public()) {
		t.Errorf("loaded keys differ from saved keys")
	}
	if err := SaveKeys(path, k); !errors.Is(err, fs.ErrExist) {
		t.Errorf("SaveKeys over an existing file = %v, want fs.ErrExist", err)
	}
}

func TestKeysRefuseOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	path := filepath.Join(dir, "k")
	if err := SaveKeys(path, testKeys(t, 1)[0]); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(path, mode)
		if _, err := LoadKeys(path); !errors.Is(err, ErrKeyFilePermissions) {
			t.Errorf("LoadKeys with mode %#o = %v, want ErrKeyFilePermissions", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := LoadKeys(path); err != nil {
		t.Errorf("LoadKeys with mode 0400 = %v, want nil", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	if err := SaveKeys(filepath.Join(open, "k"), testKeys(t, 1)[0]); !errors.Is(err, ErrKeyFilePermissions) {
		t.Errorf("SaveKeys into a 0755 directory = %v, want ErrKeyFilePermissions", err)
	}
	if _, err := LoadKeys(dir); err == nil {
		t.Errorf("LoadKeys(directory) = nil error")
	}
}

func TestParseKeysRefusals(t *testing.T) {
	good, _ := testKeys(t, 1)[0].MarshalBinary()
	var f keyFile
	json.Unmarshal(good, &f)
	mut := func(fn func(*keyFile)) []byte {
		g := f
		fn(&g)
		b, _ := json.Marshal(g)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"format", mut(func(k *keyFile) { k.Format = "v0" }), ErrUnsupported},
		{"ed25519 seed short", mut(func(k *keyFile) { k.Ed25519Seed = k.Ed25519Seed[:31] }), ErrInvalid},
		{"x25519 short", mut(func(k *keyFile) { k.X25519 = k.X25519[:31] }), ErrInvalid},
		{"hybrid short", mut(func(k *keyFile) { k.MLKEM768X25519 = k.MLKEM768X25519[:31] }), ErrInvalid},
		{"unknown field", []byte(`{"format":"anax-agent-keys/v1","x":1}`), ErrMalformed},
		{"not JSON", []byte("-----BEGIN PRIVATE KEY-----"), ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseKeys(tc.in); !errors.Is(err, tc.want) {
				t.Errorf("ParseKeys = %v, want %v", err, tc.want)
			}
		})
	}
	k, err := ParseKeys(mut(func(k *keyFile) { k.MLKEM768X25519 = nil }))
	if err != nil || k.hybrid != nil || k.Public().MLKEM768X25519 != nil {
		t.Errorf("key file without hybrid seed: %v, hybrid %v", err, k.hybrid != nil)
	}
}

func TestPublicKeys(t *testing.T) {
	a, b := testKeys(t, 2)[0].Public(), testKeys(t, 2)[1].Public()
	if err := a.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	if a.Fingerprint() == b.Fingerprint() {
		t.Errorf("two key sets share a fingerprint")
	}
	c := *a
	c.MLKEM768X25519 = nil
	if c.Fingerprint() == a.Fingerprint() {
		t.Errorf("dropping the hybrid key keeps the fingerprint")
	}
	if !bytes.Equal(fixedKeys(t, 0).Public().Signing, a.Signing) {
		t.Errorf("fixed keys are not deterministic")
	}
	tests := []struct {
		name   string
		mutate func(p *PublicKeys)
		want   string
	}{
		{"signing short", func(p *PublicKeys) { p.Signing = p.Signing[:31] }, "field keys.signing: must be a 32-byte Ed25519 public key, got 31 bytes"},
		{"x25519 missing", func(p *PublicKeys) { p.X25519 = nil }, "field keys.x25519: must be a 32-byte X25519 public key"},
		{"hybrid short", func(p *PublicKeys) { p.MLKEM768X25519 = p.MLKEM768X25519[:100] }, "field keys.mlkem768x25519: must be an ML-KEM-768+X25519 public key (1216 bytes), got 100 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := *a
			tc.mutate(&p)
			err := p.Validate()
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestGenerateKeys(t *testing.T) {
	k, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public()
	if err := pub.Validate(); err != nil {
		t.Fatalf("fresh keys do not validate: %v", err)
	}
	if pub.MLKEM768X25519 == nil {
		t.Errorf("GenerateKeys has no hybrid key")
	}
	data, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeys(data)
	if err != nil || !back.Public().Equal(pub) {
		t.Errorf("ParseKeys(MarshalBinary) = %v, equal %v", err, err == nil && back.Public().Equal(pub))
	}
}
