package agreement

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
)

// undoTimeout bounds the clean-up after a failed proposal, which runs even when the caller's
// context is done.
const undoTimeout = 2 * time.Minute

// Propose handles an opened proposal and returns the reply to send: accepted once the
// containers run with their secrets and the agreement is persisted, declined with a reason a
// person can act on otherwise, in which case nothing of it is left on the node.
//
// The steps: 1. validate the message; 2. accept again a proposal for an agreement the node
// runs (same agbot and service, any seq: the agbot re-offers it when the accept was lost),
// refuse any other for a known or ended agreement; 3. check the node runs the service (arch,
// node policy) and resolve each container's user; 4. persist the agreement as accepting (so a
// crash from here on is undone at start-up); 5. create one secret store per container and
// start the containers; 6. persist it as active.
func (m *Manager) Propose(ctx context.Context, p *protocol.Proposal) *protocol.ProposalReply {
	reply := &protocol.ProposalReply{Meta: m.replyMeta(&p.Meta, protocol.TypeProposalReply), Status: protocol.StatusAccepted}
	decline := func(err error) *protocol.ProposalReply {
		reply.Status, reply.Reason = protocol.StatusDeclined, reason(err)
		m.log.Warn("declined proposal", "agreement", p.Agreement, "agbot", p.From, "reason", reply.Reason)
		return reply
	}
	if err := p.Validate(m.limits); err != nil {
		return decline(fmt.Errorf("invalid proposal: %w", err))
	}
	release, err := m.begin(p.Agreement)
	if err != nil {
		return decline(err)
	}
	defer release()
	if known, err := m.knownProposal(p); err != nil {
		return decline(err)
	} else if known {
		return reply
	}
	r, err := m.admitProposal(ctx, p)
	if err != nil {
		return decline(err)
	}
	// Intent first: a crash after this line leaves a record that Recover undoes.
	if err := m.db.put(r); err != nil {
		return decline(err)
	}
	if err := m.install(ctx, r, p.Secrets); err != nil {
		m.undo(ctx, r)
		return decline(err)
	}
	r.Phase = PhaseActive
	if err := m.db.put(r); err != nil {
		m.undo(ctx, r)
		return decline(err)
	}
	if err := m.tracker.Commit(p); err != nil {
		m.tracker.Restore(p.Agreement, p.Seq)
	}
	m.log.Info("accepted proposal", "agreement", p.Agreement, "agbot", p.From, "seq", p.Seq,
		"service", p.Service.Org+"/"+p.Service.URL, "version", p.Service.Version,
		"containers", len(r.Containers), "secrets", digestAttrs(r.Digests))
	return reply
}

// knownProposal decides a proposal for an agreement id the node knows. The agbot offers a
// proposal again when the node's accept was lost, resealed with a fresh time (and current
// values) if it waited long, and meanwhile an update may have moved the agreement past the
// proposal's seq. The node did accept it: declining now would make the agbot drop an
// agreement the node keeps running. So a proposal from the same agbot for the same service is
// accepted again (known, nil), whatever its seq, and changes nothing (newer values reach the
// node as updates, which the agbot queues behind the proposal). Anything else for a known id
// is a replay. An ended agreement has no record; its tombstone in the tracker refuses it.
func (m *Manager) knownProposal(p *protocol.Proposal) (bool, error) {
	old, err := m.db.get(p.Agreement)
	if err != nil {
		return false, err
	}
	if old != nil {
		if err := sameAgreement(old, p); err != nil {
			return false, fmt.Errorf("proposal for agreement %q: %w: %w", p.Agreement, err, protocol.ErrKnownAgreement)
		}
		if len(p.AgreementKey) > 0 && !bytes.Equal(old.AgreementKey, p.AgreementKey) {
			// The agbot offers it again with a key (it learnt this node speaks them since).
			old.AgreementKey = p.AgreementKey
			if err := m.db.put(old); err != nil {
				return false, err
			}
		}
		m.log.Debug("proposal for an agreement the node runs, accepted again", "agreement", p.Agreement,
			"agbot", p.From, "seq", p.Seq, "applied_seq", old.Sequence, "phase", old.Phase)
		return true, nil
	}
	return false, m.tracker.Check(p)
}

