package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/protocol/constraint"
)

func serviceURL(id string) string {
	// id is url_version_arch; url may hold '_', so cut the last two.
	i := strings.LastIndex(id, "_")
	if i < 0 {
		return id
	}
	j := strings.LastIndex(id[:i], "_")
	if j < 0 {
		return id
	}
	return id[:j]
}

// desire is one agreement a node should have.
type desire struct {
	source   string
	svc      exchange.Service
	bindings []protocol.SecretBinding
	inputs   []exchange.UserInputBlock // the policy's or pattern's userInput
	props    []exchange.Property       // the deployment policy's properties
	deps     []exchange.Service        // the service's requiredServices, resolved (required)
	err      error                     // why the desire can not be proposed (held with it)
}

func (d desire) key(org, node string) string {
	return org + "\x00" + node + "\x00" + d.source + "\x00" + d.svc.Org + "/" + d.svc.URL
}

// world is a snapshot of the exchange state one reconciliation works from.
type world struct {
	services []exchange.Service
	policies []exchange.Policy
	patterns map[string]exchange.Pattern // "org/name"
	nodes    map[string]exchange.Node    // node id (in the org reconciled)
}

func (e *Engine) snapshot(org string) (*world, error) { return e.snapshotNode(org, "") }

// snapshotNode loads only node (when not "") of the org's nodes: a registration must not
// read every node of the org.
func (e *Engine) snapshotNode(org, node string) (*world, error) {
	w := &world{patterns: map[string]exchange.Pattern{}, nodes: map[string]exchange.Node{}}
	var err error
	if w.services, err = e.st.Services.List(""); err != nil {
		return nil, err
	}
	if w.policies, err = e.st.Policies.List(org); err != nil {
		return nil, err
	}
	pats, err := e.st.Patterns.List("")
	if err != nil {
		return nil, err
	}
	for _, p := range pats {
		w.patterns[p.Org+"/"+p.Name] = p
	}
	if node != "" {
		if n, err := e.st.Nodes.Get(org, node); err == nil {
			w.nodes[n.ID] = n
		}
		return w, nil
	}
	nodes, err := e.st.Nodes.List(org)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		w.nodes[n.ID] = n
	}
	return w, nil
}

// best picks the highest published version of org/url for arch among versions, for a
// policy or pattern of org from: a service of another org only if it is public.
func (w *world) best(from, org, url, arch string, versions []exchange.ServiceVersion) (exchange.Service, bool) {
	var out exchange.Service
	var outV protocol.Version
	found := false
	for _, s := range w.services {
		if s.Org != org || s.URL != url || s.Arch != arch || !exchange.Usable(from, s.Org, s.Public) {
			continue
		}
		v, err := protocol.ParseVersion(s.Version)
		if err != nil {
			continue
		}
		ok := false
		for _, want := range versions {
			if wv, err := protocol.ParseVersion(want.Version); err == nil && wv == v {
				ok = true
			}
		}
		if ok && (!found || v.Compare(outV) > 0) {
			out, outV, found = s, v, true
		}
	}
	return out, found
}

