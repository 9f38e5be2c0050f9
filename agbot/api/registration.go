package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/protocol/constraint"
)

// UserAuthHeader carries Basic credentials (org/user:password) of the node's owner or an org
// admin on a registration that replaces the node's registered keys (`hzn register -u`). The
// request itself is still authenticated with the node token.
const UserAuthHeader = "X-Anax-User-Authorization"

// Registration is what a node sends to register (node auth).
type Registration = protocol.Registration

// KeyRelease is DELETE .../registration: the node gives up its registered keys (`hzn
// unregister`), proving it holds them. Signature is protocol.SignKeyRelease's.
type KeyRelease = protocol.KeyRelease

// register records a node's keys, arch, properties and pattern. The node token registers a
// node that has no keys (never registered, or released) or the keys it has; other keys need
// the node's owner or an org admin in UserAuthHeader. When keys are replaced the old ones are
// kept as ReplacedKeys, and the engine cancels the old node's agreements sealed to them.
func (a *API) register(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	if !c.Node || c.Org != org || c.ID != id {
		a.fail(w, fmt.Errorf("%w: only node %s/%s itself registers, with its token", access.ErrForbidden, org, id))
		return
	}
	var reg Registration
	if err := readJSON(r, 64<<10, &reg); err != nil {
		a.fail(w, err)
		return
	}
	if err := checkRegistration(reg); err != nil {
		a.fail(w, err)
		return
	}
	if reg.Pattern != "" {
		po, pn := org, reg.Pattern
		if o, p, ok := cut(reg.Pattern); ok {
			po, pn = o, p
		}
		// A private pattern of another org is as if not published.
		if p, err := a.st.Patterns.Get(po, pn); err != nil || !exchange.Usable(org, po, p.Public) {
			a.fail(w, fmt.Errorf("%w: field pattern: pattern %s/%s is not published (or not public, and of another org)", errBadRequest, po, pn))
			return
		}
	}
	if _, err := constraint.ParseAll(reg.Constraints); err != nil {
		a.fail(w, &protocol.ValidationError{Field: "constraints", Rule: err.Error()})
		return
	}
	var by *access.Caller // who may replace keys, when the header is given
	if h := r.Header.Get(UserAuthHeader); h != "" {
		u, err := a.userFromHeader(r, h)
		if err != nil {
			a.fail(w, err)
			return
		}
		by = &u
	}
	var n exchange.Node
	var old *protocol.PublicKeys
	err := a.st.Update(func(tx store.Tx) error {
		var err error
		if n, err = a.st.Nodes.GetTx(tx, org, id); err != nil {
			return err
		}
		if old = n.PublicKeys; old != nil && !old.Equal(reg.PublicKeys) {
			if err := mayReplaceKeys(n, by); err != nil {
				return err
			}
			n.ReplacedKeys = old
		} else {
			old = nil
		}
		if reg.Pattern != "" {
			n.Pattern = reg.Pattern
		}
		n.PublicKeys, n.Arch, n.Properties, n.Registered, n.LastUpdated = reg.PublicKeys, reg.Arch, reg.Properties, true, now()
		n.Constraints = reg.Constraints
		return a.st.Nodes.PutTx(tx, org, id, n)
	})
	a.identityChanged() // keys or registration changed: cached logins check again
	if err != nil {
		if old != nil {
			a.log.Warn("audit", "op", "node re-key", "org", org, "node", id, "caller", c.String(),
				"user_authority", by != nil, "result", status(err))
		}
		a.fail(w, err)
		return
	}
	if old != nil {
		a.log.Warn("audit", "op", "node re-key", "org", org, "node", id, "old_keys", old.Fingerprint(),
			"new_keys", reg.PublicKeys.Fingerprint(), "authorized_by", by.String(), "result", 200)
	}
	a.log.Info("node registered", "org", org, "node", id, "arch", reg.Arch, "pattern", n.Pattern, "keys", reg.PublicKeys.Fingerprint())
	if err := a.eng.NodeRegistered(r.Context(), org, id, reg.PublicKeys); err != nil {
		a.log.Warn("reconcile after registration", "node", id, "err", err)
	}
	pub := a.eng.PublicKeys()
	writeJSON(w, 200, AgbotInfo{ID: a.eng.ID(), PublicKeys: pub, Fingerprint: pub.Fingerprint()})
}

