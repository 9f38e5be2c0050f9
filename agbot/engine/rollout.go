package engine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Holding is which version of one manager secret one agreement was sent and holds. It
// never holds a value: versions are the manager's (KV v2 version, embedded counter).
type Holding struct {
	Org       string    `json:"org"`
	Name      string    `json:"name"` // manager name
	Agreement string    `json:"agreementId"`
	Node      string    `json:"node"`
	Service   string    `json:"service"`
	Version   int64     `json:"version"` // last version sent
	Seq       uint64    `json:"seq"`     // the message that carried it
	Sent      time.Time `json:"sent"`
	Acked     int64     `json:"acked,omitempty"` // version the node confirmed holding
	AckedAt   time.Time `json:"ackedAt,omitzero"`
	// Failed is the node's reason the latest send failed (or its proposal was declined).
	Failed string `json:"failed,omitempty"`
	// Superseded is a version sent and replaced by a newer one before the node acknowledged it.
	Superseded int64 `json:"superseded,omitempty"`
}

// maxReason bounds a node's failure reason as kept and shown.
const maxReason = 300

// Rollout states of a holding, as shown.
const (
	RolloutAcknowledged = "acknowledged" // the node holds the version sent
	RolloutSent         = "sent"         // queued or delivered, no answer yet, node online
	RolloutOffline      = "offline"      // not acknowledged and the node is not polling
	RolloutFailed       = "failed"       // the node answered with a failure (resent until applied)
)

// holdings is the in-memory index of every Holding, mirrored in the store: by secret (the
// status) and by agreement (every reply and save looks its agreement up).
type holdings struct {
	mu   sync.Mutex
	m    map[string]map[string]*Holding // org\x00name -> agreement -> holding
	byAg map[string]map[string]*Holding // agreement -> name -> the same holding
}

func hkey(org, name string) string { return org + "\x00" + name }

func (h *holdings) put(x Holding) {
	k := hkey(x.Org, x.Name)
	if h.m[k] == nil {
		h.m[k] = map[string]*Holding{}
	}
	if h.byAg[x.Agreement] == nil {
		h.byAg[x.Agreement] = map[string]*Holding{}
	}
	h.m[k][x.Agreement] = &x
	h.byAg[x.Agreement][x.Name] = &x
}

func (h *holdings) del(org, name, ag string) {
	k := hkey(org, name)
	delete(h.m[k], ag)
	if len(h.m[k]) == 0 {
		delete(h.m, k)
	}
	delete(h.byAg[ag], name)
	if len(h.byAg[ag]) == 0 {
		delete(h.byAg, ag)
	}
}

// ofAgreement lists an agreement's holdings. Caller holds h.mu.
func (h *holdings) ofAgreement(org, ag string) []Holding {
	var out []Holding
	for _, x := range h.byAg[ag] {
		if x.Org == org {
			out = append(out, *x)
		}
	}
	return out
}

// rolloutChange is what one transaction changes in the holdings.
type rolloutChange struct {
	put []Holding
	del []Holding
}

func (c *rolloutChange) apply(tx store.Tx, t *store.Table[Holding]) error {
	for _, x := range c.del {
		if err := t.DeleteTx(tx, x.Org, x.Name+"\x00"+x.Agreement); err != nil && !isNotFound(err) {
			return err
		}
	}
	for _, x := range c.put {
		if err := t.PutTx(tx, x.Org, x.Name+"\x00"+x.Agreement, x); err != nil {
			return err
		}
	}
	return nil
}

func (c *rolloutChange) commit(h *holdings) {
	for _, x := range c.del {
		h.del(x.Org, x.Name, x.Agreement)
	}
	for _, x := range c.put {
		h.put(x)
	}
}

