package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidSecretName is wrapped by every refusal of ValidateSecretName.
var ErrInvalidSecretName = errors.New("invalid secret name")

// MaxSecretNameLen is the longest service secret name, in bytes: one path component.
const MaxSecretNameLen = 255

// reservedNames are top-level directories a container needs; a secret mounted at /<name> must
// never hide one of them.
var reservedNames = map[string]bool{
	"bin": true, "boot": true, "dev": true, "etc": true, "home": true, "lib": true,
	"lib32": true, "lib64": true, "libx32": true, "media": true, "mnt": true, "opt": true,
	"proc": true, "root": true, "run": true, "sbin": true, "srv": true, "sys": true,
	"tmp": true, "usr": true, "var": true, "open-horizon-secrets": true,
	// Files the container runtime manages at the root.
	".dockerenv": true, "lost+found": true,
}

// NameError says which secret name broke which rule. It never carries a secret value.
type NameError struct {
	Name string // as given, possibly hostile: print it with %q only
	Rule string
}

func (e *NameError) Error() string {
	name := e.Name
	if len(name) > 64 {
		name = name[:64] + "..."
	}
	return fmt.Sprintf("secret name %q: %s", name, e.Rule)
}

// Unwrap lets errors.Is find both ErrInvalidSecretName and ErrInvalid.
func (e *NameError) Unwrap() []error { return []error{ErrInvalidSecretName, ErrInvalid} }

// ValidateSecretName checks a service secret name against design §3. The name becomes a file
// name and the mount point /<name> inside the container, so it must be one safe path component.
// The agbot calls it at publish time and the agent again at proposal time and in secretfs.
func ValidateSecretName(name string) error {
	bad := func(rule string) error { return &NameError{Name: name, Rule: rule} }
	switch {
	case name == "":
		return bad("must not be empty")
	case len(name) > MaxSecretNameLen:
		return bad(fmt.Sprintf("must be at most %d bytes", MaxSecretNameLen))
	case name == "." || name == "..":
		return bad("must not be . or ..")
	case name[0] == '.':
		return bad("must not start with '.'")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == '-'
		if !ok {
			return bad(fmt.Sprintf("byte %d is not one of [A-Za-z0-9_.-]", i))
		}
	}
	if reservedNames[name] {
		return bad("is a top-level directory a container needs (reserved)")
	}
	return nil
}

// ManagerName is a parsed secret-manager name (design §1): `name` (org level),
// `user/<user>/name`, `node/<node>/name` or `user/<user>/node/<node>/name`. The org never
// comes from the name: it is the caller's or the node's.
type ManagerName struct {
	User string // empty unless user level
	Node string // empty unless node specific
	Name string
}

// MaxManagerSegmentLen bounds each segment of a manager name (user, node, name).
const MaxManagerSegmentLen = 255

// String gives the canonical form, the inverse of ParseManagerName.
func (m ManagerName) String() string {
	s := m.Name
	if m.Node != "" {
		s = "node/" + m.Node + "/" + s
	}
	if m.User != "" {
		s = "user/" + m.User + "/" + s
	}
	return s
}

// NodeSpecific reports whether the name is node specific (`node/<n>/...`).
func (m ManagerName) NodeSpecific() bool { return m.Node != "" }

// WithoutNode is the user- or org-level name a node-specific name falls back to.
func (m ManagerName) WithoutNode() ManagerName { return ManagerName{User: m.User, Name: m.Name} }

// ForNode is the node-specific variant of an org- or user-level name.
func (m ManagerName) ForNode(node string) ManagerName {
	return ManagerName{User: m.User, Node: node, Name: m.Name}
}

// MaxManagerNameDepth bounds the segments of the name part of a manager name: anax allows
// nested names such as "test/more-passwords/password2".
const MaxManagerNameDepth = 8

// ParseManagerName parses and checks a secret-manager name. The name part may be nested
// (anax's "test/password1"); a first segment "user" or "node" always starts a scope, so
// "user/u/a/b" is user u's secret "a/b" and "user/u/node/n/a" is its node-n secret "a".
// Errors wrap ErrInvalid and say which segment broke which rule.
func ParseManagerName(s string) (ManagerName, error) {
	bad := func(rule string, args ...any) (ManagerName, error) {
		return ManagerName{}, fmt.Errorf("secret manager name %s: %w", quote(s), invalid("", rule, args...))
	}
	if s == "" {
		return bad("must not be empty")
	}
	parts := strings.Split(s, "/")
	var m ManagerName
	type segment struct{ what, v string }
	var segs []segment
	rest := parts
	if rest[0] == "user" && len(rest) >= 3 {
		m.User, rest = rest[1], rest[2:]
		segs = append(segs, segment{"user", m.User})
	}
	if rest[0] == "node" && len(rest) >= 3 {
		m.Node, rest = rest[1], rest[2:]
		segs = append(segs, segment{"node", m.Node})
	}
	if rest[0] == "user" || rest[0] == "node" {
		return bad("must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name")
	}
	if len(parts) > 1 && parts[0] == "openhorizon" {
		return bad(`must not start with "openhorizon/" (give the name within the org, not a Vault path)`)
	}
	if len(rest) > MaxManagerNameDepth {
		return bad("name has %d segments, more than %d", len(rest), MaxManagerNameDepth)
	}
	for _, seg := range segs {
		if err := checkSegment(seg.v); err != "" {
			return bad("%s segment %s", seg.what, err)
		}
	}
	for _, v := range rest {
		if err := checkSegment(v); err != "" {
			return bad("name segment %s", err)
		}
	}
	m.Name = strings.Join(rest, "/")
	return m, nil
}

// checkSegment returns the broken rule, or "" when seg is a valid manager-name segment.
func checkSegment(seg string) string {
	switch {
	case seg == "":
		return "must not be empty"
	case len(seg) > MaxManagerSegmentLen:
		return fmt.Sprintf("must be at most %d bytes", MaxManagerSegmentLen)
	case seg == "." || seg == "..":
		return "must not be . or .."
	}
	for i := 0; i < len(seg); i++ {
		if !idByte(seg[i]) || seg[i] == '/' || seg[i] == ':' {
			return fmt.Sprintf("byte %d is not one of [A-Za-z0-9_.@+-]", i)
		}
	}
	return ""
}

// MaxIDLen bounds agreement, node and agbot ids.
const MaxIDLen = 256

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == '-' || c == '@' || c == '+' || c == ':' || c == '/'
}

// ValidateID checks an agreement, node or agbot id: 1..256 bytes of [A-Za-z0-9_.@+:/-]
// (a node id is usually `org/node`), not starting with '/' or '.'. The field names the
// id in the error.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return invalid(field, "must not be empty")
	case len(id) > MaxIDLen:
		return invalid(field, "must be at most %d bytes", MaxIDLen)
	case id[0] == '/' || id[0] == '.':
		return invalid(field, "must not start with '/' or '.'")
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return invalid(field, "byte %d is not one of [A-Za-z0-9_.@+:/-]", i)
		}
	}
	return nil
}
