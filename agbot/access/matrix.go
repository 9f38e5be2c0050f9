package access

import (
	"errors"
	"fmt"
)

// Sentinels the HTTP layer maps to status codes.
var (
	ErrUnauthenticated = errors.New("unauthenticated") // 401
	ErrForbidden       = errors.New("forbidden")       // 403
)

// Caller is an authenticated identity.
type Caller struct {
	Org   string
	ID    string // user name or node id
	Node  bool   // authenticated with node credentials
	Admin bool   // org admin (users only)
}

func (c Caller) String() string {
	kind := "user"
	switch {
	case c.Node:
		kind = "node"
	case c.Admin:
		kind = "admin"
	}
	return fmt.Sprintf("%s %s/%s", kind, c.Org, c.ID)
}

// Action is what a caller wants to do with a secret or a collection of them.
type Action string

const (
	List   Action = "list"
	Read   Action = "read"
	Write  Action = "write"
	Delete Action = "delete"
)

// Target is a secret-manager name or, for List, a collection: User and Node as in
// protocol.ManagerName, Name empty for a collection.
type Target struct {
	Org  string
	User string
	Node string
	Name string
}

// NodeOwner answers who owns a node of an org ("" if the node does not exist).
type NodeOwner func(org, node string) string

func deny(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, args...))
}

// Secret decides whether c may do act on t (design §6): org admins manage org and node
// secrets of their org; users list org-level names but do not read them, and manage only
// user/<me>/... and user/<me>/node/<n>/... for nodes they own; nobody, admins included,
// touches another user's user-level secrets; nothing crosses orgs; nodes are refused.
func Secret(c Caller, act Action, t Target, owner NodeOwner) error {
	switch {
	case c.Node:
		return deny("node credentials (%s/%s) can not use the secrets API", c.Org, c.ID)
	case c.Org != t.Org:
		return deny("%s can not access secrets of org %q", c, t.Org)
	}
	if t.User != "" {
		if t.User != c.ID {
			return deny("user-level secrets of user %q are managed only by that user, not %s", t.User, c)
		}
		if t.Node != "" {
			if o := owner(t.Org, t.Node); o != c.ID {
				return deny("node %q is not owned by %s: user node secrets need a node you own", t.Node, c)
			}
		}
		return nil
	}
	if c.Admin {
		return nil
	}
	if t.Node != "" {
		return deny("node-level secrets are managed by org admins only, not %s", c)
	}
	if act == List {
		return nil
	}
	return deny("%s may list org-level secret names but not %s them: org admins only", c, act)
}