// planSaved decides how the holdings of saved agreements change when they are persisted
// with msgs. Held and ending agreements hold nothing; a declined one keeps its holdings,
// failed with the node's reason; a proposed or agreed one holds each of its sources, and a
// proposal or update queued for it now is a new send of the versions it does not hold yet.
// Caller holds e.hold.mu until the change is committed.
func (e *Engine) planSaved(save, drop []*Agreement, msgs []outgoing, now time.Time) *rolloutChange {
	sent := map[string]uint64{}
	for _, m := range msgs {
		if m.m.Type == string(protocol.TypeProposal) || m.m.Type == string(protocol.TypeUpdate) {
			sent[m.m.Agreement] = m.m.Seq
		}
	}
	c := &rolloutChange{}
	for _, a := range drop {
		c.del = append(c.del, e.hold.ofAgreement(a.Org, a.ID)...)
	}
	for _, a := range save {
		old := map[string]Holding{}
		for _, x := range e.hold.ofAgreement(a.Org, a.ID) {
			old[x.Name] = x
		}
		switch a.State {
		case StateHeld, StateEnding:
			for _, x := range old {
				c.del = append(c.del, x)
			}
			continue
		case StateDeclined:
			for _, x := range old {
				x.Failed = clip("declined: " + a.Held)
				c.put = append(c.put, x)
			}
			continue
		}
		want := map[string]int64{}
		for svc, name := range a.Sources {
			want[name] = a.Versions[svc]
		}
		for name, x := range old {
			if _, ok := want[name]; !ok {
				c.del = append(c.del, x) // now served from another name (node-level added or removed)
			}
		}
		seq, queued := sent[a.ID]
		for name, ver := range want {
			x, had := old[name]
			// An update carries only what changed: a name whose version did not change is
			// not in it, and keeps waiting for the answer to the message that carried it.
			if !queued || had && x.Version == ver {
				continue
			}
			if had && x.Acked != x.Version && x.Version != ver {
				x.Superseded = x.Version
			}
			if !had {
				x = Holding{Org: a.Org, Name: name, Agreement: a.ID, Node: a.Node}
			}
			x.Service, x.Version, x.Seq, x.Sent, x.Failed = a.Service, ver, seq, now, ""
			c.put = append(c.put, x)
		}
	}
	return c
}

// planReply decides how a node's answer to message seq of agreement ag changes its
// holdings: applied (failed == "") or failed with the node's reason. Caller holds e.hold.mu
// until the change is committed.
func (e *Engine) planReply(org, ag string, seq uint64, failed string, now time.Time) *rolloutChange {
	c := &rolloutChange{}
	for _, x := range e.hold.ofAgreement(org, ag) {
		if x.Seq != seq {
			continue
		}
		if failed == "" && x.Acked == x.Version && x.Failed == "" && x.Superseded == 0 {
			continue // acknowledged before: a duplicate or a replay changes nothing
		}
		if failed != "" {
			x.Failed = clip(failed)
		} else {
			x.Acked, x.AckedAt, x.Failed, x.Superseded = x.Version, now, "", 0
		}
		c.put = append(c.put, x)
	}
	return c
}

// recordReply records a node's answer to message seq of agreement ag in its holdings and,
// in the same transaction, removes the acknowledged message mid (0: none) from the outbox.
func (e *Engine) recordReply(org, node, ag string, seq, mid uint64, failed string) error {
	e.hold.mu.Lock()
	defer e.hold.mu.Unlock()
	rc := e.planReply(org, ag, seq, failed, time.Now())
	if mid == 0 && len(rc.put) == 0 {
		return nil
	}
	err := e.st.Update(func(tx store.Tx) error {
		if mid != 0 {
			if _, err := e.st.RemoveTx(tx, org, node, mid); err != nil {
				return err
			}
		}
		return rc.apply(tx, e.holdTable)
	})
	if err != nil {
		return err
	}
	rc.commit(&e.hold)
	e.observeAcks(rc)
	return nil
}

// observeAcks reports the delivery time of every holding c acknowledges.
func (e *Engine) observeAcks(c *rolloutChange) {
	if e.cfg.Observe == nil {
		return
	}
	for _, x := range c.put {
		if x.Failed == "" && x.Acked == x.Version && !x.AckedAt.IsZero() {
			e.cfg.Observe(x.Org, x.AckedAt.Sub(x.Sent))
		}
	}
}

