package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// HashParams are argon2id's cost parameters. They are stored in every hash, so a hash made
// with other parameters still verifies.
type HashParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultParams follow OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane).
var DefaultParams = HashParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

// CheapParams are for tests and benchmarks that create thousands of identities; never for
// production.
var CheapParams = HashParams{Time: 1, MemoryKiB: 64, Threads: 1}

// ErrBadHash: a stored hash that does not parse.
var ErrBadHash = errors.New("malformed password hash")

// Hash returns a PHC string `$argon2id$v=19$m=..,t=..,p=..$salt$key`.
func Hash(password string, p HashParams) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// Verify reports whether password matches hash.
func Verify(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrBadHash
	}
	var version int
	var p HashParams
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || p.Time == 0 || p.Threads == 0 {
		return false, ErrBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, ErrBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Verifier checks credentials against stored hashes and remembers the ones that matched, so
// a node polling every few seconds costs a SHA-256, not an argon2id run. An entry is only
// used while the stored hash is the one it matched: a changed password or token drops it.
type Verifier struct {
	mu    sync.Mutex
	pad   [32]byte // random per process: cache digests are useless outside it
	cache map[string]verified
}

type verified struct {
	hash   string
	digest [32]byte
}

// NewVerifier returns an empty verifier.
func NewVerifier() *Verifier {
	v := &Verifier{cache: map[string]verified{}}
	_, _ = rand.Read(v.pad[:])
	return v
}

func (v *Verifier) digest(id, password string) [32]byte {
	h := sha256.New()
	h.Write(v.pad[:])
	fmt.Fprintf(h, "%d:%s", len(id), id)
	h.Write([]byte(password))
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Check reports whether password matches storedHash for the identity id.
func (v *Verifier) Check(id, storedHash, password string) bool {
	d := v.digest(id, password)
	v.mu.Lock()
	e, ok := v.cache[id]
	v.mu.Unlock()
	if ok && e.hash == storedHash {
		return subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1
	}
	good, err := Verify(storedHash, password)
	if err != nil || !good {
		return false
	}
	v.mu.Lock()
	v.cache[id] = verified{hash: storedHash, digest: d}
	v.mu.Unlock()
	return true
}

// Forget drops a cached identity (deleted user or node).
func (v *Verifier) Forget(id string) {
	v.mu.Lock()
	delete(v.cache, id)
	v.mu.Unlock()
}
