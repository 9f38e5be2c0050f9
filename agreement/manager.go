package agreement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotFound: no agreement with that id.
	ErrNotFound = errors.New("agreement not found")
	// ErrClosed: the manager is shutting down or shut down.
	ErrClosed = errors.New("agreement manager is shut down")
)

// Options configure a Manager.
type Options struct {
	// StateDir holds the state DB and the digest key. Default DefaultStateDir. Created 0700.
	StateDir string
	// Stores are the node's secret stores (*secretfs.FS). Required.
	Stores SecretStore
	// Runner is the container worker (*container.Worker). Required.
	Runner Runner
	// NodeArch is the node's architecture in Open Horizon naming. Default arch.Node().
	NodeArch string
	// Admit is the node policy. It gets the properties of a proposal (ProposalProperties: the
	// deployment policy's and the service's built-in ones) and returns nil to run it, or an error saying which constraint
	// refused it. Nil admits every service of the node's architecture.
	Admit func(service map[string]any) error
	// Node tells what containers of a new agreement see of the node (platform variables, the
	// node's user input) and whether the node allows privileged services. Nil: nothing but
	// the agreement id is set, and privileged services are refused.
	Node func() NodeContext
	// Limits bound proposals and updates (value size, number of secrets).
	Limits protocol.Limits
	// ProposalTTL and ClockSkew bound a proposal's age (see protocol.TrackerOptions).
	ProposalTTL, ClockSkew time.Duration
	// Logger gets one line per decision, with names, sequences and digest prefixes, never a
	// value. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Manager is the agent's agreement manager. Its methods are safe for concurrent use: messages
// for one agreement are handled one at a time, in the order they arrive; different agreements
// proceed in parallel.
type Manager struct {
	stores  SecretStore
	runner  Runner
	arch    string
	admit   func(map[string]any) error
	node    func() NodeContext
	limits  protocol.Limits
	log     *slog.Logger
	now     func() time.Time
	db      *db
	dig     *digester
	tracker *protocol.Tracker
	ttl     time.Duration

	mu     sync.Mutex
	locks  map[string]*agreementLock
	closed bool
	busy   sync.WaitGroup

	storeMu sync.Mutex
	stored  map[string]*Store // store id -> paths, from Create and Stores
}

type agreementLock struct {
	sync.Mutex
	refs int
}

// Open opens (or creates) the state in opts.StateDir. Call Recover next, before handing the
// manager any message.
func Open(opts Options) (*Manager, error) {
	if opts.Stores == nil || opts.Runner == nil {
		return nil, errors.New("agreement: Options.Stores and Options.Runner are required")
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.NodeArch == "" {
		opts.NodeArch = arch.Node()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := prepareStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	dig, err := loadDigestKey(opts.StateDir)
	if err != nil {
		return nil, err
	}
	d, err := openDB(opts.StateDir)
	if err != nil {
		return nil, err
	}
	topts := protocol.TrackerOptions{ProposalTTL: opts.ProposalTTL, ClockSkew: opts.ClockSkew, Now: opts.Now}
	if topts.ProposalTTL <= 0 {
		topts.ProposalTTL = protocol.DefaultProposalTTL
	}
	if topts.ClockSkew <= 0 {
		topts.ClockSkew = protocol.DefaultClockSkew
	}
	m := &Manager{
		stores:  opts.Stores,
		runner:  opts.Runner,
		arch:    arch.Normalize(opts.NodeArch),
		admit:   opts.Admit,
		node:    opts.Node,
		limits:  opts.Limits,
		log:     opts.Logger.With("component", "agreement"),
		now:     opts.Now,
		db:      d,
		dig:     dig,
		tracker: protocol.NewTracker(topts),
		ttl:     topts.ProposalTTL + topts.ClockSkew,
		locks:   map[string]*agreementLock{},
		stored:  map[string]*Store{},
	}
	// The tracker refuses proposals for live and recently ended agreements; it forgets on a
	// restart, so it is filled from the DB.
	recs, err := d.list()
	if err != nil {
		d.close()
		return nil, err
	}
	for _, r := range recs {
		m.tracker.Restore(r.ID, r.Sequence)
	}
	tombs, err := d.tombstones(m.now().Add(-m.ttl))
	if err != nil {
		d.close()
		return nil, err
	}
	for id, e := range tombs {
		m.tracker.RestoreEnded(id, e.At)
	}
	return m, nil
}

// Shutdown waits for the messages being handled (or for ctx), then closes the state DB.
// Containers and stores stay as they are: a new manager recovers them.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	already := m.closed
	m.closed = true
	m.mu.Unlock()
	if already {
		return nil
	}
	done := make(chan struct{})
	go func() { m.busy.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("agreement: shutdown: %w", ctx.Err())
	}
	return m.db.close()
}

// Mode is how secret updates reach running containers on this node.
func (m *Manager) Mode() StoreMode { return m.stores.Mode() }

// begin serialises work on one agreement and keeps Shutdown waiting until release.
func (m *Manager) begin(id string) (release func(), err error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.busy.Add(1)
	l := m.locks[id]
	if l == nil {
		l = &agreementLock{}
		m.locks[id] = l
	}
	l.refs++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(m.locks, id)
		}
		m.mu.Unlock()
		m.busy.Done()
	}, nil
}