// admitProposal decides whether this node runs the proposal (architecture, node policy, user
// input, container users, names free) and returns the record to keep, still accepting.
func (m *Manager) admitProposal(ctx context.Context, p *protocol.Proposal) (*record, error) {
	for _, svc := range p.Service.All() {
		if !arch.Matches(svc.Arch, m.arch) {
			return nil, fmt.Errorf("service %s/%s is built for arch %q and this node is %q", svc.Org, svc.URL, svc.Arch, m.arch)
		}
	}
	if m.admit != nil {
		if err := m.admit(ProposalProperties(p)); err != nil {
			return nil, fmt.Errorf("node policy refuses service %s/%s %s: %w", p.Service.Org, p.Service.URL, p.Service.Version, err)
		}
	}
	env, inputs, allowPriv, err := m.containerEnv(p)
	if err != nil {
		return nil, fmt.Errorf("user input: %w", err)
	}
	now := m.now().UTC()
	r := &record{
		Env: env, Inputs: inputs, AllowPrivileged: allowPriv,
		ID: p.Agreement, Instance: instanceID(p.Agreement), Agbot: p.From, Node: p.To, AgreementKey: p.AgreementKey,
		Phase: PhaseAccepting, Service: p.Service, Sequence: p.Seq,
		Digests: map[string]string{}, SecretSeq: map[string]uint64{}, AcceptedAt: now, UpdatedAt: now,
	}
	decls := p.DeclaredSecrets()
	for name, v := range p.Secrets {
		r.Digests[name] = m.digest(decls[name], v)
		r.SecretSeq[name] = p.Seq
	}
	if err := m.addContainers(ctx, r, &p.Service); err != nil {
		return nil, err
	}
	if err := m.checkInstanceFree(r); err != nil {
		return nil, err
	}
	return r, nil
}

// addContainers records the containers of every service of the agreement with the user
// each runs as: the required services' first, so the worker starts them before the
// containers that need them.
func (m *Manager) addContainers(ctx context.Context, r *record, s *protocol.Service) error {
	all := s.AllContainers()
	for _, svc := range s.All() {
		for _, name := range sortedNames(svc.Deployment.Services) {
			c := all[name]
			uid, gid, err := m.runner.ResolveUser(ctx, c.Image, c.User)
			if err != nil {
				return fmt.Errorf("container %q: %w", name, err)
			}
			cr := containerRecord{Name: name, UID: uid, GID: gid}
			if len(c.Secrets) > 0 {
				cr.StoreID = storeID(r.Instance, name)
			}
			r.Containers = append(r.Containers, cr)
		}
	}
	return nil
}

// sameAgreement returns nil when p proposes again the agreement the node holds as r: r is
// active (or waiting for a resync of its values), with the same agbot, for the same service.
// Sequence and values are not compared: see step 2 of Propose.
func sameAgreement(r *record, p *protocol.Proposal) error {
	switch r.Phase {
	case PhaseActive, PhaseResync:
	case PhaseCancelling:
		return errors.New("the agreement is being cancelled")
	default:
		// Accepting: only a declined proposal whose undo failed stays so.
		return errors.New("the agreement was declined and is being removed")
	}
	if r.Agbot != p.From {
		return errors.New("the agreement is with another agbot")
	}
	a, b := r.Service, p.Service
	if a.Org != b.Org || a.URL != b.URL || a.Version != b.Version || a.Arch != b.Arch {
		return fmt.Errorf("the agreement runs service %s/%s %s %s", a.Org, a.URL, a.Version, a.Arch)
	}
	return nil
}

// checkInstanceFree refuses an agreement whose node names clash with another agreement's
// (two ids that map to the same container or store names).
func (m *Manager) checkInstanceFree(r *record) error {
	all, err := m.db.list()
	if err != nil {
		return err
	}
	mine := map[string]bool{}
	for _, c := range r.Containers {
		mine[r.Instance+"-"+c.Name] = true
	}
	for _, o := range all {
		if o.Instance == r.Instance {
			return fmt.Errorf("agreement %q has the same node name %q as agreement %q", r.ID, r.Instance, o.ID)
		}
		for _, c := range o.Containers {
			if mine[o.Instance+"-"+c.Name] {
				return fmt.Errorf("container %q of agreement %q would clash with agreement %q", c.Name, r.ID, o.ID)
			}
		}
	}
	return nil
}

// install creates the stores of r's containers from values and starts the containers, filling
// in their ids. On error it removes what it made.
func (m *Manager) install(ctx context.Context, r *record, values map[string]protocol.SecretValue) error {
	var made []string
	fail := func(err error) error {
		for _, id := range made {
			if werr := m.stores.Wipe(id); werr != nil {
				err = errors.Join(err, fmt.Errorf("undo: wipe secret store %q: %w", id, werr))
			}
			m.forgetStore(id)
		}
		return err
	}
	specs := make([]container.Spec, 0, len(r.Containers))
	for _, cr := range r.Containers {
		c := r.Service.AllContainers()[cr.Name]
		spec, err := r.containerSpec(cr.Name, c)
		if err != nil {
			return fail(err)
		}
		if cr.StoreID != "" {
			secrets := make([]StoreSecret, 0, len(c.Secrets))
			for _, name := range sortedNames(c.Secrets) {
				v, ok := values[name]
				if !ok {
					return fail(fmt.Errorf("container %q: no value for secret %q", cr.Name, name))
				}
				secrets = append(secrets, StoreSecret{Name: name, Key: v.Key, Value: []byte(v.Value), Format: storeFormat(c.Secrets[name])})
			}
			if spec.Secrets, err = containerSecrets(cr.Name, c); err != nil {
				return fail(err)
			}
			st, err := m.stores.Create(StoreSpec{ID: cr.StoreID, UID: cr.UID, GID: cr.GID, Secrets: secrets})
			if err != nil {
				return fail(fmt.Errorf("container %q: create secret store: %w", cr.Name, err))
			}
			made = append(made, cr.StoreID)
			m.rememberStore(st)
			spec.Store = st
		}
		specs = append(specs, spec)
	}
	if err := m.start(ctx, r, specs); err != nil {
		return fail(fmt.Errorf("start containers: %w", err))
	}
	return nil
}

