package access

import (
	"fmt"
)

// Bind decides whether owner, publishing a deployment policy or pattern, may bind the
// secret-manager name t: only a name owner may read through the secrets API (Secret with
// Read). Org-level names: org admins; user/<u>/...: user u; nothing of another org. A binding
// names an org or user level secret; with enableNodeLevelSecrets its node-specific variants
// are decided at delivery (Deliver), node by node.
func Bind(owner Caller, t Target, owns NodeOwner) error {
	if err := Secret(owner, Read, t, owns); err != nil {
		return fmt.Errorf("a policy or pattern may bind only secrets its owner may read: %w", err)
	}
	return nil
}

// Deliver decides, before the manager is read, whether the value of t (a name of the node's
// org) may go to a node owned by nodeOwner through a policy or pattern owned by owner:
//
//  1. owner may read t now (Bind): an owner who lost a right delivers nothing more;
//  2. for every name but an org-level one, the node's owner may read t as well:
//     user/<u>/... and user/<u>/node/<n>/... only to nodes user u owns; node/<n>/... only to a
//     node owned by an org admin, except a version newer than the node (Fresh);
//  3. org-level names go to any node the admin's policy or pattern matches (anax's model).
//
// The returned Grant says whether a version must be checked after the read.
func Deliver(owner, nodeOwner Caller, t Target, owns NodeOwner) (Grant, error) {
	if err := Bind(owner, t, owns); err != nil {
		return Grant{}, fmt.Errorf("%s: %w", t.name(), err)
	}
	if t.User == "" && t.Node == "" {
		return Grant{}, nil
	}
	err := Secret(nodeOwner, Read, t, owns)
	switch {
	case err == nil:
		return Grant{}, nil
	case t.User == "" && t.Node != "" && nodeOwner.Org == t.Org && !nodeOwner.Node:
		// node/<n>/...: an admin wrote it for "node n"; the node of that name now belongs to
		// a user, who may have claimed a free name. Only a version written after the node
		// was created was meant for this node.
		return Grant{FreshOnly: true}, nil
	}
	return Grant{}, fmt.Errorf("%s: the node's owner must be allowed to read it too: %w", t.name(), err)
}

// Grant qualifies a delivery Deliver allowed.
type Grant struct {
	// FreshOnly: deliver only a version written after the node was created
	// (exchange.Node.SecretsAtCreation holds the versions that predate it).
	FreshOnly bool
}

// Fresh reports whether version of a node-specific name may go to a node that, when it was
// created, found that name at version before (0: absent).
func (g Grant) Fresh(version, before int64) bool { return !g.FreshOnly || version > before }

func (t Target) name() string {
	s := t.Name
	if t.Node != "" {
		s = "node/" + t.Node + "/" + s
	}
	if t.User != "" {
		s = "user/" + t.User + "/" + s
	}
	return fmt.Sprintf("secret %q", s)
}
