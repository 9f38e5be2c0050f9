package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"net/http"
	"sync"

	"github.com/edge-secrets/anax-agent/agbot/access"
)

// A node long-polls and answers on one keep-alive connection and presents the same
// credentials on every request. Each connection remembers the credentials that last logged
// in on it (a salted digest, never the password) and the caller they gave, so the next
// request with exactly those credentials skips the login throttles, the store lookups and
// the password check. The cache is bounded by construction (one entry per open connection,
// gone with it) and is dropped whenever any user or node is written or deleted, a node's keys
// or registration change included (identityChanged), so a revoked token or a deleted node
// is checked again on its next request.

type connAuthKey struct{}

type connAuth struct {
	mu     sync.Mutex
	digest [32]byte // of the Basic user and password; zero: nothing cached
	caller access.Caller
	epoch  uint64
}

// ConnContext is http.Server.ConnContext for the API: it gives each connection its login
// slot; kept is what park.Lot.Kept returned for the connection (its slot from before it
// was parked), nil for a new one.
func ConnContext(ctx context.Context, kept any) context.Context {
	ca, _ := kept.(*connAuth)
	if ca == nil {
		ca = &connAuth{}
	}
	return context.WithValue(ctx, connAuthKey{}, ca)
}

// connSlot is the login slot of the request's connection, to keep while it is parked.
func connSlot(r *http.Request) any {
	if ca, _ := r.Context().Value(connAuthKey{}).(*connAuth); ca != nil {
		return ca
	}
	return nil
}

// connPad salts the cached digests: random per process, never stored.
var connPad = func() (p [32]byte) {
	_, _ = rand.Read(p[:])
	return p
}()

func credDigest(user, pw string) [32]byte {
	h := sha256.New()
	h.Write(connPad[:])
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(user))))
	h.Write([]byte(user))
	h.Write([]byte(pw))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// cachedLogin returns the caller a connection's earlier login gave for exactly these
// credentials, if no identity changed since.
func (a *API) cachedLogin(r *http.Request, user, pw string) (*connAuth, [32]byte, uint64, access.Caller, bool) {
	epoch := a.epoch.Load()
	ca, _ := r.Context().Value(connAuthKey{}).(*connAuth)
	if ca == nil {
		return nil, [32]byte{}, epoch, access.Caller{}, false
	}
	d := credDigest(user, pw)
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.epoch == epoch && ca.digest != ([32]byte{}) && subtle.ConstantTimeCompare(ca.digest[:], d[:]) == 1 {
		return ca, d, epoch, ca.caller, true
	}
	return ca, d, epoch, access.Caller{}, false
}

// remember caches a successful login on its connection, as of epoch (read before the check,
// so a change during the check drops it).
func (ca *connAuth) remember(d [32]byte, c access.Caller, epoch uint64) {
	if ca == nil {
		return
	}
	ca.mu.Lock()
	ca.digest, ca.caller, ca.epoch = d, c, epoch
	ca.mu.Unlock()
}

// identityChanged drops every connection's cached login.
func (a *API) identityChanged() { a.epoch.Add(1) }

// forget drops an identity from the password cache and every connection's cached login.
func (a *API) forget(id string) {
	a.ver.Forget(id)
	a.identityChanged()
}
