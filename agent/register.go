package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/platform/arch"
	"github.com/edge-secrets/anax-agent/protocol"
)

// RegisterRequest is POST /node on the local API (`hzn register`).
type RegisterRequest struct {
	Org     string `json:"org,omitempty"` // default: the agent's --org
	Node    string `json:"node"`
	Token   string `json:"token"`
	Pattern string `json:"pattern,omitempty"` // "[org/]name"
	// User is "[org/]user:password" of the node's owner or an org admin: needed only when
	// the agbot holds other keys for the node (hzn register -u). Never stored or logged.
	User   string      `json:"user,omitempty"`
	Policy *NodePolicy `json:"policy,omitempty"`
	// UserInput is anax's node user input (hzn register -f).
	UserInput NodeUserInput `json:"userInput,omitempty"`
}

// UnregisterResult is DELETE /node on the local API (`hzn unregister`).
type UnregisterResult struct {
	Node      string   `json:"node"`
	Cancelled []string `json:"cancelled"`
	// NotDelivered lists agreements ended on the node whose cancel the agbot did not get
	// (it was away); the agbot ends them when it finds the node gone.
	NotDelivered []string `json:"notDelivered,omitempty"`
	// Removed counts leftover stores and containers that belonged to no agreement.
	Removed int `json:"removed,omitempty"`
	// KeysReleased: the agbot forgot the node's keys, so the node token alone registers the
	// node again. When false, registering it again needs its owner or an org admin (-u).
	KeysReleased bool `json:"keysReleased"`
}

func (a *Agent) stateFile(name string) string { return filepath.Join(a.cfg.StateDir, name) }

// Register registers the node with the agbot: 1. check the request; 2. read the agbot's keys
// and compare their fingerprint with --agbot-fingerprint when given; 3. load or create the
// node's keys; 4. PUT the registration with the node token, and check the agbot answers with
// the same keys; 5. remember it all (registration.json, 0600); 6. start the message loop.
func (a *Agent) Register(ctx context.Context, req RegisterRequest) (NodeInfo, error) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if reg := a.registration(); reg != nil {
		return NodeInfo{}, fmt.Errorf("%w as %s; run hzn unregister first", ErrRegistered, reg.ID())
	}
	org, policy, user, err := a.checkRegisterRequest(req)
	if err != nil {
		return NodeInfo{}, err
	}
	if a.cfg.AgbotURL == "" {
		return NodeInfo{}, fmt.Errorf("%w: the agent has no agbot URL (start it with --agbot-url)", ErrInvalidRequest)
	}
	client, err := newAgbotClient(a.cfg.AgbotURL, a.cfg.AgbotCA)
	if err != nil {
		return NodeInfo{}, err
	}
	defer client.close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	reg, err := a.registerWithAgbot(ctx, client, org, req, policy, user)
	if err != nil {
		return NodeInfo{}, err
	}
	if err := saveRegistration(a.cfg.StateDir, reg); err != nil {
		return NodeInfo{}, fmt.Errorf("remember the registration: %w", err)
	}
	if err := a.setRegistration(reg); err != nil {
		return NodeInfo{}, err
	}
	a.log.Info("registered", "node", reg.ID(), "agbot", reg.AgbotID, "agbot_fingerprint", reg.AgbotFingerprint,
		"node_fingerprint", reg.NodeFingerprint, "pattern", reg.Pattern, "properties", len(policy.Properties),
		"constraints", len(policy.Constraints))
	if a.ctx.Err() == nil {
		a.startConnection(reg)
	}
	_ = a.notify.Status(a.statusLine())
	return reg.Info(), nil
}

// checkRegisterRequest checks everything of a registration that needs no agbot: the org (the
// agent's, or the one given if it agrees), node, token, owner credentials, pattern, policy and
// user input.
func (a *Agent) checkRegisterRequest(req RegisterRequest) (org string, policy NodePolicy, user string, err error) {
	org = req.Org
	switch {
	case org == "":
		org = a.cfg.Org
	case a.cfg.Org != "" && org != a.cfg.Org:
		return "", policy, "", fmt.Errorf("%w: org %q: this agent is configured for org %q", ErrInvalidRequest, org, a.cfg.Org)
	}
	if org == "" {
		return "", policy, "", fmt.Errorf("%w: org: not set (start the agent with --org, or pass -o ORG)", ErrInvalidRequest)
	}
	for _, c := range []struct{ field, v string }{{"org", org}, {"node", req.Node}} {
		if err := validSegment(c.field, c.v); err != nil {
			return "", policy, "", err
		}
	}
	if err := validToken(req.Token); err != nil {
		return "", policy, "", err
	}
	if user, err = userCredential(org, req.User); err != nil {
		return "", policy, "", err
	}
	if req.Pattern != "" {
		po, pn, ok := strings.Cut(req.Pattern, "/")
		if !ok {
			po, pn = org, req.Pattern
		}
		if validSegment("pattern org", po) != nil || validSegment("pattern name", pn) != nil {
			return "", policy, "", fmt.Errorf("%w: pattern %q: must be ORG/NAME or NAME, each one segment of [A-Za-z0-9_.@+-]", ErrInvalidRequest, req.Pattern)
		}
	}
	if req.Policy != nil {
		policy = *req.Policy
		if err := policy.Validate(); err != nil {
			return "", policy, "", err
		}
	}
	if err := validateUserInput(req.UserInput); err != nil {
		return "", policy, "", err
	}
	return org, policy, user, nil
}

