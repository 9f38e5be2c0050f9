package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// newResolver starts one pass of secret reads for org.
func (e *Engine) newResolver(ctx context.Context, org string) *resolver {
	return &resolver{ctx: ctx, sm: e.sm, st: e.st, org: org, cache: map[string]got{},
		callers: map[string]access.Caller{}, owners: map[string]ownerOf{}}
}

// caller is the user org/name as the access rules see it, read fresh once per pass: a user
// deleted or no longer an admin loses the right at the next pass.
func (r *resolver) caller(org, name string) access.Caller {
	k := org + "/" + name
	r.mu.Lock()
	c, ok := r.callers[k]
	r.mu.Unlock()
	if ok {
		return c
	}
	c = access.Caller{ID: name} // no such user (deleted): of no org, refused everything
	if u, err := r.st.Users.Get(org, name); err == nil {
		c.Org, c.Admin = org, u.Admin
	}
	r.mu.Lock()
	r.callers[k] = c
	r.mu.Unlock()
	return c
}

type ownerOf struct {
	c   access.Caller
	err error
}

// sourceOwner is the owner of an agreement's policy or pattern ("policy/<org>/<name>"), read
// once per pass.
func (r *resolver) sourceOwner(source string) (access.Caller, error) {
	r.mu.Lock()
	o, ok := r.owners[source]
	r.mu.Unlock()
	if !ok {
		o.c, o.err = r.readSourceOwner(source)
		r.mu.Lock()
		r.owners[source] = o
		r.mu.Unlock()
	}
	return o.c, o.err
}

func (r *resolver) readSourceOwner(source string) (access.Caller, error) {
	kind, rest, _ := strings.Cut(source, "/")
	org, name, _ := strings.Cut(rest, "/")
	var owner string
	var err error
	switch kind {
	case "policy":
		var p exchange.Policy
		p, err = r.st.Policies.Get(org, name)
		owner = p.Owner
	case "pattern":
		var p exchange.Pattern
		p, err = r.st.Patterns.Get(org, name)
		owner = p.Owner
	default:
		err = fmt.Errorf("agreement source %q: %w", source, store.ErrNotFound)
	}
	if err != nil {
		return access.Caller{}, fmt.Errorf("%s is gone: %w", source, err)
	}
	c := r.caller(org, owner)
	if c.Org == "" {
		return c, fmt.Errorf("%s: its owner %q is no longer a user of org %q", source, owner, org)
	}
	return c, nil
}

func (r *resolver) nodeOwner(org, node string) string {
	n, err := store.Part[exchange.NodeAccess](r.st.Nodes, org, node)
	if err != nil {
		return ""
	}
	return n.Owner
}

// allowed keeps the candidates (best first) that a's source may deliver to node n
// (access.Deliver), before any is read, with the grant of each. When none is allowed, why
// says which rule refused the best one.
func (r *resolver) allowed(a *Agreement, n exchange.NodeAccess, cands []string) (keep []string, grants map[string]access.Grant, why error) {
	owner, err := r.sourceOwner(a.Source)
	if err != nil {
		return nil, nil, err
	}
	nodeOwner := r.caller(n.Org, n.Owner)
	grants = map[string]access.Grant{}
	for _, c := range cands {
		mn, err := protocol.ParseManagerName(c)
		if err != nil {
			continue
		}
		t := access.Target{Org: r.org, User: mn.User, Node: mn.Node, Name: mn.Name}
		g, err := access.Deliver(owner, nodeOwner, t, r.nodeOwner)
		if err != nil {
			if why == nil {
				why = fmt.Errorf("not delivered through %s to node %s (owned by %q): %w", a.Source, n.ID, n.Owner, err)
			}
			continue
		}
		keep, grants[c] = append(keep, c), g
	}
	return keep, grants, why
}