// desired lists the agreements node n should have.
func (w *world) desired(n exchange.Node) []desire {
	var out []desire
	if n.PublicKeys == nil || !n.Registered {
		return nil
	}
	if n.Pattern != "" {
		po, pn := n.PatternRef()
		p, ok := w.patterns[po+"/"+pn]
		if !ok || !exchange.Usable(n.Org, p.Org, p.Public) {
			return nil
		}
		for _, ps := range p.Services {
			if !exchange.ArchMatches(ps.ServiceArch, n.Arch) {
				continue
			}
			if s, ok := w.best(p.Org, ps.ServiceOrgid, ps.ServiceURL, n.Arch, ps.ServiceVersions); ok {
				d := desire{source: "pattern/" + po + "/" + pn, svc: s, bindings: p.SecretBinding, inputs: p.UserInput}
				d.deps, d.err = w.required(s, n.Arch)
				out = append(out, d)
			}
		}
		return out // anax: a pattern node gets only its pattern's services
	}
	props := map[string]any{}
	for _, p := range n.Properties {
		props[p.Name] = p.Value
	}
	for _, p := range w.policies {
		if !exchange.ArchMatches(p.Service.Arch, n.Arch) {
			continue
		}
		expr, err := constraint.ParseAll(p.Constraints)
		if err != nil || !expr.Eval(props) {
			continue
		}
		if s, ok := w.best(p.Org, p.Service.Org, p.Service.Name, n.Arch, p.Service.ServiceVersions); ok && nodeAdmits(n, p, s) {
			d := desire{source: "policy/" + p.Org + "/" + p.Name, svc: s, bindings: p.SecretBinding, inputs: p.UserInput, props: p.Properties}
			d.deps, d.err = w.required(s, n.Arch)
			out = append(out, d)
		}
	}
	return out
}

// resolver reads manager secrets for one pass, each name at most once.
type resolver struct {
	ctx     context.Context
	sm      secrets.Manager
	st      *store.Store
	org     string
	mu      sync.Mutex
	cache   map[string]got
	callers map[string]access.Caller // "org/user", see caller
	owners  map[string]ownerOf       // agreement source -> its owner, see sourceOwner
}

type got struct {
	s     secrets.Secret
	ver   int64
	found bool
	err   error
}

func (r *resolver) get(name string) got {
	r.mu.Lock()
	g, ok := r.cache[name]
	r.mu.Unlock()
	if ok {
		return g
	}
	s, ver, err := r.sm.Get(r.ctx, r.org, name)
	switch {
	case err == nil:
		g = got{s: s, ver: ver, found: true}
	case errors.Is(err, secrets.ErrNotFound):
		g = got{}
	default:
		g = got{err: err}
	}
	r.mu.Lock()
	r.cache[name] = g
	r.mu.Unlock()
	return g
}

// candidates are the manager names tried for one bound secret on node n, best first.
func candidates(b exchange.BoundSecret, node string) []string {
	mn, err := protocol.ParseManagerName(b.ManagerName)
	if err != nil {
		return nil
	}
	if b.NodeLevel {
		return []string{mn.ForNode(node).String(), mn.String()}
	}
	return []string{mn.String()}
}

// resolved is the outcome of resolving an agreement's secrets.
type resolved struct {
	values   map[string]protocol.SecretValue // only for secrets read in this pass
	sources  map[string]string
	versions map[string]int64
	missing  []string // human readable
	err      error    // manager unavailable: change nothing
}

