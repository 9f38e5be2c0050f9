package secrets

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Manager names (design §3, §6). An org is passed separately; a name is one of
//
//	name                          org level
//	user/<user>/name              user level
//	node/<node>/name              node specific, org level
//	user/<user>/node/<node>/name  node specific, user level
//
// The Vault path of a name is "<org>/<name>" under the mount, so these rules are also what keeps
// one org's request out of another org's path. The shape and byte set match
// protocol.ParseManagerName (which validates bindings); this package adds the rules a stored
// name needs on top (no leading "openhorizon/", no empty segments, a total length) and an org
// check. It keeps its own copy until protocol's is committed: switch to calling it then.

const (
	// MaxSegmentLen is the longest org, user, node or secret segment, in bytes.
	MaxSegmentLen = 255
	// MaxNameLen is the longest full manager name, in bytes.
	MaxNameLen = 1024
	// mountPrefix is the default Vault mount; a name starting with it is almost surely a Vault
	// path pasted where a manager name belongs, and would store under <org>/openhorizon/...
	mountPrefix = "openhorizon/"
)

// NameError says which org, name or scope broke which rule. It never carries a secret value.
type NameError struct {
	Field string // "org", "name" or "scope"
	Input string // as given, possibly hostile: printed with %q and truncated
	Rule  string
}

func (e *NameError) Error() string {
	in := e.Input
	if len(in) > 80 {
		in = in[:80] + "..."
	}
	return fmt.Sprintf("secret manager %s %q: %s", e.Field, in, e.Rule)
}

func (e *NameError) Unwrap() error { return ErrInvalidName }

// Name is a parsed manager name. User and Node are empty at the levels that have none.
type Name struct {
	User   string
	Node   string
	Secret string
}

// String gives the full manager name back.
func (n Name) String() string {
	if s := n.Scope(); s != "" {
		return s + "/" + n.Secret
	}
	return n.Secret
}

// Scope is the name without its last segment: "", "user/<u>", "node/<n>" or "user/<u>/node/<n>".
func (n Name) Scope() string {
	var parts []string
	if n.User != "" {
		parts = append(parts, "user", n.User)
	}
	if n.Node != "" {
		parts = append(parts, "node", n.Node)
	}
	return strings.Join(parts, "/")
}

// ValidateOrg checks an org id: one path segment of [A-Za-z0-9_.@+-], not starting with '.'.
func ValidateOrg(org string) error {
	rule := segmentRule(org)
	if rule == "" && org[0] == '.' {
		rule = "must not start with '.'"
	}
	if rule != "" {
		return &NameError{Field: "org", Input: org, Rule: rule}
	}
	return nil
}

// ParseName checks a full manager name and splits it. Errors wrap ErrInvalidName and name the rule.
func ParseName(name string) (Name, error) {
	bad := func(rule string) (Name, error) {
		return Name{}, &NameError{Field: "name", Input: name, Rule: rule}
	}
	if name == "" {
		return bad("must not be empty")
	}
	if len(name) > MaxNameLen {
		return bad(fmt.Sprintf("must be at most %d bytes", MaxNameLen))
	}
	segs, rule := splitSegments(name)
	if rule != "" {
		return bad(rule)
	}
	n, rule := parseScopeSegments(segs[:len(segs)-1])
	if rule != "" {
		return bad(rule)
	}
	leaf := segs[len(segs)-1]
	if rule := segmentRule(leaf); rule != "" {
		return bad("secret segment " + rule)
	}
	n.Secret = leaf
	return n, nil
}

// ParseScope checks a List scope ("", "user/<u>", "node/<n>", "user/<u>/node/<n>") and splits it.
func ParseScope(scope string) (Name, error) {
	if scope == "" {
		return Name{}, nil
	}
	bad := func(rule string) (Name, error) {
		return Name{}, &NameError{Field: "scope", Input: scope, Rule: rule}
	}
	if len(scope) > MaxNameLen {
		return bad(fmt.Sprintf("must be at most %d bytes", MaxNameLen))
	}
	segs, rule := splitSegments(scope)
	if rule != "" {
		return bad(rule)
	}
	n, rule := parseScopeSegments(segs)
	if rule != "" {
		return bad(rule)
	}
	return n, nil
}

// splitSegments applies the rules every name and scope shares, most telling first.
func splitSegments(s string) ([]string, string) {
	if strings.HasPrefix(s, mountPrefix) {
		return nil, `must not start with "openhorizon/" (give the name within the org, not a Vault path)`
	}
	segs := strings.Split(s, "/")
	for _, seg := range segs {
		if seg == "." || seg == ".." {
			return nil, `must not contain "." or ".." segments`
		}
	}
	for _, seg := range segs {
		if seg == "" {
			return nil, "must not have empty segments (leading, trailing or doubled '/')"
		}
	}
	return segs, ""
}

const shapeRule = "must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name"

// parseScopeSegments reads the segments before the secret segment.
func parseScopeSegments(segs []string) (Name, string) {
	var n Name
	switch {
	case len(segs) == 0:
	case len(segs) == 2 && segs[0] == "user":
		n.User = segs[1]
	case len(segs) == 2 && segs[0] == "node":
		n.Node = segs[1]
	case len(segs) == 4 && segs[0] == "user" && segs[2] == "node":
		n.User, n.Node = segs[1], segs[3]
	default:
		return Name{}, shapeRule
	}
	if n.User != "" {
		if rule := segmentRule(n.User); rule != "" {
			return Name{}, "user segment " + rule
		}
	}
	if n.Node != "" {
		if rule := segmentRule(n.Node); rule != "" {
			return Name{}, "node segment " + rule
		}
	}
	return n, ""
}

// segmentRule returns the rule one user, node or secret segment breaks, or "". The set is
// protocol.ParseManagerName's (bindings name these secrets), '@' and '+' included because anax
// ids can be e-mail addresses.
func segmentRule(seg string) string {
	switch {
	case seg == "":
		return "must not be empty"
	case len(seg) > MaxSegmentLen:
		return fmt.Sprintf("must be at most %d bytes", MaxSegmentLen)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == '-' || c == '@' || c == '+'
		if !ok {
			return fmt.Sprintf("byte %d is not one of [A-Za-z0-9_.@+-]", i)
		}
	}
	return ""
}

// CheckSecret refuses what a backend can not store faithfully: Vault keeps JSON strings, so a
// key or value that is not valid UTF-8 would come back changed.
func CheckSecret(s Secret) error {
	if !utf8.ValidString(s.Key) {
		return fmt.Errorf("%w: key is not valid UTF-8", ErrInvalidSecret)
	}
	if !utf8.ValidString(s.Value) {
		return fmt.Errorf("%w: value is not valid UTF-8", ErrInvalidSecret)
	}
	return nil
}

// Check validates an org and a name together, as every Manager method does first.
func Check(org, name string) (Name, error) {
	if err := ValidateOrg(org); err != nil {
		return Name{}, err
	}
	return ParseName(name)
}
