package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// ErrBusy: every argon2id slot is taken and the queue for them is full (or the wait for one
// ran out); the caller should try again shortly (HTTP 503).
var ErrBusy = errors.New("too many password checks in progress")

// VerifierConfig bounds the work and memory credential checks may take.
type VerifierConfig struct {
	// Params make the dummy hash an unknown identity is checked against: the parameters new
	// passwords and tokens get, so an unknown id costs what a known one costs.
	Params HashParams
	// Slots is how many argon2id runs may go at once (each holds Params.MemoryKiB);
	// default runtime.GOMAXPROCS(0).
	Slots int
	// Queue is how many checks may wait for a slot (default 32 per slot), and MaxWait how
	// long one waits (default 5s); beyond either the check fails with ErrBusy.
	Queue   int
	MaxWait time.Duration
}

// Verifier checks credentials against stored hashes, at most cfg.Slots argon2id runs at a
// time. It remembers the one credential that last matched each identity, so a node polling
// every few seconds costs a SHA-256, not an argon2id run; the memory only ever confirms that
// exact credential. Anything else (a wrong guess, another password) costs a full argon2id
// run, and an unknown identity costs one too, against a dummy hash. An entry is used only
// while the stored hash is the one it matched: a changed password or token drops it.
type Verifier struct {
	mu      sync.Mutex
	pad     [32]byte // random per process: cache digests are useless outside it
	cache   map[string]verified
	dummy   string
	slots   chan struct{}
	queue   int64
	maxWait time.Duration
	waiting atomic.Int64
	runs    atomic.Uint64
}

type verified struct {
	hash   string
	digest [32]byte
}

// NewVerifier returns a verifier with an empty cache.
func NewVerifier(cfg VerifierConfig) *Verifier {
	if cfg.Params.Time == 0 {
		cfg.Params = DefaultParams
	}
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.GOMAXPROCS(0)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 32 * cfg.Slots
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 5 * time.Second
	}
	v := &Verifier{cache: map[string]verified{}, slots: make(chan struct{}, cfg.Slots), queue: int64(cfg.Queue), maxWait: cfg.MaxWait}
	_, _ = rand.Read(v.pad[:])
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	dummy, err := Hash(base64.RawStdEncoding.EncodeToString(pw[:]), cfg.Params)
	if err != nil {
		// Hash fails only when the system's randomness does; nothing can be verified then.
		panic(fmt.Sprintf("access: making the dummy hash: %v", err))
	}
	v.dummy = dummy
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

// Check reports whether password matches storedHash for the identity id. An empty
// storedHash means the identity does not exist: a dummy hash is checked instead, the answer
// is false. The error is ErrBusy or the context's when no argon2id slot could be had.
func (v *Verifier) Check(ctx context.Context, id, storedHash, password string) (bool, error) {
	d := v.digest(id, password)
	if storedHash != "" {
		v.mu.Lock()
		e, ok := v.cache[id]
		v.mu.Unlock()
		if ok && e.hash == storedHash && subtle.ConstantTimeCompare(e.digest[:], d[:]) == 1 {
			return true, nil
		}
	}
	hash := storedHash
	if hash == "" {
		hash = v.dummy
	}
	good, err := v.verify(ctx, hash, password)
	if errors.Is(err, ErrBadHash) {
		return false, nil
	}
	if err != nil || !good || storedHash == "" {
		return false, err
	}
	v.mu.Lock()
	v.cache[id] = verified{hash: storedHash, digest: d}
	v.mu.Unlock()
	return true, nil
}

// verify runs Verify in one of the slots, waiting for one within the queue's bounds.
func (v *Verifier) verify(ctx context.Context, hash, password string) (bool, error) {
	select {
	case v.slots <- struct{}{}:
	default:
		if v.waiting.Add(1) > v.queue {
			v.waiting.Add(-1)
			return false, ErrBusy
		}
		t := time.NewTimer(v.maxWait)
		select {
		case v.slots <- struct{}{}:
			t.Stop()
			v.waiting.Add(-1)
		case <-t.C:
			v.waiting.Add(-1)
			return false, ErrBusy
		case <-ctx.Done():
			t.Stop()
			v.waiting.Add(-1)
			return false, ctx.Err()
		}
	}
	defer func() { <-v.slots }()
	v.runs.Add(1)
	good, err := Verify(hash, password)
	if errors.Is(err, ErrBadHash) {
		// Malformed stored hash: refuse, at the cost of a well-formed one.
		_, _ = Verify(v.dummy, password)
	}
	return good, err
}

// Runs is how many argon2id verifications have run (a test and metrics hook).
func (v *Verifier) Runs() uint64 { return v.runs.Load() }

// Forget drops a cached identity (deleted user or node).
func (v *Verifier) Forget(id string) {
	v.mu.Lock()
	delete(v.cache, id)
	v.mu.Unlock()
}
