package agreement

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Recover reconciles the state DB with the secret stores and containers found on the node. It
// runs once at start-up, before any message, and returns the resync requests to send:
//   - an agreement whose stores and containers are intact is left untouched (the containers
//     keep running); one whose containers are gone or stopped gets them started again on the
//     same stores;
//   - an agreement whose stores are gone or incomplete (the node rebooted and the tmpfs is
//     empty) has its containers stopped and waits for a resync, after which the stores and
//     containers are made again;
//   - an agreement that was in the middle of an update keeps running and asks for a resync, so
//     that secrets holding the old or the new value converge to the agbot's latest;
//   - an interrupted proposal is undone, an interrupted cancel finished;
//   - stores and containers that belong to no agreement are removed, with a log line.
//
// It returns an error only for what it could not reconcile; the rest is done anyway.
func (m *Manager) Recover(ctx context.Context) ([]*protocol.Resync, error) {
	stores, err := m.stores.Stores()
	if err != nil {
		return nil, fmt.Errorf("recover: list secret stores: %w", err)
	}
	containers, err := m.runner.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("recover: list containers: %w", err)
	}
	recs, err := m.db.list()
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	storeByID := map[string]*Store{}
	for _, s := range stores {
		storeByID[s.ID] = s
		m.rememberStore(s)
	}
	byInstance := map[string][]container.Container{}
	for _, c := range containers {
		byInstance[c.InstanceID] = append(byInstance[c.InstanceID], c)
	}

	var errs []error
	// What an agreement in the DB names is its own, whatever recoverOne does with it.
	liveStores, liveInstances := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		liveInstances[r.Instance] = true
		for _, c := range r.Containers {
			if c.StoreID != "" {
				liveStores[c.StoreID] = true
			}
		}
		if err := m.recoverOne(ctx, r, storeByID, byInstance[r.Instance]); err != nil {
			errs = append(errs, fmt.Errorf("agreement %q: %w", r.ID, err))
		}
	}
	for inst := range byInstance {
		if liveInstances[inst] {
			continue
		}
		m.log.Warn("removing containers that belong to no agreement", "instance", inst, "containers", len(byInstance[inst]))
		if err := m.runner.Stop(ctx, inst); err != nil {
			errs = append(errs, fmt.Errorf("remove orphan containers of %q: %w", inst, err))
		}
	}
	for _, s := range stores {
		if liveStores[s.ID] {
			continue
		}
		m.log.Warn("wiping a secret store that belongs to no agreement", "store", s.ID)
		if err := m.stores.Wipe(s.ID); err != nil {
			errs = append(errs, fmt.Errorf("wipe orphan secret store %q: %w", s.ID, err))
			continue
		}
		m.forgetStore(s.ID)
	}
	resyncs, err := m.Resyncs()
	if err != nil {
		errs = append(errs, err)
	}
	return resyncs, errors.Join(errs...)
}

// recoverOne reconciles one agreement.
func (m *Manager) recoverOne(ctx context.Context, r *record, stores map[string]*Store, found []container.Container) error {
	release, err := m.begin(r.ID)
	if err != nil {
		return err
	}
	defer release()
	switch r.Phase {
	case PhaseAccepting:
		m.log.Warn("undoing a proposal the agent did not finish accepting before it stopped", "agreement", r.ID)
		if err := m.teardown(ctx, r); err != nil {
			return err
		}
		return m.db.remove(r.ID)
	case PhaseCancelling:
		m.log.Info("finishing a cancel the agent did not finish before it stopped", "agreement", r.ID)
		return m.end(ctx, r)
	}

	if lost := m.lostSecrets(r, stores); lost != "" || r.Phase == PhaseResync {
		return m.awaitResync(ctx, r, lost)
	}
	if err := m.checkDigests(r, stores); err != nil {
		return err
	}
	return m.runOnStores(ctx, r, stores, found)
}

// awaitResync stops an agreement whose stores were lost (a reboot) until the agbot's full
// update restores them: the containers can not run without their mounts (the restart policy
// would keep failing). They start again when the values arrive.
func (m *Manager) awaitResync(ctx context.Context, r *record, lost string) error {
	if r.Phase != PhaseResync {
		m.log.Warn("the node lost an agreement's secrets (reboot?); stopping its containers until a resync restores them",
			"agreement", r.ID, "why", lost)
	}
	if err := m.teardown(ctx, r); err != nil {
		return err
	}
	r.Phase = PhaseResync
	r.Note = "secrets lost on the node (" + lost + "); waiting for resync"
	if lost == "" {
		r.Note = "waiting for resync"
	}
	for i := range r.Containers {
		r.Containers[i].ContainerID = ""
	}
	return m.db.put(r)
}

// checkDigests: every file must hold the value its digest records. A mismatch is a swap the
// agent died in (old or new value), or a change made behind its back: either way the agbot's
// current values settle it. A name whose every copy matches is certain again.
func (m *Manager) checkDigests(r *record, stores map[string]*Store) error {
	mismatch := m.verify(r, stores)
	for _, name := range mismatch {
		if !slices.Contains(r.Uncertain, name) {
			m.log.Warn("a secret on the node does not match its recorded digest (changed outside the agent?); asking for a resync",
				"agreement", r.ID, "secret", name, "digest", shortDigest(r.Digests[name]))
		}
	}
	note := r.Note
	if len(mismatch) > 0 {
		m.log.Warn("secrets that may hold the old or the new version until a resync", "agreement", r.ID, "seq", r.Sequence, "secrets", mismatch)
		note = "the node's secrets differ from the state (agent stopped during an update?); waiting for resync"
	} else if len(r.Uncertain) > 0 {
		m.log.Info("every secret matches its recorded digest; the interrupted update left nothing to settle", "agreement", r.ID, "seq", r.Sequence)
		note = ""
	}
	if !slices.Equal(mismatch, r.Uncertain) || note != r.Note {
		r.Uncertain, r.Note = mismatch, note
		if err := m.db.put(r); err != nil {
			return err
		}
	}
	return nil
}