// resolve resolves a's bound secrets for node n. With hint (a manager name that changed),
// only secrets whose candidates include hint are read again, and candidates ranked above
// hint are known: either the current source (nothing changes) or absent. Only the candidates
// a's source may deliver to n (access.Deliver, decided now) are considered, and none is read
// before it is allowed.
func (r *resolver) resolve(a *Agreement, n exchange.NodeAccess, hint string) resolved {
	out := resolved{values: map[string]protocol.SecretValue{}, sources: maps.Clone(a.Sources), versions: maps.Clone(a.Versions)}
	if out.sources == nil {
		out.sources, out.versions = map[string]string{}, map[string]int64{}
	}
	for _, svcName := range sortedKeys(a.Bound) {
		b := a.Bound[svcName]
		if b.ManagerName == "" {
			out.missing = append(out.missing, fmt.Sprintf("service secret %q has no binding", svcName))
			continue
		}
		cands, grants, why := r.allowed(a, n, candidates(b, n.ID))
		if len(cands) == 0 {
			if why == nil {
				why = fmt.Errorf("binding %q is not a manager name", b.ManagerName)
			}
			out.missing = append(out.missing, fmt.Sprintf("secret %q (for %q) %v", b.ManagerName, svcName, why))
			delete(out.sources, svcName)
			delete(out.versions, svcName)
			continue
		}
		start := 0
		if hint != "" {
			at := indexOf(cands, hint)
			if at < 0 {
				continue // not affected
			}
			if cur := indexOf(cands, a.Sources[svcName]); cur >= 0 && cur < at {
				continue // a better source is in use and did not change
			}
			start = at
		}
		found := false
		for _, c := range cands[start:] {
			g := r.get(c)
			if g.err != nil {
				out.err = g.err
				return out
			}
			if g.found && grants[c].Fresh(g.ver, n.SecretsAtCreation[c]) {
				out.values[svcName] = protocol.SecretValue{Key: g.s.Key, Value: g.s.Value}
				out.sources[svcName], out.versions[svcName] = c, g.ver
				found = true
				break
			}
		}
		if !found {
			out.missing = append(out.missing, fmt.Sprintf("secret %q (for %q) is not in the secrets manager", b.ManagerName, svcName))
			delete(out.sources, svcName)
			delete(out.versions, svcName)
		}
	}
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// job is one message to seal for an agreement.
type job struct {
	a   *Agreement
	msg protocol.Message
	out store.Message
	err error
}

// sealAll seals jobs on every core.
func (e *Engine) sealAll(jobs []*job) {
	var wg sync.WaitGroup
	ch := make(chan *job)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for j := range ch {
				env, err := e.seal(j.a, j.msg)
				h := j.msg.Head()
				j.out = store.Message{Agreement: h.Agreement, Type: string(h.Type), Seq: h.Seq, Envelope: env, Queued: h.Time}
				j.err = err
			}
		})
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
}

// seal seals m of agreement a: with the agreement's key when its proposal carried one,
// else to the node's keys. A proposal is always sealed to the node's keys: it carries the key.
func (e *Engine) seal(a *Agreement, m protocol.Message) ([]byte, error) {
	if a != nil && a.Keyed && m.Head().Type != protocol.TypeProposal {
		return e.ep.SealAgreement(m)
	}
	if p, ok := m.(*protocol.Proposal); ok && a != nil && a.Keyed {
		p.AgreementKey = e.ep.Agreements.AgreementKey(NodeID(a.Org, a.Node), a.ID)
		if p.AgreementKey == nil {
			return nil, fmt.Errorf("agreement %s: no key for node %s", a.ID, NodeID(a.Org, a.Node))
		}
	}
	return e.ep.Seal(m)
}

// pass collects what one reconciliation decides.
type pass struct {
	e       *Engine
	recheck map[string]bool // nodes to reconcile after commit (an agreement ended or is held)
	now     time.Time
	save    []*Agreement
	drop    []*Agreement
	jobs    []*job
	extra   []outgoing // sealed already (farewells)
}

// meta is the header of the agbot's next message on a: it takes the agreement's next sequence.
func (p *pass) meta(a *Agreement, t protocol.MessageType) protocol.Meta {
	a.Seq++
	return p.metaSeq(a, t, a.Seq)
}

// metaSeq is a header with a given sequence, for a reply that echoes the node's (a CancelReply):
// the agreement's own sequence does not move.
func (p *pass) metaSeq(a *Agreement, t protocol.MessageType, seq uint64) protocol.Meta {
	return protocol.Meta{Version: protocol.ProtocolVersion, Type: t, Agreement: a.ID, From: p.e.cfg.ID,
		To: NodeID(a.Org, a.Node), Seq: seq, Time: p.now}
}