// registerWithAgbot checks the agbot's key (against --agbot-fingerprint when set), registers the
// node's keys, properties and constraints with it, and returns the registration to keep.
func (a *Agent) registerWithAgbot(ctx context.Context, client *agbotClient, org string, req RegisterRequest, policy NodePolicy, user string) (*Registration, error) {
	info, err := client.info(ctx)
	if err != nil {
		return nil, err
	}
	if want := a.cfg.AgbotFingerprint; want != "" && info.Fingerprint != want {
		return nil, fmt.Errorf("%w: the agbot at %s has signing key %s, --agbot-fingerprint says %s", ErrAgbotKey, a.cfg.AgbotURL, info.Fingerprint, want)
	}
	keys, err := protocol.LoadOrCreateKeys(a.stateFile(nodeKeysFile))
	if err != nil {
		return nil, fmt.Errorf("node keys: %w", err)
	}
	reg := &Registration{Org: org, Node: req.Node, Token: req.Token, Pattern: req.Pattern, Policy: policy,
		UserInput: req.UserInput, Arch: arch.Node(), AgbotURL: a.cfg.AgbotURL, NodeFingerprint: keys.Public().Fingerprint()}
	// The agbot matches deployment policies against the effective properties and the built-in ones.
	props := policy.reportedProperties(reg.Arch, a.facts)
	got, err := client.register(ctx, reg, registrationBody{PublicKeys: keys.Public(), Arch: reg.Arch, Properties: props,
		Constraints: policy.Effective().Constraints, Pattern: req.Pattern}, user)
	if err != nil {
		if code := httpStatus(err); code == 401 || code == 403 {
			return nil, fmt.Errorf("%w: the agbot refused the registration of node %s/%s: %w", ErrInvalidRequest, org, req.Node, err)
		}
		return nil, err
	}
	if got.ID != info.ID || !got.PublicKeys.Equal(info.PublicKeys) {
		return nil, fmt.Errorf("%w: the agbot answered the registration with keys %s, not the %s it showed first", ErrAgbotKey, got.Fingerprint, info.Fingerprint)
	}
	reg.AgbotID, reg.AgbotKeys, reg.AgbotFingerprint = info.ID, info.PublicKeys, info.Fingerprint
	reg.RegisteredAt = time.Now().UTC().Truncate(time.Second)
	return reg, nil
}

// userCredential checks "[org/]user:password" and returns it as "org/user:password" ("" for "").
func userCredential(org, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	id, pw, ok := strings.Cut(s, ":")
	if !ok || id == "" || pw == "" {
		return "", fmt.Errorf("%w: user: must be [ORG/]USER:PASSWORD", ErrInvalidRequest)
	}
	if !strings.Contains(id, "/") {
		id = org + "/" + id
	}
	if err := validToken(pw); err != nil {
		return "", fmt.Errorf("%w: user: the password must be 1..1024 bytes without control characters", ErrInvalidRequest)
	}
	return id + ":" + pw, nil
}

func validToken(tok string) error {
	if tok == "" || len(tok) > 1024 {
		return fmt.Errorf("%w: token: must be 1..1024 bytes", ErrInvalidRequest)
	}
	for _, r := range tok {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: token: must not hold control characters", ErrInvalidRequest)
		}
	}
	return nil
}

// Unregister ends every agreement on the node's initiative (containers stopped, secrets
// wiped), tells the agbot, removes anything left of the agent on the node, and forgets the
// registration and the node keys. When an agreement can not be ended the registration stays
// and the error says which; the message loop goes on.
func (a *Agent) Unregister(ctx context.Context) (UnregisterResult, error) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	reg := a.registration()
	if reg == nil {
		return UnregisterResult{}, ErrNotRegistered
	}
	res := UnregisterResult{Node: reg.ID(), Cancelled: []string{}}
	ep := a.quiesce(ctx, reg)
	client, _ := newAgbotClient(reg.AgbotURL, a.cfg.AgbotCA)
	if client != nil {
		defer client.close()
	}
	if err := a.endAll(ctx, reg, ep, client, &res); err != nil {
		a.restartConnection(reg)
		return res, err
	}
	// Anything of this agent left on the node (a store or container no agreement owns).
	n, err := a.sweep(ctx)
	res.Removed = n
	if err != nil {
		a.restartConnection(reg)
		return res, fmt.Errorf("unregister: %w", err)
	}
	if ep != nil && client != nil {
		res.KeysReleased = a.releaseKeys(ctx, client, reg, ep)
	}
	if err := forgetRegistration(a.cfg.StateDir); err != nil {
		return res, fmt.Errorf("unregister: forget the registration: %w", err)
	}
	_ = a.setRegistration(nil)
	a.setLink(func(l *linkStatus) { *l = linkStatus{} })
	a.guard.forgetAll()
	a.log.Info("unregistered", "node", reg.ID(), "cancelled", len(res.Cancelled), "not_delivered", len(res.NotDelivered), "removed", n,
		"keys_released", res.KeysReleased)
	a.refreshGauges()
	return res, nil
}