// replyMeta answers in: same agreement and sequence, sender and recipient swapped.
func (m *Manager) replyMeta(in *protocol.Meta, t protocol.MessageType) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: in.Agreement,
		From: in.To, To: in.From, Seq: in.Seq, Time: m.now().UTC()}
}

// maxReason is the protocol's bound on a reply's reason.
const maxReason = 1024

// reason makes an error fit a reply: printable, at most maxReason bytes. Errors in this
// package never hold a value, but some come from elsewhere (engine, kernel), so control
// characters are replaced rather than trusted.
func reason(err error) string {
	s := strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' && r != '\n' || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, err.Error())
	if len(s) > maxReason {
		cut := maxReason - 3
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// shortDigest is what logs and queries show of a digest.
func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// digest is the HMAC of what a container reads for a secret: key and value in the JSON
// format, the value alone in value_only (the key is not in the file). So start-up can check
// each file against the state without the agbot.
func (m *Manager) digest(d protocol.SecretDecl, v protocol.SecretValue) string {
	if d.FileFormat() == protocol.FormatValueOnly {
		v.Key = ""
	}
	return v.Digest(m.dig.key)
}

func (m *Manager) rememberStore(s *Store) {
	if s == nil {
		return
	}
	m.storeMu.Lock()
	m.stored[s.ID] = s
	m.storeMu.Unlock()
}

func (m *Manager) forgetStore(id string) {
	m.storeMu.Lock()
	delete(m.stored, id)
	m.storeMu.Unlock()
}

// store returns the paths of store id, asking the secret stores when it is not cached.
func (m *Manager) store(id string) (*Store, error) {
	m.storeMu.Lock()
	s := m.stored[id]
	m.storeMu.Unlock()
	if s != nil {
		return s, nil
	}
	all, err := m.stores.Stores()
	if err != nil {
		return nil, fmt.Errorf("list secret stores: %w", err)
	}
	for _, st := range all {
		if st.ID == id {
			m.rememberStore(st)
			return st, nil
		}
	}
	return nil, fmt.Errorf("secret store %q is missing", id)
}

// ServiceProperties are the anax built-in properties of a service, which node policy
// constraints are evaluated against.
func ServiceProperties(s protocol.Service) map[string]any {
	return map[string]any{
		"openhorizon.service.url":     s.URL,
		"openhorizon.service.name":    s.URL,
		"openhorizon.service.org":     s.Org,
		"openhorizon.service.version": s.Version,
		"openhorizon.service.arch":    s.Arch,
	}
}

// ProposalProperties are what the node's constraints are checked against, as anax matches a
// node policy: the deployment policy's properties and the service's built-in ones, which a
// policy can not override.
func ProposalProperties(p *protocol.Proposal) map[string]any {
	out := map[string]any{}
	for _, prop := range p.Properties {
		out[prop.Name] = prop.Value
	}
	for k, v := range ServiceProperties(p.Service) {
		out[k] = v
	}
	return out
}

// declared returns the secrets the agreement's containers declare, by name.
func declared(s *protocol.Service) map[string]protocol.SecretDecl {
	out := map[string]protocol.SecretDecl{}
	for _, c := range s.AllContainers() {
		for name, d := range c.Secrets {
			out[name] = d
		}
	}
	return out
}

func storeFormat(d protocol.SecretDecl) StoreFormat {
	if d.FileFormat() == protocol.FormatValueOnly {
		return formatValueOnly
	}
	return formatJSON
}

// AgreementKey is the key of agreement with the agbot peer, nil when it has none (an older
// agbot's proposal, or an agreement this node no longer runs): protocol.AgreementKeys.
func (m *Manager) AgreementKey(peer, agreement string) protocol.AgreementKey {
	agbot, key, ok := m.db.agreementKey(agreement)
	if !ok || agbot != peer {
		return nil
	}
	return key
}
