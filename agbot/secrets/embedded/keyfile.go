package embedded

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

// KeySize is the length of the sealing key: AES-256.
const KeySize = 32

// ErrKeyFile: the key file is missing where it can not be created, has the wrong size, is
// readable or writable by group or others, is not the owner's, or does not match the store.
var ErrKeyFile = errors.New("secrets key file refused")

// loadKey reads the sealing key, creating it (mode 0600, random) when it does not exist yet.
func loadKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKey(path); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		key, err = readKey(path)
	}
	return key, err
}

func readKey(path string) ([]byte, error) {
	// O_NOFOLLOW: a symlink planted in the data dir must not redirect us to another file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o: it must not be accessible by group or others (chmod 600)",
			ErrKeyFile, path, perm)
	}
	if err := checkOwner(fi); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	if fi.Size() != KeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrKeyFile, path, fi.Size(), KeySize)
	}
	key := make([]byte, KeySize)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyFile, path, err)
	}
	return key, nil
}

// createKey writes a new random key: O_EXCL so two agbots starting together can not each write
// one, synced with its directory so a crash can not leave a store sealed under a lost key.
func createKey(path string) error {
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("%w: generating a key: %w", ErrKeyFile, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return fmt.Errorf("%w: creating %s: %w", ErrKeyFile, path, err)
	}
	if _, err = f.Write(key); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("%w: writing %s: %w", ErrKeyFile, path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// LoadKey reads the sealing key at path, creating it (mode 0600, random) when it does not
// exist yet; refused (ErrKeyFile) as Open refuses it. The caller clears it after use.
func LoadKey(path string) ([]byte, error) { return loadKey(path) }