func clip(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxReason {
		cut := maxReason
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// seen is when each node last polled, and whether it is polling now.
type seen struct {
	mu    sync.Mutex
	m     map[string]*seenRec // node id
	dirty map[string]bool
}

type seenRec struct {
	last    time.Time
	polling int
}

func (s *seen) begin(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[id]
	if r == nil {
		r = &seenRec{}
		s.m[id] = r
	}
	r.polling++
}

func (s *seen) end(id string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.m[id]; r != nil {
		r.polling--
		r.last = now
		s.dirty[id] = true
	}
}

// offline reports whether node id is offline at now: no poll in flight and none ended
// within after. since is its last poll's end (zero: never polled).
func (s *seen) offline(id string, now time.Time, after time.Duration) (bool, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[id]
	if r == nil {
		return true, time.Time{}
	}
	if r.polling > 0 {
		return false, r.last
	}
	return now.Sub(r.last) > after, r.last
}

// flushSeen writes the poll times that changed since the last flush (one transaction):
// after a restart a node that has not polled since is shown offline since its last poll.
func (e *Engine) flushSeen() {
	e.seen.mu.Lock()
	out := map[string]time.Time{}
	for id := range e.seen.dirty {
		out[id] = e.seen.m[id].last
	}
	e.seen.dirty = map[string]bool{}
	e.seen.mu.Unlock()
	if len(out) == 0 {
		return
	}
	err := e.st.Update(func(tx store.Tx) error {
		for id, t := range out {
			org, node, _ := strings.Cut(id, "/")
			if err := e.lastPoll.PutTx(tx, org, node, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		e.log.Warn("poll times not saved", "err", err)
	}
}

// RolloutNode is one agreement's copy of a secret, as shown.
type RolloutNode struct {
	Node       string     `json:"node"`
	Agreement  string     `json:"agreementId"`
	Service    string     `json:"service"`
	State      string     `json:"state"` // RolloutAcknowledged, RolloutSent, RolloutOffline, RolloutFailed
	Version    int64      `json:"version"`
	Acked      int64      `json:"acknowledgedVersion"` // 0: none yet
	Sent       time.Time  `json:"sent"`
	AckedAt    *time.Time `json:"acknowledged,omitempty"`
	LastPoll   *time.Time `json:"lastPoll,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Superseded int64      `json:"supersededVersion,omitempty"`
}

// RolloutVersion counts the agreements sent one version.
type RolloutVersion struct {
	Version      int64        `json:"version"`
	Nodes        int          `json:"nodes"` // agreements this version was the last sent to
	Acknowledged int          `json:"acknowledged"`
	Sent         int          `json:"sent"`
	Offline      int          `json:"offline"`
	OfflineSince *time.Time   `json:"offlineSince,omitempty"` // earliest last poll of those offline
	Failed       int          `json:"failed"`
	Failures     []FailReason `json:"failures,omitempty"`
}

// FailReason is one reason nodes gave, with how many gave it.
type FailReason struct {
	Reason string `json:"reason"`
	Nodes  int    `json:"nodes"`
}

// Rollout is a secret's rollout: GET /org/{org}/rollouts/{name}.
type Rollout struct {
	Org      string           `json:"org"`
	Name     string           `json:"name"`
	Current  int64            `json:"currentVersion"` // highest version sent (0: not delivered to any agreement)
	Summary  string           `json:"summary"`
	Versions []RolloutVersion `json:"versions"` // highest first
	Nodes    []RolloutNode    `json:"nodes"`    // by node, then agreement; only node's with a node filter
	Total    int              `json:"total"`    // agreements holding the secret, before the node filter
}

// Rollout reports which agreements hold which version of org's manager secret name; with
// node != "" only that node's agreements are listed (the counts cover all).
func (e *Engine) Rollout(org, name, node string) Rollout {
	now := time.Now()
	e.hold.mu.Lock()
	var hs []Holding
	for _, x := range e.hold.m[hkey(org, name)] {
		hs = append(hs, *x)
	}
	e.hold.mu.Unlock()
	out := Rollout{Org: org, Name: name, Versions: []RolloutVersion{}, Nodes: []RolloutNode{}, Total: len(hs)}
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].Node != hs[j].Node {
			return hs[i].Node < hs[j].Node
		}
		return hs[i].Agreement < hs[j].Agreement
	})
	byVer := map[int64]*RolloutVersion{}
	fails := map[int64]map[string]int{}
	for _, x := range hs {
		out.Current = max(out.Current, x.Version)
		r := e.rolloutNode(x, now)
		v := byVer[x.Version]
		if v == nil {
			v = &RolloutVersion{Version: x.Version}
			byVer[x.Version] = v
			fails[x.Version] = map[string]int{}
		}
		v.Nodes++
		switch r.State {
		case RolloutAcknowledged:
			v.Acknowledged++
		case RolloutFailed:
			v.Failed++
			fails[x.Version][r.Reason]++
		case RolloutOffline:
			v.Offline++
			if r.LastPoll != nil && (v.OfflineSince == nil || r.LastPoll.Before(*v.OfflineSince)) {
				v.OfflineSince = r.LastPoll
			}
		default:
			v.Sent++
		}
		if node == "" || x.Node == node {
			out.Nodes = append(out.Nodes, r)
		}
	}
	for ver, v := range byVer {
		for why, n := range fails[ver] {
			v.Failures = append(v.Failures, FailReason{Reason: why, Nodes: n})
		}
		sort.Slice(v.Failures, func(i, j int) bool {
			a, b := v.Failures[i], v.Failures[j]
			return a.Nodes > b.Nodes || a.Nodes == b.Nodes && a.Reason < b.Reason
		})
		out.Versions = append(out.Versions, *v)
	}
	sort.Slice(out.Versions, func(i, j int) bool { return out.Versions[i].Version > out.Versions[j].Version })
	out.Summary = summary(out)
	return out
}

func (e *Engine) rolloutNode(x Holding, now time.Time) RolloutNode {
	r := RolloutNode{Node: x.Node, Agreement: x.Agreement, Service: x.Service, Version: x.Version, Acked: x.Acked,
		Sent: x.Sent, Reason: x.Failed, Superseded: x.Superseded}
	if !x.AckedAt.IsZero() {
		t := x.AckedAt
		r.AckedAt = &t
	}
	off, last := e.seen.offline(NodeID(x.Org, x.Node), now, e.cfg.OfflineAfter)
	if !last.IsZero() {
		r.LastPoll = &last
	}
	switch {
	case x.Acked == x.Version:
		r.State = RolloutAcknowledged
	case x.Failed != "":
		r.State = RolloutFailed
	case off:
		r.State = RolloutOffline
	default:
		r.State = RolloutSent
	}
	return r
}

// summary is one line per version, e.g. "version 7: 9,950 of 10,000 nodes acknowledged,
// 48 offline since 2026-12-06T17:00:00Z, 2 failed: <reason>".
func summary(r Rollout) string {
	if len(r.Versions) == 0 {
		return fmt.Sprintf("%s: not delivered to any agreement", r.Name)
	}
	var lines []string
	for _, v := range r.Versions {
		s := fmt.Sprintf("version %d: %s of %s nodes acknowledged", v.Version, thousands(v.Acknowledged), thousands(v.Nodes))
		if v.Sent > 0 {
			s += fmt.Sprintf(", %s sent", thousands(v.Sent))
		}
		if v.Offline > 0 {
			s += fmt.Sprintf(", %s offline", thousands(v.Offline))
			if v.OfflineSince != nil {
				s += " since " + v.OfflineSince.UTC().Format(time.RFC3339)
			} else {
				s += " (never polled)"
			}
		}
		if v.Failed > 0 {
			var why []string
			for _, f := range v.Failures {
				why = append(why, fmt.Sprintf("%s (%d)", f.Reason, f.Nodes))
			}
			s += fmt.Sprintf(", %s failed: %s", thousands(v.Failed), strings.Join(why, "; "))
		}
		lines = append(lines, s)
	}
	return strings.Join(lines, "\n")
}

func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// RolloutCounts counts holdings by state for one org (metrics).
type RolloutCounts struct {
	Pending, Offline, Acknowledged, Failed int
}

// RolloutStats counts every org's holdings by state; with bySecret, per secret too
// (key org\x00name).
func (e *Engine) RolloutStats(bySecret bool) (byOrg, perSecret map[string]RolloutCounts) {
	now := time.Now()
	byOrg, perSecret = map[string]RolloutCounts{}, map[string]RolloutCounts{}
	e.hold.mu.Lock()
	var hs []Holding
	for _, m := range e.hold.m {
		for _, x := range m {
			hs = append(hs, *x)
		}
	}
	e.hold.mu.Unlock()
	for _, x := range hs {
		st := e.rolloutNode(x, now).State
		c := byOrg[x.Org]
		count(&c, st)
		byOrg[x.Org] = c
		if bySecret {
			k := hkey(x.Org, x.Name)
			s := perSecret[k]
			count(&s, st)
			perSecret[k] = s
		}
	}
	return byOrg, perSecret
}

func count(c *RolloutCounts, state string) {
	switch state {
	case RolloutAcknowledged:
		c.Acknowledged++
	case RolloutFailed:
		c.Failed++
	case RolloutOffline:
		c.Offline++
	default:
		c.Pending++
	}
}

// LastPoll says when node last polled (zero: never) and whether it is online now.
func (e *Engine) LastPoll(org, node string) (time.Time, bool) {
	off, last := e.seen.offline(NodeID(org, node), time.Now(), e.cfg.OfflineAfter)
	return last, !off
}