// quiesce stops the message loop (no new messages from here; those in hand finish) and returns
// the protocol endpoint to seal the cancels with.
func (a *Agent) quiesce(ctx context.Context, reg *Registration) *protocol.Endpoint {
	var ep *protocol.Endpoint
	if c := a.takeConnection(); c != nil {
		if err := c.stop(ctx); err != nil {
			a.log.Warn("unregister: messages still in progress", "err", err)
		}
		ep = c.ep
	}
	if ep == nil {
		if c, err := a.newConnection(reg); err == nil {
			ep = c.ep
		}
	}
	return ep
}

// endAll ends every agreement and tells the agbot (best effort: it may be away; what it did
// not get is listed in res.NotDelivered). An agreement that could not be ended fails it.
func (a *Agent) endAll(ctx context.Context, reg *Registration, ep *protocol.Endpoint, client *agbotClient, res *UnregisterResult) error {
	list, err := a.mgr.Agreements()
	if err != nil {
		return err
	}
	var errs []error
	var cancels []*protocol.Cancel
	for _, in := range list {
		c, err := a.mgr.End(ctx, in.ID, "node unregistered")
		if errors.Is(err, agreement.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("agreement %s: %w", in.ID, err))
			continue
		}
		res.Cancelled = append(res.Cancelled, in.ID)
		cancels = append(cancels, c)
		a.changed(in.ID)
	}
	for _, c := range cancels {
		if ep == nil || client == nil {
			res.NotDelivered = append(res.NotDelivered, c.Agreement)
			continue
		}
		env, err := ep.Seal(c)
		if err == nil {
			err = client.post(ctx, reg, env)
		}
		if err != nil {
			a.log.Warn("unregister: the agbot did not get the cancel", "agreement", c.Agreement, "err", err)
			res.NotDelivered = append(res.NotDelivered, c.Agreement)
		}
	}
	if err := errors.Join(errs...); err != nil {
		a.log.Error("unregister: some agreements could not be ended; the node stays registered", "err", err)
		return err
	}
	return nil
}

// releaseKeys gives the node's keys up at the agbot, signed with them, so that the token alone
// registers this node again (best effort: otherwise that needs the owner or an org admin).
func (a *Agent) releaseKeys(ctx context.Context, client *agbotClient, reg *Registration, ep *protocol.Endpoint) bool {
	held, err := client.release(ctx, reg, ep.Keys)
	switch {
	case err != nil && httpStatus(err) == 403:
		// Other keys are registered now (the owner replaced them): nothing of ours to release.
		a.log.Info("unregister: the agbot holds other keys for this node; nothing to release", "err", err)
	case err != nil:
		a.log.Warn("unregister: the agbot still holds this node's keys; registering the node again needs its owner or an org admin (hzn register -u USER:PASSWORD)", "err", err)
	}
	return err == nil && held
}

func (a *Agent) restartConnection(reg *Registration) {
	if a.ctx.Err() == nil && a.connection() == nil {
		a.startConnection(reg)
	}
}

// sweep removes stores and containers of this agent that no agreement owns.
func (a *Agent) sweep(ctx context.Context) (int, error) {
	list, err := a.mgr.Agreements()
	if err != nil {
		return 0, err
	}
	ownedStores, ownedInstances := map[string]bool{}, map[string]bool{}
	for _, in := range list {
		ownedInstances[in.Instance] = true
		for _, c := range in.Containers {
			ownedStores[c.StoreID] = true
		}
	}
	removed := 0
	var errs []error
	cs, err := a.worker.List(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	stopped := map[string]bool{}
	for _, c := range cs {
		if ownedInstances[c.InstanceID] || stopped[c.InstanceID] {
			continue
		}
		stopped[c.InstanceID] = true
		a.log.Warn("removing containers that belong to no agreement", "instance", c.InstanceID)
		if err := a.worker.Stop(ctx, c.InstanceID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	stores, err := a.stores.Stores()
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range stores {
		if ownedStores[s.ID] {
			continue
		}
		a.log.Warn("wiping a secret store that belongs to no agreement", "store", s.ID)
		if err := a.stores.Wipe(s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
