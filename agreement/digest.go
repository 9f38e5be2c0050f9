package agreement

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// digestKeyFile holds the per-node HMAC key, mode 0600, in the state directory.
const digestKeyFile = "digest.key"

const digestKeyLen = 32

// digester holds the key of the digests kept in the state DB in place of secret values:
// HMAC-SHA256 under a per-node key (protocol.SecretValue.Digest), so the DB shows whether a
// value changed without letting anyone test guesses against it offline (a plain hash of a
// short password would).
type digester struct{ key []byte }

// loadDigestKey reads the key file in dir, creating it on first use. A key file that others
// can read, or of the wrong size, is refused: the operator must fix it, not the agent guess.
func loadDigestKey(dir string) (*digester, error) {
	path := filepath.Join(dir, digestKeyFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return createDigestKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("digest key %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("digest key %s: mode %04o lets others read it; want 0600", path, st.Mode().Perm())
	}
	key := make([]byte, digestKeyLen+1)
	n, err := io.ReadFull(f, key)
	if n != digestKeyLen || !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("digest key %s: want exactly %d bytes", path, digestKeyLen)
	}
	return &digester{key: key[:digestKeyLen]}, nil
}

func createDigestKey(path string) (*digester, error) {
	key := make([]byte, digestKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Write a temporary file and link it into place, so a crash never leaves a short key.
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path) // fails if another process created it first
	}
	_ = os.Remove(tmp)
	if errors.Is(err, fs.ErrExist) {
		return loadDigestKey(filepath.Dir(path))
	}
	if err != nil {
		return nil, fmt.Errorf("digest key %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	return &digester{key: key}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
