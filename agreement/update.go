package agreement

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Update applies an opened agreement update as one transaction and returns the reply to send:
//   - applied: every changed secret holds its new value, onUpdate actions ran, and the new
//     sequence and digests are persisted;
//   - duplicate: this sequence was applied before; nothing was done;
//   - refused: the update is invalid, stale or for an unknown agreement; nothing changed;
//   - failed: it could not be applied; every secret keeps its old value (Reason says why).
//
// Updates to one agreement apply in the order they arrive; different agreements in parallel.
func (m *Manager) Update(ctx context.Context, u *protocol.Update) *protocol.UpdateReply {
	reply := &protocol.UpdateReply{Meta: m.replyMeta(&u.Meta, protocol.TypeUpdateReply), Status: protocol.StatusApplied}
	refuse := func(status protocol.ReplyStatus, err error) *protocol.UpdateReply {
		reply.Status, reply.Reason = status, reason(err)
		m.log.Warn("update not applied", "agreement", u.Agreement, "seq", u.Seq, "status", status, "reason", reply.Reason)
		return reply
	}
	if err := u.Validate(m.limits); err != nil {
		return refuse(protocol.StatusRefused, fmt.Errorf("invalid update: %w", err))
	}
	release, err := m.begin(u.Agreement)
	if err != nil {
		return refuse(protocol.StatusFailed, err)
	}
	defer release()

	r, err := m.db.get(u.Agreement)
	if err != nil {
		return refuse(protocol.StatusFailed, err)
	}
	if r == nil {
		return refuse(protocol.StatusRefused, fmt.Errorf("update %d for agreement %q: %w", u.Seq, u.Agreement, protocol.ErrUnknownAgreement))
	}
	if r.Agbot != u.From {
		return refuse(protocol.StatusRefused, fmt.Errorf("update for agreement %q comes from %q, the agreement is with %q", u.Agreement, u.From, r.Agbot))
	}
	switch r.Phase {
	case PhaseCancelling:
		return refuse(protocol.StatusRefused, fmt.Errorf("agreement %q is being cancelled", u.Agreement))
	case PhaseAccepting:
		// Only a proposal whose undo failed stays here; start-up finishes the undo.
		return refuse(protocol.StatusRefused, fmt.Errorf("agreement %q was declined and is being removed", u.Agreement))
	}
	decls := declared(&r.Service)
	if err := protocol.CheckUpdateNames(u, decls); err != nil {
		return refuse(protocol.StatusRefused, fmt.Errorf("invalid update: %w", err))
	}
	// The sequence rules. A message applied before is acknowledged again. Otherwise each
	// secret takes the update's value only if the update is newer than the message that set
	// the secret's current value: a late update (failed, retried after a later one applied)
	// still brings the secrets nobody changed since, and a replay changes nothing.
	// A full update answers a resync and may come at the sequence the node already has.
	resyncing := r.Phase == PhaseResync || len(r.Uncertain) > 0
	if u.Seq == r.Sequence && !(resyncing && u.Full) {
		reply.Status = protocol.StatusDuplicate
		m.log.Info("update received again, acknowledged again", "agreement", u.Agreement, "seq", u.Seq)
		return reply
	}
	if r.Phase == PhaseResync {
		if u.Seq < r.Sequence {
			return refuse(protocol.StatusRefused, fmt.Errorf("update %d for agreement %q, last applied %d: %w", u.Seq, u.Agreement, r.Sequence, protocol.ErrStale))
		}
		if err := m.rebuild(ctx, r, u, decls); err != nil {
			return refuse(protocol.StatusFailed, err)
		}
		m.tracker.Restore(r.ID, r.Sequence)
		return reply
	}
	uncertain := map[string]bool{}
	for _, name := range r.Uncertain {
		uncertain[name] = true
	}
	var fresh []string
	for _, name := range sortedNames(u.Secrets) {
		if s := r.SecretSeq[name]; u.Seq > s || u.Seq == s && uncertain[name] {
			fresh = append(fresh, name)
		}
	}
	if len(fresh) == 0 {
		return refuse(protocol.StatusRefused, fmt.Errorf("update %d for agreement %q, last applied %d, changes no secret it is newer for: %w", u.Seq, u.Agreement, r.Sequence, protocol.ErrStale))
	}
	if u.Seq < r.Sequence {
		m.log.Info("applying a late update to the secrets not changed since", "agreement", u.Agreement, "seq", u.Seq, "last", r.Sequence, "secrets", fresh)
	}
	if err := m.swap(ctx, r, u, fresh); err != nil {
		return refuse(protocol.StatusFailed, err)
	}
	m.tracker.Restore(r.ID, r.Sequence)
	return reply
}