func (p *pass) cancel(a *Agreement, reason string) {
	if p.recheck == nil {
		p.recheck = map[string]bool{}
	}
	p.recheck[a.Node] = true
	c := *a
	if c.State == StateHeld || c.State == StateDeclined {
		p.drop = append(p.drop, &c) // never proposed, or already ended by the node
		return
	}
	c.State, c.Updated = StateEnding, p.now
	p.jobs = append(p.jobs, &job{a: &c, msg: &protocol.Cancel{Meta: p.meta(&c, protocol.TypeCancel), Reason: reason}})
	p.save = append(p.save, &c)
	p.e.log.Info("agreement cancelled", "agreement", c.ID, "node", NodeID(c.Org, c.Node), "service", c.Service, "reason", reason)
}

// propose builds a proposal (or holds) for a fresh or held agreement.
func (p *pass) propose(r *resolver, a *Agreement, n exchange.Node, d desire) {
	c := *a
	res := r.resolve(&c, n.Access(), "")
	if res.err != nil {
		p.e.markDirty(c.Org)
		return
	}
	c.Updated = p.now
	if len(res.missing) > 0 {
		why := strings.Join(res.missing, "; ")
		if c.State != StateHeld || c.Held != why {
			c.State, c.Held = StateHeld, why
			p.save = append(p.save, &c)
			p.e.log.Info("agreement held", "agreement", c.ID, "node", NodeID(c.Org, c.Node), "service", c.Service, "waiting_for", why)
		}
		return
	}
	svc, applied, err := d.proposal()
	if err != nil {
		// e.g. a cluster-only service: held with the reason, which the agreement shows.
		if why := err.Error(); c.State != StateHeld || c.Held != why {
			c.State, c.Held = StateHeld, why
			p.save = append(p.save, &c)
			p.e.log.Warn("service can not be proposed", "service", d.svc.ID(), "err", err)
		}
		return
	}
	c.State, c.Held, c.Sources, c.Versions = StateProposed, "", res.sources, res.versions
	c.Keyed = n.PublicKeys != nil && n.PublicKeys.Supports(protocol.FeatureAgreementKeys)
	msg := &protocol.Proposal{Meta: p.meta(&c, protocol.TypeProposal), Service: svc, Bindings: applied, Properties: d.props, Secrets: res.values}
	c.ProposalSeq = c.Seq
	p.jobs = append(p.jobs, &job{a: &c, msg: msg})
	p.save = append(p.save, &c)
}

// update re-resolves a proposed or agreed agreement and sends what changed.
func (p *pass) update(r *resolver, a *Agreement, n exchange.NodeAccess, hint string, full bool) {
	c := *a
	res := r.resolve(&c, n, hint)
	if res.err != nil {
		p.e.markDirty(c.Org)
		return
	}
	if len(res.missing) > 0 {
		// No fallback: the node must not keep running on a value that is gone. End it; the
		// next pass holds a new agreement until the secret is back.
		p.cancel(a, "secret no longer available, with no fallback: "+strings.Join(res.missing, "; "))
		return
	}
	changed := map[string]protocol.ChangedSecret{}
	for svcName, v := range res.values {
		oldSrc, newSrc := c.Sources[svcName], res.sources[svcName]
		if !full && oldSrc == newSrc && c.Versions[svcName] == res.versions[svcName] {
			continue
		}
		reason := protocol.ReasonValueUpdated
		oldNode := strings.Contains(oldSrc, "node/")
		newNode := strings.Contains(newSrc, "node/")
		switch {
		case full:
			reason = protocol.ReasonResync
		case newNode && !oldNode:
			reason = protocol.ReasonNodeAdded
		case oldNode && !newNode:
			reason = protocol.ReasonNodeRemoved
		}
		changed[svcName] = protocol.ChangedSecret{SecretValue: v, Reason: reason, Source: newSrc}
	}
	if len(changed) == 0 {
		return
	}
	c.Sources, c.Versions, c.Updated = res.sources, res.versions, p.now
	msg := &protocol.Update{Meta: p.meta(&c, protocol.TypeUpdate), Secrets: changed, Full: full}
	p.jobs = append(p.jobs, &job{a: &c, msg: msg})
	p.save = append(p.save, &c)
}

