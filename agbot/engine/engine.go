package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// State is where an agreement stands on the agbot.
type State string

// Agreement states.
const (
	StateHeld     State = "held"     // a bound secret is missing: proposed as soon as it appears
	StateProposed State = "proposed" // proposal queued or delivered, no reply yet
	StateAgreed   State = "agreed"   // the node accepted
	StateDeclined State = "declined" // the node declined or cancelled: not proposed again until something changes
	StateEnding   State = "ending"   // cancel queued, waiting for cancel_reply
)

// Agreement is one service running (or to run) on one node, as the agbot keeps it. It never
// holds a secret value: Sources and Versions say which manager secret each service secret
// comes from, so a change can be detected and explained.
type Agreement struct {
	ID          string `json:"id"`
	Org         string `json:"org"`     // the node's org
	Node        string `json:"node"`    // node id within Org
	Source      string `json:"source"`  // "policy/<org>/<name>" or "pattern/<org>/<name>"
	Service     string `json:"service"` // exchange id of the service
	ServiceOrg  string `json:"serviceOrg"`
	State       State  `json:"state"`
	Held        string `json:"held,omitempty"`        // why it is held
	Seq         uint64 `json:"seq"`                   // last protocol sequence sent
	ProposalSeq uint64 `json:"proposalSeq,omitempty"` // seq of the latest proposal: only its reply decides
	// Keyed: the latest proposal carried the agreement's key (the node advertised
	// protocol.FeatureAgreementKeys), so the agreement's other messages are sealed with it.
	Keyed    bool                            `json:"keyed,omitempty"`
	Bound    map[string]exchange.BoundSecret `json:"bound"`              // service secret -> binding
	Sources  map[string]string               `json:"sources,omitempty"`  // service secret -> manager name in use
	Versions map[string]int64                `json:"versions,omitempty"` // service secret -> version in use
	Created  time.Time                       `json:"created"`
	Updated  time.Time                       `json:"updated"`
}

// key identifies what an agreement is for: a node running a service through a source.
func (a *Agreement) key() string {
	return a.Org + "\x00" + a.Node + "\x00" + a.Source + "\x00" + a.ServiceOrg + "/" + serviceURL(a.Service)
}

// Config wires an engine.
type Config struct {
	Store   *store.Store
	Secrets secrets.Manager
	Keys    *protocol.PrivateKeys
	ID      string // the agbot's protocol id
	Log     *slog.Logger
	// Retry is the first resend delay of an unacknowledged message (doubling to MaxRetry).
	Retry, MaxRetry time.Duration
	// MaxWait caps a long-poll.
	MaxWait time.Duration
	Limits  protocol.Limits
	// OfflineAfter: a node with no poll in flight whose last poll ended longer ago than
	// this is shown offline (zero: MaxWait plus 30s).
	OfflineAfter time.Duration
	// Observe, when set, is told the delivery time (sent to acknowledged) of every
	// secret version a node acknowledges (metrics).
	Observe func(org string, d time.Duration)
}

// Engine is the agreement engine. Safe for concurrent use.
type Engine struct {
	cfg Config
	st  *store.Store
	sm  secrets.Manager
	ep  *protocol.Endpoint
	log *slog.Logger

	agreements *store.Table[Agreement]
	holdTable  *store.Table[Holding]   // org, name\x00agreement
	lastPoll   *store.Table[time.Time] // org, node
	hold       holdings
	seen       seen

	mu   sync.Mutex            // serialises reconciliation and agreement changes
	live map[string]*Agreement // by id

	keys keyRing
	// retired holds each node's keys replaced by its owner or an admin: only the old
	// node's answers to the cancels sealed to them are accepted under them.
	retired keyRing
	q       queues
	acks    acker

	dirtyMu sync.Mutex
	dirty   map[string]bool // orgs whose reconcile failed (manager unavailable): retried
	kick    chan struct{}
}

// Sentinels.
var (
	ErrNoNode  = errors.New("node not registered")
	ErrUnknown = errors.New("unknown agreement")
)

