package access

import (
	"sync"
	"time"
)

// LimitPolicy says how failed logins for one key (an identity, an address) are throttled.
type LimitPolicy struct {
	Free  int           // failures that cost no wait; each one past them makes the key wait
	Base  time.Duration // wait after the first failure past Free; doubles with each further one
	Max   time.Duration // longest wait
	Decay time.Duration // one failure is forgotten per Decay without a new one
	Keys  int           // most keys tracked; past it (after dropping forgotten ones) a failure is not recorded
	// BoundClean bounds the attempts in flight for a key without failures too (to Free+1):
	// right for an identity, wrong for an address many clients may share.
	BoundClean bool
}

// Limiter counts failed logins per key; past the policy's free allowance, a key must wait a
// doubling delay before its next attempt is even checked. Once a key has failed, it may
// have only as many attempts in flight as it has free ones left, and one past them, so
// concurrent guesses can not all slip through before the first is counted (with
// BoundClean, a key without failures too). Safe for
// concurrent use.
type Limiter struct {
	p   LimitPolicy
	mu  sync.Mutex
	m   map[string]*limitEntry
	now func() time.Time
}

type limitEntry struct {
	fails    int
	inflight int
	since    time.Time // decay reference: the first failure not yet forgotten
	until    time.Time // no attempt before
}

// NewLimiter returns a limiter for p; now is the clock (nil: time.Now).
func NewLimiter(p LimitPolicy, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if p.Keys <= 0 {
		p.Keys = 1 << 17
	}
	if p.Base <= 0 {
		p.Base = time.Second
	}
	return &Limiter{p: p, m: map[string]*limitEntry{}, now: now}
}

// Attempt is one login attempt admitted by Begin; End it exactly once.
type Attempt struct {
	l    *Limiter
	key  string
	held bool // counted in flight
}

// Begin admits an attempt for key, or says how long to wait before trying again.
func (l *Limiter) Begin(key string) (Attempt, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := Attempt{l: l, key: key}
	e := l.m[key]
	if e == nil {
		if !l.p.BoundClean || len(l.m) >= l.p.Keys {
			return a, 0
		}
		e = &limitEntry{}
		l.m[key] = e
	}
	now := l.now()
	l.decay(e, now)
	if d := e.until.Sub(now); d > 0 {
		return a, d
	}
	if (e.fails > 0 || l.p.BoundClean) && e.inflight >= max(1, l.p.Free+1-e.fails) {
		return a, l.p.Base
	}
	e.inflight++
	a.held = true
	return a, 0
}

// End closes the attempt; failed records a failure and reports whether the key now has to
// wait.
func (a Attempt) End(failed bool) bool {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[a.key]
	if a.held && e != nil {
		e.inflight--
	}
	now := l.now()
	if !failed {
		if e != nil && e.fails == 0 && e.inflight == 0 && !now.Before(e.until) {
			delete(l.m, a.key)
		}
		return false
	}
	if e == nil {
		if len(l.m) >= l.p.Keys {
			l.sweep(now)
		}
		if len(l.m) >= l.p.Keys {
			return false
		}
		e = &limitEntry{since: now}
		l.m[a.key] = e
	}
	l.decay(e, now)
	if e.fails == 0 {
		e.since = now
	}
	e.fails++
	if over := e.fails - l.p.Free; over > 0 {
		d := l.p.Max
		if over <= 30 && l.p.Base<<(over-1) < l.p.Max {
			d = l.p.Base << (over - 1)
		}
		e.until = now.Add(d)
		return true
	}
	return false
}

func (l *Limiter) decay(e *limitEntry, now time.Time) {
	if l.p.Decay <= 0 || e.fails == 0 {
		return
	}
	if k := int(now.Sub(e.since) / l.p.Decay); k > 0 {
		e.fails = max(0, e.fails-k)
		e.since = e.since.Add(time.Duration(k) * l.p.Decay)
	}
}

// sweep drops keys whose failures are all forgotten and that need not wait.
func (l *Limiter) sweep(now time.Time) {
	for k, e := range l.m {
		l.decay(e, now)
		if e.fails == 0 && e.inflight == 0 && !now.Before(e.until) {
			delete(l.m, k)
		}
	}
}