// commit seals and persists the pass. Caller holds e.mu.
func (p *pass) commit() error {
	if len(p.save) == 0 && len(p.drop) == 0 {
		return nil
	}
	p.e.sealAll(p.jobs)
	var msgs []outgoing
	for _, j := range p.jobs {
		if j.err != nil {
			// A node whose keys no longer seal (deleted meanwhile) gets nothing; the
			// agreement record still moves on and the next pass cleans up.
			p.e.log.Warn("seal failed", "agreement", j.a.ID, "type", j.msg.Head().Type, "err", j.err)
			continue
		}
		msgs = append(msgs, outgoing{org: j.a.Org, node: j.a.Node, m: j.out})
	}
	return p.e.persist(p.save, p.drop, append(msgs, p.extra...))
}

// Reconcile brings every agreement of org in line with the exchange and the secrets.
func (e *Engine) Reconcile(ctx context.Context, org string) error {
	return e.reconcile(ctx, org, nil)
}

// ReconcileNode reconciles one node (registration, property change).
func (e *Engine) ReconcileNode(ctx context.Context, org, node string) error {
	return e.reconcileFrom(ctx, org, node, func(id string) bool { return id == node })
}

// reconcile reconciles the nodes of org that only accepts (nil: every node), from a snapshot
// of the whole org.
func (e *Engine) reconcile(ctx context.Context, org string, only func(string) bool) error {
	return e.reconcileFrom(ctx, org, "", only)
}

// reconcileFrom brings the agreements of org's nodes that only accepts in line, from a
// snapshot of the exchange: of node alone when node is set (cheap for one registration), else
// of the whole org.
func (e *Engine) reconcileFrom(ctx context.Context, org, node string, only func(string) bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, err := e.snapshotNode(org, node)
	if err != nil {
		return err
	}
	r := e.newResolver(ctx, org)
	p := &pass{e: e, now: time.Now()}

	existing := map[string]*Agreement{}
	for _, a := range e.live {
		if a.Org != org || (only != nil && !only(a.Node)) || a.State == StateEnding {
			continue
		}
		existing[a.key()] = a
	}
	want := map[string]bool{}
	for _, nid := range sortedKeys(w.nodes) {
		if only != nil && !only(nid) {
			continue
		}
		n := w.nodes[nid]
		for _, d := range w.desired(n) {
			k := d.key(org, nid)
			want[k] = true
			bound, err := d.bound()
			if err != nil && d.err == nil {
				d.err = err
			}
			a := existing[k]
			switch {
			case a == nil:
				na := &Agreement{ID: newAgreementID(), Org: org, Node: nid, Source: d.source, Service: d.svc.ID(),
					ServiceOrg: d.svc.Org, Bound: bound, Created: p.now, State: StateHeld}
				p.propose(r, na, n, d)
			case a.Service != d.svc.ID():
				p.cancel(a, "service version changed to "+d.svc.ID())
				na := &Agreement{ID: newAgreementID(), Org: org, Node: nid, Source: d.source, Service: d.svc.ID(),
					ServiceOrg: d.svc.Org, Bound: bound, Created: p.now, State: StateHeld}
				p.propose(r, na, n, d)
			case a.State == StateDeclined:
				if !maps.Equal(a.Bound, bound) {
					c := *a
					c.Bound, c.State = bound, StateHeld
					p.propose(r, &c, n, d)
				}
			case a.State == StateHeld:
				c := *a
				c.Bound = bound
				p.propose(r, &c, n, d)
			default:
				if !maps.Equal(a.Bound, bound) {
					c := *a
					c.Bound = bound
					c.Sources, c.Versions = nil, nil // every secret re-read and sent
					p.save = append(p.save, &c)
					p.update(r, &c, n.Access(), "", false)
				} else {
					p.update(r, a, n.Access(), "", false)
				}
			}
		}
	}
	for k, a := range existing {
		if !want[k] {
			p.cancel(a, "no longer matches its pattern or deployment policy")
		}
	}
	return p.commit()
}

