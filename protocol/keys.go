package protocol

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
)

// KEM names on the wire (envelope header "kem").
const (
	KEMX25519         = "x25519"         // DHKEM(X25519, HKDF-SHA256), HPKE id 0x0020
	KEMMLKEM768X25519 = "mlkem768x25519" // ML-KEM-768 + X25519 hybrid (X-Wing), HPKE id 0x647a
)

var (
	kemX25519 = hpke.DHKEM(ecdh.X25519())
	kemHybrid = hpke.MLKEM768X25519()
)

// PrivateKeys are one party's long-term keys: Ed25519 to sign what it sends, and HPKE KEM
// keys to open what it receives (X25519 always, ML-KEM-768+X25519 unless disabled).
type PrivateKeys struct {
	sign   ed25519.PrivateKey
	x25519 hpke.PrivateKey
	hybrid hpke.PrivateKey // nil: this party does not speak the hybrid KEM

	agreementPRK struct { // the pseudorandom key agreement keys are expanded from
		once sync.Once
		b    []byte
	}
}

// PublicKeys are what a party registers and the other side pins. The JSON form (base64
// fields) is what the agbot stores per node and the node pins for the agbot.
type PublicKeys struct {
	Signing ed25519.PublicKey `json:"signing"` // 32 bytes
	X25519  []byte            `json:"x25519"`  // 32 bytes
	// MLKEM768X25519 is the hybrid KEM public key (1216 bytes); absent when the party does
	// not speak it. Both sides advertising it makes the sender use it.
	MLKEM768X25519 []byte `json:"mlkem768x25519,omitempty"`
	// Features are the protocol features the party speaks beyond version 1
	// (FeatureAgreementKeys). Not part of the keys: Equal and Fingerprint ignore them, and
	// names a party does not know are ignored.
	Features []string `json:"features,omitempty"`
}

// Supports reports whether the party advertises feature f.
func (p *PublicKeys) Supports(f string) bool { return slices.Contains(p.Features, f) }

// GenerateKeys makes a fresh key set, with the hybrid KEM.
func GenerateKeys() (*PrivateKeys, error) {
	_, sign, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate Ed25519 key: %w", err)
	}
	x, err := kemX25519.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate X25519 key: %w", err)
	}
	h, err := kemHybrid.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate ML-KEM-768+X25519 key: %w", err)
	}
	return &PrivateKeys{sign: sign, x25519: x, hybrid: h}, nil
}

// WithoutHybrid returns a copy that neither advertises nor accepts the hybrid KEM: for
// talking to old peers and for testing the classic path.
func (k *PrivateKeys) WithoutHybrid() *PrivateKeys {
	return &PrivateKeys{sign: k.sign, x25519: k.x25519}
}

// Public returns the public half.
func (k *PrivateKeys) Public() *PublicKeys {
	p := &PublicKeys{
		Signing:  bytes.Clone(k.sign.Public().(ed25519.PublicKey)),
		X25519:   k.x25519.PublicKey().Bytes(),
		Features: []string{FeatureAgreementKeys},
	}
	if k.hybrid != nil {
		p.MLKEM768X25519 = k.hybrid.PublicKey().Bytes()
	}
	return p
}

// Validate parses every key, so a registration with a broken key fails there and not at
// the first message.
func (p *PublicKeys) Validate() error {
	if len(p.Signing) != ed25519.PublicKeySize {
		return invalid("keys.signing", "must be a %d-byte Ed25519 public key, got %d bytes", ed25519.PublicKeySize, len(p.Signing))
	}
	if _, err := kemX25519.NewPublicKey(p.X25519); err != nil {
		return invalid("keys.x25519", "must be a 32-byte X25519 public key")
	}
	if p.MLKEM768X25519 != nil {
		if _, err := kemHybrid.NewPublicKey(p.MLKEM768X25519); err != nil {
			return invalid("keys.mlkem768x25519", "must be an ML-KEM-768+X25519 public key (1216 bytes), got %d bytes", len(p.MLKEM768X25519))
		}
	}
	if len(p.Features) > maxFeatures {
		return invalid("keys.features", "at most %d names, got %d", maxFeatures, len(p.Features))
	}
	for i, f := range p.Features {
		if !featureName.MatchString(f) {
			return invalid(fmt.Sprintf("keys.features[%d]", i), "must be 1 to 64 of a-z, 0-9 and '-'")
		}
	}
	return nil
}

const maxFeatures = 16

var featureName = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// KeyID is the short id of one public key that envelope headers carry: the first 16 bytes
// of SHA-256, hex.
func KeyID(pub []byte) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}