// runOnStores makes an agreement whose stores are intact run: its containers as they are,
// restarted when stopped, or made again.
func (m *Manager) runOnStores(ctx context.Context, r *record, stores map[string]*Store, found []container.Container) error {
	ids := map[string]container.Container{}
	for _, c := range found {
		ids[c.Spec] = c
	}
	allThere, running := len(found) == len(r.Containers), true
	for _, cr := range r.Containers {
		c, ok := ids[cr.Name]
		allThere = allThere && ok
		running = running && ok && (c.State == "running" || c.State == "restarting")
	}
	// Every container is there but not all run (stopped by hand, or failed to start while
	// the agent was away): restart them, keeping their ids.
	if allThere && !running {
		m.log.Warn("restarting an agreement's stopped containers", "agreement", r.ID)
		err := m.runner.Restart(ctx, r.Instance)
		running = err == nil
		if err != nil {
			m.log.Warn("restart failed; making the containers again", "agreement", r.ID, "err", err)
		}
	}
	if allThere && running {
		changed := false
		for i, cr := range r.Containers {
			if id := ids[cr.Name].ID; id != cr.ContainerID {
				r.Containers[i].ContainerID, changed = id, true
			}
		}
		if changed {
			return m.db.put(r)
		}
		m.log.Info("agreement intact", "agreement", r.ID, "seq", r.Sequence, "containers", len(r.Containers))
		return nil
	}
	m.log.Warn("starting an agreement's containers again on its intact secret stores",
		"agreement", r.ID, "found", len(found), "want", len(r.Containers))
	if err := m.runner.Stop(ctx, r.Instance); err != nil {
		return fmt.Errorf("remove stopped containers: %w", err)
	}
	if err := m.restart(ctx, r, stores); err != nil {
		r.Note = "containers could not be started again: " + reason(err)
		_ = m.db.put(r)
		return err
	}
	return m.db.put(r)
}

// lostSecrets says why r's stores can not serve its containers, or "" when they are intact.
func (m *Manager) lostSecrets(r *record, stores map[string]*Store) string {
	for _, cr := range r.Containers {
		if cr.StoreID == "" {
			continue
		}
		st := stores[cr.StoreID]
		if st == nil {
			return fmt.Sprintf("store %s is gone", cr.StoreID)
		}
		for name := range r.Service.AllContainers()[cr.Name].Secrets {
			path, ok := st.Files[name]
			if !ok {
				return fmt.Sprintf("store %s has no file for %s", cr.StoreID, name)
			}
			if _, err := os.Stat(path); err != nil {
				return fmt.Sprintf("store %s: file for %s: %v", cr.StoreID, name, err)
			}
		}
	}
	return ""
}

// verify reads every secret file of r and returns, sorted, the names some copy of which does
// not match the recorded digest (or can not be read). Values stay in memory.
func (m *Manager) verify(r *record, stores map[string]*Store) []string {
	decls := declared(&r.Service)
	bad := map[string]bool{}
	for _, cr := range r.Containers {
		st := stores[cr.StoreID]
		if st == nil {
			continue
		}
		for name := range r.Service.AllContainers()[cr.Name].Secrets {
			v, err := readSecret(st.Files[name], decls[name])
			if err != nil || m.digest(decls[name], v) != r.Digests[name] {
				bad[name] = true
			}
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return sortedNames(bad)
}

// readSecret reads a secret file back into key and value (no key in value_only).
func readSecret(path string, d protocol.SecretDecl) (protocol.SecretValue, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return protocol.SecretValue{}, err
	}
	return protocol.ParseFileContent(content, d)
}

// restart starts r's containers on their existing stores.
func (m *Manager) restart(ctx context.Context, r *record, stores map[string]*Store) error {
	specs := make([]container.Spec, 0, len(r.Containers))
	for _, cr := range r.Containers {
		c := r.Service.AllContainers()[cr.Name]
		spec, err := r.containerSpec(cr.Name, c)
		if err != nil {
			return err
		}
		if cr.StoreID != "" {
			if spec.Secrets, err = containerSecrets(cr.Name, c); err != nil {
				return err
			}
			spec.Store = stores[cr.StoreID]
		}
		specs = append(specs, spec)
	}
	return m.start(ctx, r, specs)
}

// Resyncs returns a resync request for every agreement waiting for current values: the daemon
// sends them after Recover and again, now and then, until the agbot answers.
func (m *Manager) Resyncs() ([]*protocol.Resync, error) {
	recs, err := m.db.list()
	if err != nil {
		return nil, err
	}
	var out []*protocol.Resync
	for _, r := range recs {
		why := ""
		switch {
		case r.Phase == PhaseResync:
			why = "the node lost the agreement's secrets (reboot?)"
		case r.Phase == PhaseActive && len(r.Uncertain) > 0:
			why = "the agent stopped during an update"
		default:
			continue
		}
		out = append(out, &protocol.Resync{
			Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeResync, Agreement: r.ID,
				From: r.Node, To: r.Agbot, Seq: r.Sequence, Time: m.now().UTC()},
			Reason: why,
		})
	}
	return out, nil
}