// SecretChanged reacts to a change of one manager secret: every affected agreement gets an
// update (or a proposal if it was held for it, or a cancel if it lost its last value).
func (e *Engine) SecretChanged(ctx context.Context, org, name string) {
	recheck := e.applySecretChange(ctx, org, name)
	if len(recheck) == 0 {
		return
	}
	// Agreements held for this secret: matched again, outside the lock (reconcile takes it).
	if err := e.reconcile(ctx, org, func(id string) bool { return recheck[id] }); err != nil {
		e.markDirty(org)
	}
}

// applySecretChange sends the updates of one manager secret's change and returns the nodes
// whose held agreements must be matched again.
func (e *Engine) applySecretChange(ctx context.Context, org, name string) map[string]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.newResolver(ctx, org)
	p := &pass{e: e, now: time.Now()}
	nodes := map[string]exchange.NodeAccess{}
	node := func(id string) (exchange.NodeAccess, bool) {
		if n, ok := nodes[id]; ok {
			return n, true
		}
		// Only what decides delivery: the node's keys, most of its record, are not needed.
		n, err := store.Part[exchange.NodeAccess](e.st.Nodes, org, id)
		if err != nil {
			return n, false
		}
		nodes[id] = n
		return n, true
	}
	m := newAffectsMemo(name)
	for _, a := range e.live {
		if a.Org != org || !m.affects(a) {
			continue
		}
		n, ok := node(a.Node)
		if !ok {
			continue
		}
		switch a.State {
		case StateHeld:
			if p.recheck == nil {
				p.recheck = map[string]bool{}
			}
			p.recheck[a.Node] = true
		case StateProposed, StateAgreed:
			p.update(r, a, n, name, false)
		}
	}
	if err := p.commit(); err != nil {
		e.log.Error("secret change not applied", "org", org, "secret", name, "err", err)
		e.markDirty(org)
	}
	return p.recheck
}

// affects reports whether manager name could change what a resolves to.
func affects(a *Agreement, name string) bool {
	return newAffectsMemo(name).affects(a)
}

// affectsMemo answers affects for one changed manager name across many agreements without
// building each binding's candidates: a change walks every live agreement, and with 1,000
// services bound to one secret, parsing every binding's name for each change was a quarter of
// the agbot's CPU in the soak stream. Each binding's name is parsed once per change; a
// binding is hit when its name is the changed one, or, node level, when the changed name is
// its node-specific variant for the agreement's node (as candidates lists them).
type affectsMemo struct {
	name      string
	changed   protocol.ManagerName // name parsed; ok false: no node-specific variant can match
	changedOK bool
	parsed    map[string]parsedBinding // binding manager name -> parsed
}

type parsedBinding struct {
	mn   protocol.ManagerName
	base string // mn.String(): the name an org- or user-level binding resolves to
	ok   bool
}

func newAffectsMemo(name string) *affectsMemo {
	m := &affectsMemo{name: name, parsed: map[string]parsedBinding{}}
	m.changed, m.changedOK = parseOK(name)
	return m
}

func parseOK(s string) (protocol.ManagerName, bool) {
	mn, err := protocol.ParseManagerName(s)
	return mn, err == nil
}

func (m *affectsMemo) affects(a *Agreement) bool {
	for _, b := range a.Bound {
		p, seen := m.parsed[b.ManagerName]
		if !seen {
			p.mn, p.ok = parseOK(b.ManagerName)
			p.base = p.mn.String()
			m.parsed[b.ManagerName] = p
		}
		if !p.ok {
			continue
		}
		if p.base == m.name {
			return true
		}
		if b.NodeLevel && m.changedOK && m.changed.Node == a.Node &&
			m.changed.User == p.mn.User && m.changed.Name == p.mn.Name {
			return true
		}
	}
	return false
}