func checkRegistration(reg Registration) error {
	if reg.PublicKeys == nil {
		return fmt.Errorf("%w: field publicKeys: required", errBadRequest)
	}
	if err := reg.PublicKeys.Validate(); err != nil {
		return err
	}
	if reg.Arch == "" {
		return fmt.Errorf("%w: field arch: required (amd64, arm64, arm, ...)", errBadRequest)
	}
	return nil
}

// mayReplaceKeys is the re-key rule: the node token alone never replaces registered keys.
func mayReplaceKeys(n exchange.Node, by *access.Caller) error {
	if by == nil {
		return fmt.Errorf("%w: node %s/%s has registered keys %s: replacing them needs the node's owner or an org admin "+
			"(header %s; hzn register -u USER:PASSWORD), or their release signed by the old keys (hzn unregister on the old node); "+
			"the node token alone does not re-key a node", access.ErrForbidden, n.Org, n.ID, n.PublicKeys.Fingerprint(), UserAuthHeader)
	}
	if by.Org != n.Org || !(by.Admin || by.ID == n.Owner) {
		return fmt.Errorf("%w: header %s: %s is neither the owner (%q) of node %s/%s nor an admin of org %q, so it may not replace the node's keys",
			access.ErrForbidden, UserAuthHeader, by, n.Owner, n.Org, n.ID, n.Org)
	}
	return nil
}

// userFromHeader authenticates the Basic credentials in UserAuthHeader as a user, through the
// same path (and limits) as any request's Authorization.
func (a *API) userFromHeader(r *http.Request, h string) (access.Caller, error) {
	ur := r.Clone(r.Context())
	ur.Header = http.Header{"Authorization": {h}}
	u, _, err := a.authenticate(ur) // a throttled header gets the error (429) without Retry-After
	if err != nil {
		return u, fmt.Errorf("header %s: %w", UserAuthHeader, err)
	}
	if u.Node {
		return u, fmt.Errorf("%w: header %s: must hold user credentials, not a node's", access.ErrForbidden, UserAuthHeader)
	}
	return u, nil
}

// releaseKeys serves DELETE .../registration: a node that proves it holds its registered keys
// gives them up; the agbot forgets them, the node's agreements and its queue, and the node
// token alone may register new keys.
func (a *API) releaseKeys(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	if !c.Node || c.Org != org || c.ID != id {
		a.fail(w, fmt.Errorf("%w: only node %s/%s itself releases its keys, with its token", access.ErrForbidden, org, id))
		return
	}
	var rel KeyRelease
	if err := readJSON(r, 4<<10, &rel); err != nil {
		a.fail(w, err)
		return
	}
	released := false
	err := a.st.Update(func(tx store.Tx) error {
		n, err := a.st.Nodes.GetTx(tx, org, id)
		if err != nil || n.PublicKeys == nil {
			return err
		}
		if err := protocol.VerifyKeyRelease(n.PublicKeys, org+"/"+id, rel.Time, time.Now(), rel.Signature); err != nil {
			return fmt.Errorf("%w: field signature: %w", access.ErrForbidden, err)
		}
		n.PublicKeys, n.ReplacedKeys, n.Registered, n.LastUpdated = nil, nil, false, now()
		// The registration's choices go with it: registering again without -p is a policy node
		// (anax's hzn unregister leaves no pattern behind either).
		n.Pattern, n.Constraints = "", nil
		released = true
		return a.st.Nodes.PutTx(tx, org, id, n)
	})
	a.identityChanged() // keys or registration changed: cached logins check again
	if err != nil {
		a.log.Warn("audit", "op", "node key release", "org", org, "node", id, "result", status(err))
		a.fail(w, err)
		return
	}
	if released {
		if err := a.eng.NodeDeleted(org, id); err != nil {
			a.fail(w, err)
			return
		}
		a.log.Info("audit", "op", "node key release", "org", org, "node", id, "result", 200)
	}
	writeJSON(w, 200, map[string]any{"node": id, "released": released})
}
