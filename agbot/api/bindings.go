package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/protocol"
)

// checkBindings refuses (403) a policy or pattern of org whose publisher, its owner to be,
// binds a secret the publisher may not read (access.Bind), naming the binding, the secret and
// the rule. The engine checks the same rule again at every proposal and update.
func (a *API) checkBindings(c access.Caller, org string, bindings []protocol.SecretBinding) error {
	for i, b := range bindings {
		for j, p := range b.Secrets {
			mn, err := protocol.ParseManagerName(p.ManagerSecret)
			if err != nil {
				continue // ValidateBindings names it
			}
			t := access.Target{Org: org, User: mn.User, Node: mn.Node, Name: mn.Name}
			if err := access.Bind(c, t, a.nodeOwner); err != nil {
				return fmt.Errorf("secretBinding[%d].secrets[%d] (%s -> %q): %w", i, j, p.ServiceSecret, p.ManagerSecret, err)
			}
		}
	}
	return nil
}

// exists reports whether a bound name holds a secret, for the publishing warnings. It answers
// only for names the caller may list (access.List on the name's scope); for any other it
// claims the secret exists, so a warning never tells whether another user's secret is there.
func (a *API) exists(ctx context.Context, c access.Caller, org string) func(string) (bool, error) {
	return func(name string) (bool, error) {
		mn, err := protocol.ParseManagerName(name)
		if err != nil {
			return true, nil
		}
		scope := access.Target{Org: org, User: mn.User, Node: mn.Node}
		if access.Secret(c, access.List, scope, a.nodeOwner) != nil {
			return true, nil
		}
		_, _, err = a.sm.Get(ctx, org, name)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, secrets.ErrNotFound):
			return false, nil
		}
		return false, err
	}
}