// Fingerprint identifies the whole key set for humans pinning it (compare it out of band at
// registration): "SHA256:" and the base64 SHA-256 of the length-prefixed keys.
func (p *PublicKeys) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte("anax-agent public keys v1\x00"))
	for _, k := range [][]byte{p.Signing, p.X25519, p.MLKEM768X25519} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(k)))
		h.Write(n[:])
		h.Write(k)
	}
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// Equal reports whether two key sets are the same (pin comparison).
func (p *PublicKeys) Equal(o *PublicKeys) bool {
	return bytes.Equal(p.Signing, o.Signing) && bytes.Equal(p.X25519, o.X25519) &&
		bytes.Equal(p.MLKEM768X25519, o.MLKEM768X25519)
}

// keyFile is the JSON of a private key file.
type keyFile struct {
	Format         string `json:"format"`
	Ed25519Seed    []byte `json:"ed25519Seed"`
	X25519         []byte `json:"x25519"`
	MLKEM768X25519 []byte `json:"mlkem768x25519Seed,omitempty"`
}

const (
	keyFileFormat = "anax-agent-keys/v1"
	maxKeyFile    = 64 << 10
)

// MarshalBinary is the key file content. It holds private keys: write it only with
// SaveKeys or an equally careful writer.
func (k *PrivateKeys) MarshalBinary() ([]byte, error) {
	f := keyFile{Format: keyFileFormat, Ed25519Seed: k.sign.Seed()}
	var err error
	if f.X25519, err = k.x25519.Bytes(); err != nil {
		return nil, err
	}
	if k.hybrid != nil {
		if f.MLKEM768X25519, err = k.hybrid.Bytes(); err != nil {
			return nil, err
		}
	}
	return json.Marshal(f)
}

// ParseKeys reads MarshalBinary's output.
func ParseKeys(data []byte) (*PrivateKeys, error) {
	var f keyFile
	if err := strictUnmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if f.Format != keyFileFormat {
		return nil, fmt.Errorf("key file: format %s is not %s: %w", quote(f.Format), keyFileFormat, ErrUnsupported)
	}
	if len(f.Ed25519Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key file: %w", invalid("ed25519Seed", "must be %d bytes", ed25519.SeedSize))
	}
	k := &PrivateKeys{sign: ed25519.NewKeyFromSeed(f.Ed25519Seed)}
	var err error
	if k.x25519, err = kemX25519.NewPrivateKey(f.X25519); err != nil {
		return nil, fmt.Errorf("key file: %w", invalid("x25519", "must be a 32-byte X25519 private key"))
	}
	if f.MLKEM768X25519 != nil {
		if k.hybrid, err = kemHybrid.NewPrivateKey(f.MLKEM768X25519); err != nil {
			return nil, fmt.Errorf("key file: %w", invalid("mlkem768x25519Seed", "must be a 32-byte ML-KEM-768+X25519 seed"))
		}
	}
	return k, nil
}

// ErrKeyFilePermissions is wrapped when a key file or its directory is open to others.
var ErrKeyFilePermissions = errors.New("key file permissions too open")

// SaveKeys writes a new key file with mode 0600, creating its directory with mode 0700. It
// refuses to overwrite an existing file (that would lose the identity the peers pinned) and
// to write into a directory that group or others can access.
func SaveKeys(path string, k *PrivateKeys) error {
	data, err := k.MarshalBinary()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("key directory: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key directory %s has mode %#o, want 0700: %w", dir, st.Mode().Perm(), ErrKeyFilePermissions)
	}
	// O_EXCL: never replace a key; the temp-free write is fine because a half-written file
	// fails ParseKeys loudly rather than yielding a wrong key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("key file: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("key file: %w", err)
	}
	return nil
}

// LoadKeys reads a key file written by SaveKeys. It refuses a file that is not regular or
// that group or others may read or write.
func LoadKeys(path string) (*PrivateKeys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file: %w", path, fs.ErrInvalid)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %#o, want 0600: %w", path, st.Mode().Perm(), ErrKeyFilePermissions)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("key file %s: more than %d bytes: %w", path, maxKeyFile, ErrTooLarge)
	}
	k, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateKeys loads the key file, or generates and saves keys when there is none.
func LoadOrCreateKeys(path string) (*PrivateKeys, error) {
	k, err := LoadKeys(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if k, err = GenerateKeys(); err != nil {
		return nil, err
	}
	if err := SaveKeys(path, k); err != nil {
		return nil, err
	}
	return k, nil
}