// swap applies u to the running agreement r through its stores.
//
//  1. When more than one store changes, read the current values back from the stores, so a
//     failure in a later store can put the earlier ones back.
//  2. Swap each store, all-or-nothing per store; on failure restore the stores done.
//  3. Run the onUpdate actions (restart in restart mode). A failure there is noted, not undone:
//     the values are in place.
//  4. Persist the sequence and digests, in one fsynced transaction.
//
// If the agent dies between 2 and 4, each secret holds its old or its new value and the DB
// the old digests: start-up checks every file against its digest, finds the ones that differ
// and asks for a resync (Recover), so no intent record is written before the swap.
func (m *Manager) swap(ctx context.Context, r *record, u *protocol.Update, changed []string) error {
	plan := storePlan(r, u, changed)
	decls := declared(&r.Service)
	newDigests := map[string]string{}
	for _, name := range changed {
		newDigests[name] = m.digest(decls[name], u.Secrets[name].SecretValue)
	}
	if err := m.swapStores(r, u, changed, plan); err != nil {
		return err
	}
	return m.recordSwap(ctx, r, u, changed, plan, newDigests)
}

// storeUpdate is what one store gets of an update.
type storeUpdate struct {
	id      string
	secrets []StoreSecret
}

// storePlan splits an update's changed secrets by the stores of the containers that use them.
func storePlan(r *record, u *protocol.Update, changed []string) []storeUpdate {
	var plan []storeUpdate
	for _, cr := range r.Containers {
		if cr.StoreID == "" {
			continue
		}
		var secrets []StoreSecret
		for _, name := range changed {
			d, ok := r.Service.AllContainers()[cr.Name].Secrets[name]
			if !ok {
				continue
			}
			v := u.Secrets[name].SecretValue
			secrets = append(secrets, StoreSecret{Name: name, Key: v.Key, Value: []byte(v.Value), Format: storeFormat(d)})
		}
		if len(secrets) > 0 {
			plan = append(plan, storeUpdate{id: cr.StoreID, secrets: secrets})
		}
	}
	return plan
}

// swapStores applies the plan store by store, all or nothing: with several stores the current
// values are read first, and a failure puts the earlier stores back.
func (m *Manager) swapStores(r *record, u *protocol.Update, changed []string, plan []storeUpdate) error {
	var old [][]StoreSecret
	if len(plan) > 1 {
		for _, su := range plan {
			prev, err := m.readBack(su.id, su.secrets)
			if err != nil {
				return fmt.Errorf("update %d: %w (nothing was changed)", u.Seq, err)
			}
			old = append(old, prev)
		}
	}
	for i, su := range plan {
		err := m.stores.Update(su.id, su.secrets)
		if err == nil {
			continue
		}
		err = fmt.Errorf("update %d: secret store %q: %w", u.Seq, su.id, err)
		var rbErr error
		for j := i - 1; j >= 0; j-- {
			if e := m.stores.Update(plan[j].id, old[j]); e != nil {
				rbErr = errors.Join(rbErr, fmt.Errorf("put back store %q: %w", plan[j].id, e))
			}
		}
		if rbErr != nil {
			// Some secrets may now hold the new value: mark them uncertain, which asks for a
			// resync (Resyncs), whose full update settles them.
			r.Uncertain = union(r.Uncertain, changed)
			r.Note = "an update failed and could not be undone; waiting for resync"
			if perr := m.db.put(r); perr != nil {
				m.log.Error("could not record the uncertain secrets; start-up finds them", "agreement", r.ID, "err", perr)
			}
			return errors.Join(err, rbErr)
		}
		return fmt.Errorf("%w (every secret keeps its old value)", err)
	}
	return nil
}

// recordSwap runs the onUpdate actions and records the new digests and sequences in one
// transaction.
func (m *Manager) recordSwap(ctx context.Context, r *record, u *protocol.Update, changed []string, plan []storeUpdate, newDigests map[string]string) error {
	note := ""
	if !m.needsAfterUpdate(r, changed) {
		// Nothing to signal or restart: the engine is not asked (listing containers costs in
		// proportion to every container on the node).
	} else if err := m.runner.AfterUpdate(ctx, r.Instance, changed); err != nil {
		note = fmt.Sprintf("update %d applied, onUpdate action failed: %s", u.Seq, reason(err))
		m.log.Warn("onUpdate action failed; the update itself is in place", "agreement", r.ID, "seq", u.Seq, "err", err)
	}
	for name, d := range newDigests {
		r.Digests[name] = d
		r.SecretSeq[name] = u.Seq
	}
	r.Uncertain = minus(r.Uncertain, changed)
	r.Sequence = max(r.Sequence, u.Seq)
	r.UpdatedAt = m.now().UTC()
	r.Note = note
	if err := m.db.put(r); err != nil {
		// The values are in place but not recorded: the agbot retries, which applies the same
		// values again; a restart meanwhile finds the files differ from the digests and resyncs.
		return fmt.Errorf("update %d applied but not recorded: %w", u.Seq, err)
	}
	m.log.Info("applied update", "agreement", r.ID, "seq", u.Seq, "full", u.Full, "stores", len(plan),
		"secrets", digestAttrs(newDigests), "reasons", reasons(u))
	return nil
}