// New loads agreements and queued messages from the store.
func New(cfg Config) (*Engine, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = 30 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.OfflineAfter <= 0 {
		cfg.OfflineAfter = cfg.MaxWait + 30*time.Second
	}
	e := &Engine{cfg: cfg, st: cfg.Store, sm: cfg.Secrets, log: cfg.Log,
		agreements: store.NewTable[Agreement](cfg.Store, "agreements"),
		holdTable:  store.NewTable[Holding](cfg.Store, "holdings"), lastPoll: store.NewTable[time.Time](cfg.Store, "lastpoll"),
		live: map[string]*Agreement{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1)}
	e.hold.m, e.hold.byAg = map[string]map[string]*Holding{}, map[string]map[string]*Holding{}
	e.seen.m, e.seen.dirty = map[string]*seenRec{}, map[string]bool{}
	e.keys.m = map[string]*protocol.PublicKeys{}
	e.retired.m = map[string]*protocol.PublicKeys{}
	e.q.init(cfg.Retry, cfg.MaxRetry)
	e.ep = &protocol.Endpoint{ID: cfg.ID, Keys: cfg.Keys, Peers: &e.keys, Limits: cfg.Limits,
		Agreements: protocol.DerivedAgreementKeys{ID: cfg.ID, Keys: cfg.Keys, Peers: &e.keys}}

	nodes, err := e.st.Nodes.List("")
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if n.PublicKeys != nil {
			e.keys.set(NodeID(n.Org, n.ID), n.PublicKeys)
		}
		if n.ReplacedKeys != nil {
			e.retired.set(NodeID(n.Org, n.ID), n.ReplacedKeys)
		}
	}
	all, err := e.agreements.List("")
	if err != nil {
		return nil, err
	}
	for i := range all {
		a := all[i]
		e.live[a.ID] = &a
	}
	if err := e.loadRollout(); err != nil {
		return nil, err
	}
	err = e.st.Outbox(func(org, node string, m store.Message) error {
		e.q.restore(NodeID(org, node), m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	e.acks.start(e)
	return e, nil
}

// Close commits the acknowledgements gathered for a group commit and stops gathering; call
// it before closing the store. Acknowledgements after it commit one by one.
func (e *Engine) Close() { e.acks.close() }

// ID is the agbot's protocol id.
func (e *Engine) ID() string { return e.cfg.ID }

// PublicKeys are the agbot's public keys, which nodes pin.
func (e *Engine) PublicKeys() *protocol.PublicKeys { return e.cfg.Keys.Public() }

// NodeID is a node's protocol id: "<org>/<node>".
func NodeID(org, node string) string { return org + "/" + node }

// Run watches the secrets manager and retries failed reconciliations until ctx is done. It
// starts with a full reconciliation, which also catches changes made while the agbot was
// down.
func (e *Engine) Run(ctx context.Context) {
	changes := e.sm.Watch(ctx)
	e.ReconcileAll(ctx)
	retry := time.NewTicker(2 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			e.flushSeen()
			return
		case c, ok := <-changes:
			if !ok {
				return
			}
			e.SecretChanged(ctx, c.Org, c.Name)
		case <-retry.C:
			e.retryDirty(ctx)
			e.flushSeen()
		case <-e.kick:
			e.retryDirty(ctx)
		}
	}
}

func (e *Engine) markDirty(org string) {
	e.dirtyMu.Lock()
	e.dirty[org] = true
	e.dirtyMu.Unlock()
}

func (e *Engine) retryDirty(ctx context.Context) {
	e.dirtyMu.Lock()
	orgs := make([]string, 0, len(e.dirty))
	for o := range e.dirty {
		orgs = append(orgs, o)
	}
	e.dirty = map[string]bool{}
	e.dirtyMu.Unlock()
	for _, o := range orgs {
		if err := e.Reconcile(ctx, o); err != nil {
			e.log.Warn("reconcile retry failed", "org", o, "err", err)
		}
	}
}

// ReconcileAll reconciles every org.
func (e *Engine) ReconcileAll(ctx context.Context) {
	orgs, err := e.st.Orgs.List("")
	if err != nil {
		e.log.Error("list orgs", "err", err)
		return
	}
	for _, o := range orgs {
		if err := e.Reconcile(ctx, o.ID); err != nil {
			e.log.Warn("reconcile failed, will retry", "org", o.ID, "err", err)
		}
	}
}

// Agreements lists the live agreements of an org (all orgs for ""), optionally of one node.
func (e *Engine) Agreements(org, node string) []Agreement {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Agreement
	for _, a := range e.live {
		if (org == "" || a.Org == org) && (node == "" || a.Node == node) {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func newAgreementID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyRing is the nodes' registered public keys: the engine's protocol.KeyRing.
type keyRing struct {
	mu sync.RWMutex
	m  map[string]*protocol.PublicKeys
}

func (k *keyRing) PeerKeys(id string) (*protocol.PublicKeys, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if p, ok := k.m[id]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("node %q has no registered keys: %w", id, protocol.ErrUnknownSender)
}

func (k *keyRing) set(id string, p *protocol.PublicKeys) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if p == nil {
		delete(k.m, id)
	} else {
		k.m[id] = p
	}
}

// persist writes agreements and queues messages in one transaction, then offers the
// messages to the nodes' polls: a message is on disk before any node can see it.
func (e *Engine) persist(save []*Agreement, drop []*Agreement, msgs []outgoing) error {
	return e.persistRemoving("", "", 0, save, drop, msgs)
}

// persistRemoving is persist that also removes the queued message mid (0: none) of node
// org/node in the same transaction: the message a node's reply answered.
func (e *Engine) persistRemoving(org, node string, mid uint64, save []*Agreement, drop []*Agreement, msgs []outgoing) error {
	e.hold.mu.Lock()
	defer e.hold.mu.Unlock()
	rc := e.planSaved(save, drop, msgs, time.Now())
	err := e.st.Update(func(tx store.Tx) error {
		if mid != 0 {
			if _, err := e.st.RemoveTx(tx, org, node, mid); err != nil {
				return err
			}
		}
		if err := rc.apply(tx, e.holdTable); err != nil {
			return err
		}
		for _, a := range save {
			if err := e.agreements.PutTx(tx, a.Org, a.ID, *a); err != nil {
				return err
			}
		}
		for _, a := range drop {
			if err := e.agreements.DeleteTx(tx, a.Org, a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		for i := range msgs {
			if err := e.st.EnqueueTx(tx, msgs[i].org, msgs[i].node, &msgs[i].m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("persist agreements: %w", err)
	}
	rc.commit(&e.hold)
	for _, a := range save {
		e.live[a.ID] = a
	}
	for _, a := range drop {
		delete(e.live, a.ID)
	}
	if mid != 0 {
		e.q.remove(NodeID(org, node), mid)
	}
	for _, m := range msgs {
		e.q.push(NodeID(m.org, m.node), m.m)
	}
	return nil
}

type outgoing struct {
	org, node string
	m         store.Message
}

// loadRollout reads the holdings and poll times kept across restarts.
func (e *Engine) loadRollout() error {
	hs, err := e.holdTable.List("")
	if err != nil {
		return err
	}
	for _, x := range hs {
		e.hold.put(x)
	}
	return e.st.View(func(tx store.Tx) error {
		return e.lastPoll.EachTx(tx, "", func(org, node string, t time.Time) error {
			e.seen.m[NodeID(org, node)] = &seenRec{last: t}
			return nil
		})
	})
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
