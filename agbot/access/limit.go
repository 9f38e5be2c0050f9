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
}

// Limiter counts failed logins per key; past the policy's free allowance, a key must wait a
// doubling delay before its next attempt is even checked. Safe for concurrent use.
type Limiter struct {
	p   LimitPolicy
	mu  sync.Mutex
	m   map[string]*limitEntry
	now func() time.Time
}

type limitEntry struct {
	fails int
	since time.Time // decay reference: the first failure not yet forgotten
	until time.Time // no attempt before
}

// NewLimiter returns a limiter for p; now is the clock (nil: time.Now).
func NewLimiter(p LimitPolicy, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	if p.Keys <= 0 {
		p.Keys = 1 << 17
	}
	return &Limiter{p: p, m: map[string]*limitEntry{}, now: now}
}

// Wait is how long key must wait before its next attempt; 0: go ahead.
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		return 0
	}
	if d := e.until.Sub(l.now()); d > 0 {
		return d
	}
	return 0
}

// Fail records a failed attempt for key and reports whether it now has to wait.
func (l *Limiter) Fail(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.m[key]
	if e == nil {
		if len(l.m) >= l.p.Keys {
			l.sweep(now)
		}
		if len(l.m) >= l.p.Keys {
			return false
		}
		e = &limitEntry{since: now}
		l.m[key] = e
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
		if e.fails == 0 && !now.Before(e.until) {
			delete(l.m, k)
		}
	}
}
