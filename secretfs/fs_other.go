//go:build !linux

package secretfs

// FS is the secret file system under one root. Only Linux has one; elsewhere Open and every
// method return ErrNotSupported (see fs_linux.go for what they do on Linux).
type FS struct{}

// Open fails with ErrNotSupported outside Linux.
func Open(opts Options) (*FS, error) { return nil, ErrNotSupported }

// Mode returns ModeRestart outside Linux (nothing is live).
func (f *FS) Mode() Mode { return ModeRestart }

// Features returns nothing outside Linux.
func (f *FS) Features() Features { return Features{} }

// Create fails with ErrNotSupported outside Linux.
func (f *FS) Create(spec Spec) (*Store, error) { return nil, ErrNotSupported }

// Update fails with ErrNotSupported outside Linux.
func (f *FS) Update(id string, secrets []Secret) error { return ErrNotSupported }

// Wipe fails with ErrNotSupported outside Linux.
func (f *FS) Wipe(id string) error { return ErrNotSupported }

// Stores fails with ErrNotSupported outside Linux.
func (f *FS) Stores() ([]*Store, error) { return nil, ErrNotSupported }

// Depth fails with ErrNotSupported outside Linux.
func (f *FS) Depth(id, name string) (int, error) { return 0, ErrNotSupported }

// Close does nothing outside Linux.
func (f *FS) Close() error { return nil }

// IncompleteScans is 0 outside Linux.
func (f *FS) IncompleteScans() uint64 { return 0 }

// Store fails with ErrNotSupported outside Linux.
func (f *FS) Store(id string) (*Store, error) { return nil, ErrNotSupported }

// Depths fails with ErrNotSupported outside Linux.
func (f *FS) Depths() (map[string]int, error) { return nil, ErrNotSupported }