// containerSecrets lists the secrets of container name as the runner takes them, with their
// onUpdate parsed.
func containerSecrets(name string, c protocol.Container) ([]container.Secret, error) {
	out := make([]container.Secret, 0, len(c.Secrets))
	for _, s := range sortedNames(c.Secrets) {
		ou, err := protocol.ParseOnUpdate(c.Secrets[s].OnUpdate)
		if err != nil {
			return nil, fmt.Errorf("container %q secret %q: %w", name, s, err)
		}
		out = append(out, container.Secret{Name: s, OnUpdate: ou})
	}
	return out, nil
}

// start starts the containers of specs as r's instance and records their ids in r.
func (m *Manager) start(ctx context.Context, r *record, specs []container.Spec) error {
	started, err := m.runner.Start(ctx, r.instance(specs))
	if err != nil {
		return err
	}
	ids := map[string]string{}
	for _, c := range started {
		ids[c.Spec] = c.ID
	}
	for i := range r.Containers {
		r.Containers[i].ContainerID = ids[r.Containers[i].Name]
	}
	return nil
}

// instance is what the worker starts for r.
func (r *record) instance(specs []container.Spec) container.Instance {
	return container.Instance{
		InstanceID:      r.Instance,
		Service:         container.Service{Org: r.Service.Org, URL: r.Service.URL, Version: r.Service.Version},
		Containers:      specs,
		Env:             r.Env,
		AllowPrivileged: r.AllowPrivileged,
	}
}

// containerSpec is what the worker runs for container name of a deployment, secrets aside:
// the deployment's fields parsed into typed values (the proposal was validated, so a parse
// error here means a record damaged on disk), its environment with its service's user input
// over the deployment's.
func (r *record) containerSpec(name string, c protocol.Container) (container.Spec, error) {
	env := envMap(c.Environment)
	if in := r.Inputs[name]; len(in) > 0 {
		if env == nil {
			env = map[string]string{}
		}
		for k, v := range in {
			env[k] = v
		}
	}
	spec := container.Spec{Name: name, Image: c.Image, User: c.User, Command: c.Command, Env: env,
		CapAdd: c.CapAdd, MemoryMB: c.MaxMemoryMB, Entrypoint: c.Entrypoint, Privileged: c.Privileged,
		HostNetwork: c.Network == "host", Tmpfs: c.Tmpfs, CPUs: c.MaxCPUs, LogDriver: c.LogDriver}
	bad := func(err error) (container.Spec, error) {
		return container.Spec{}, fmt.Errorf("container %q: %w", name, err)
	}
	for _, s := range c.Binds {
		b, err := protocol.ParseBind(s)
		if err != nil {
			return bad(err)
		}
		spec.Binds = append(spec.Binds, b)
	}
	for _, s := range c.Devices {
		d, err := protocol.ParseDevice(s)
		if err != nil {
			return bad(err)
		}
		spec.Devices = append(spec.Devices, d)
	}
	ports, err := c.AllPorts()
	if err != nil {
		return bad(err)
	}
	spec.Ports = ports
	return spec, nil
}

// undo removes everything of an agreement that did not become active: containers, stores,
// record. It runs to the end even when ctx is done.
func (m *Manager) undo(ctx context.Context, r *record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := m.teardown(ctx, r); err != nil {
		m.log.Error("undo of a declined proposal left something behind; it is retried at start-up",
			"agreement", r.ID, "err", err)
		return
	}
	if err := m.db.remove(r.ID); err != nil {
		m.log.Error("undo of a declined proposal", "agreement", r.ID, "err", err)
	}
}

// teardown stops the agreement's containers and wipes its stores.
func (m *Manager) teardown(ctx context.Context, r *record) error {
	if err := m.runner.Stop(ctx, r.Instance); err != nil {
		return fmt.Errorf("stop containers: %w", err)
	}
	var errs []error
	for _, c := range r.Containers {
		if c.StoreID == "" {
			continue
		}
		if err := m.stores.Wipe(c.StoreID); err != nil {
			errs = append(errs, fmt.Errorf("wipe secret store %q: %w", c.StoreID, err))
			continue
		}
		m.forgetStore(c.StoreID)
	}
	return errors.Join(errs...)
}

// envMap turns the deployment's NAME=value list (validated: no duplicates) into a map.
func envMap(env []string) map[string]string {
	if len(env) == 0 {
		return nil
	}
	out := make(map[string]string, len(env))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		out[k] = v
	}
	return out
}

func sortedNames[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// digestAttrs lists secret names with digest prefixes for a log line.
func digestAttrs(d map[string]string) []string {
	out := make([]string, 0, len(d))
	for _, name := range sortedNames(d) {
		out = append(out, name+"@"+shortDigest(d[name]))
	}
	return out
}