// rebuild answers a resync after the node lost its stores: it creates them from a full set of
// values and starts the containers again.
func (m *Manager) rebuild(ctx context.Context, r *record, u *protocol.Update, decls map[string]protocol.SecretDecl) error {
	var missing []string
	for name := range decls {
		if _, ok := u.Secrets[name]; !ok {
			missing = append(missing, name)
		}
	}
	if !u.Full || len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("agreement %q lost its secrets on this node and waits for a full update (resync); update %d lacks %q", r.ID, u.Seq, missing)
	}
	// Whatever is left of the old containers and stores goes first.
	if err := m.teardown(ctx, r); err != nil {
		return fmt.Errorf("resync: clear old containers and stores: %w", err)
	}
	values := make(map[string]protocol.SecretValue, len(u.Secrets))
	for name, c := range u.Secrets {
		values[name] = c.SecretValue
	}
	if err := m.install(ctx, r, values); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	for name, v := range values {
		r.Digests[name] = m.digest(decls[name], v)
		r.SecretSeq[name] = u.Seq
	}
	r.Phase = PhaseActive
	r.Sequence = u.Seq
	r.Uncertain = nil
	r.UpdatedAt = m.now().UTC()
	r.Note = ""
	if err := m.db.put(r); err != nil {
		return fmt.Errorf("resync applied but not recorded: %w", err)
	}
	m.log.Info("restored agreement from resync", "agreement", r.ID, "seq", u.Seq,
		"containers", len(r.Containers), "secrets", digestAttrs(r.Digests))
	return nil
}

// readBack reads the current values of secrets from store id, to put them back if a later
// store fails. The files live on tmpfs; what is read stays in memory.
func (m *Manager) readBack(id string, secrets []StoreSecret) ([]StoreSecret, error) {
	st, err := m.store(id)
	if err != nil {
		return nil, err
	}
	out := make([]StoreSecret, 0, len(secrets))
	for _, s := range secrets {
		path, ok := st.Files[s.Name]
		if !ok {
			return nil, fmt.Errorf("secret store %q has no file for secret %q", id, s.Name)
		}
		v, err := readSecret(path, protocol.SecretDecl{Format: string(s.Format)})
		if err != nil {
			return nil, fmt.Errorf("secret store %q: read current %q: %w", id, s.Name, err)
		}
		prev := StoreSecret{Name: s.Name, Key: v.Key, Value: []byte(v.Value), Format: s.Format}
		out = append(out, prev)
	}
	return out, nil
}

func union(a, b []string) []string {
	set := map[string]bool{}
	for _, s := range a {
		set[s] = true
	}
	for _, s := range b {
		set[s] = true
	}
	return sortedNames(set)
}

func minus(a, b []string) []string {
	drop := map[string]bool{}
	for _, s := range b {
		drop[s] = true
	}
	var out []string
	for _, s := range a {
		if !drop[s] {
			out = append(out, s)
		}
	}
	return out
}

func reasons(u *protocol.Update) []string {
	out := make([]string, 0, len(u.Secrets))
	for _, name := range sortedNames(u.Secrets) {
		out = append(out, name+":"+string(u.Secrets[name].Reason))
	}
	return out
}

// needsAfterUpdate reports whether an update of changed asks the worker for anything: a
// changed secret of a container with an onUpdate action other than none, or a container whose
// store is in restart mode (its file mounts can not change live).
func (m *Manager) needsAfterUpdate(r *record, changed []string) bool {
	for _, cr := range r.Containers {
		decl := r.Service.Deployment.Services[cr.Name]
		uses := false
		for _, name := range changed {
			d, ok := decl.Secrets[name]
			if !ok {
				continue
			}
			uses = true
			if d.OnUpdate != "" && d.OnUpdate != "none" {
				return true
			}
		}
		if !uses || cr.StoreID == "" {
			continue
		}
		st, err := m.store(cr.StoreID)
		if err != nil || st.Mode == modeRestart {
			return true // unknown: let the worker decide
		}
	}
	return false
}
