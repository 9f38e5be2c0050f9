package api

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/access"
)

// Default login throttling. One address may fail 20 times, one identity 10 times (from any
// addresses), without waiting; each failure after that makes the next attempt wait a
// doubling delay (1s, 2s, ... up to the cap), during which attempts are refused unchecked;
// failures are forgotten one per Decay. One identity has at most 11 logins in flight. An
// identity is not throttled at an address it has logged in from before: guesses sprayed
// from elsewhere do not lock out a node or user at its usual address.
var (
	DefaultAddressLimit  = access.LimitPolicy{Free: 20, Base: time.Second, Max: time.Minute, Decay: time.Minute}
	DefaultIdentityLimit = access.LimitPolicy{Free: 10, Base: time.Second, Max: 5 * time.Minute, Decay: 5 * time.Minute, BoundClean: true}
)

const maxKnownPairs = 1 << 16

// guard throttles failed logins per address and per identity.
type guard struct {
	byAddr, byID *access.Limiter
	mu           sync.Mutex
	known        map[string]struct{} // identity + "\x00" + address that logged in
}

func newGuard(addr, id access.LimitPolicy) *guard {
	if addr.Free == 0 && addr.Base == 0 {
		addr = DefaultAddressLimit
	}
	if id.Free == 0 && id.Base == 0 {
		id = DefaultIdentityLimit
	}
	return &guard{byAddr: access.NewLimiter(addr, nil), byID: access.NewLimiter(id, nil), known: map[string]struct{}{}}
}

// clientAddr is the key of a request's source: its IP, an IPv6 one as its /64.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// attempt is a login admitted by both limits.
type attempt struct {
	g            *guard
	id, addr     string
	byAddr, byID access.Attempt
	skipIdentity bool
}

// begin admits a login as id from addr, or says how long to wait and which limit said so.
func (g *guard) begin(id, addr string) (*attempt, time.Duration, string) {
	at := &attempt{g: g, id: id, addr: addr}
	g.mu.Lock()
	_, at.skipIdentity = g.known[id+"\x00"+addr]
	g.mu.Unlock()
	var d time.Duration
	if at.byAddr, d = g.byAddr.Begin(addr); d > 0 {
		return nil, d, "from this address"
	}
	if at.byID, d = g.byID.Begin(id); d > 0 && !at.skipIdentity {
		at.byAddr.End(false)
		return nil, d, "for " + id
	}
	return at, 0, ""
}

// failed records a failed login; it reports whether either limit now applies.
func (at *attempt) failed() bool {
	a := at.byAddr.End(true)
	return at.byID.End(true) || a
}

// succeeded remembers that the identity logged in from the address. It does not clear the
// identity's failures: a node polling every few seconds would otherwise hand a distributed
// guesser a fresh allowance.
func (at *attempt) succeeded() {
	at.byAddr.End(false)
	at.byID.End(false)
	g := at.g
	g.mu.Lock()
	if len(g.known) < maxKnownPairs {
		g.known[at.id+"\x00"+at.addr] = struct{}{}
	}
	g.mu.Unlock()
}

// abandoned ends an attempt that was not decided (the password check could not run).
func (at *attempt) abandoned() {
	at.byAddr.End(false)
	at.byID.End(false)
}
