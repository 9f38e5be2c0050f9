package secrets

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Manager names (design §3, §6). An org is passed separately; a name is one of
//
//	name                          org level
//	user/<user>/name              user level
//	node/<node>/name              node specific, org level
//	user/<user>/node/<node>/name  node specific, user level
//
// The shape and the byte set of each segment are protocol.ParseManagerName's, the rule bindings
// are checked with, so every name a binding may hold can be stored and nothing else. This file
// adds the rules of a stored name on top, checked first so the error names them: no leading
// "openhorizon/", no "." or ".." segments, no empty segments, a total length. The Vault path of
// a name is "<org>/<name>" under the mount, so these rules and ValidateOrg are also what keeps
// one org's request out of another org's path.

const (
	// MaxSegmentLen is the longest org, user, node or secret segment, in bytes.
	MaxSegmentLen = protocol.MaxManagerSegmentLen
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
	Err   error // protocol's refusal, when it was protocol's rule
}

func (e *NameError) Error() string {
	in := e.Input
	if len(in) > 80 {
		in = in[:80] + "..."
	}
	return fmt.Sprintf("secret manager %s %q: %s", e.Field, in, e.Rule)
}

// Unwrap lets errors.Is find ErrInvalidName (and protocol.ErrInvalid for protocol's rules).
func (e *NameError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidName, e.Err}
	}
	return []error{ErrInvalidName}
}

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
	bad := func(rule string) error { return &NameError{Field: "org", Input: org, Rule: rule} }
	switch {
	case org == "":
		return bad("must not be empty")
	case len(org) > MaxSegmentLen:
		return bad(fmt.Sprintf("must be at most %d bytes", MaxSegmentLen))
	case org[0] == '.':
		return bad("must not start with '.'")
	}
	for i := 0; i < len(org); i++ {
		c := org[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == '-' || c == '@' || c == '+'
		if !ok {
			return bad(fmt.Sprintf("byte %d is not one of [A-Za-z0-9_.@+-]", i))
		}
	}
	return nil
}

// ParseName checks a full manager name and splits it. Errors wrap ErrInvalidName and name the rule.
func ParseName(name string) (Name, error) {
	return parse("name", name, name)
}

// ParseScope checks a List scope ("", "user/<u>", "node/<n>", "user/<u>/node/<n>") and splits it.
func ParseScope(scope string) (Name, error) {
	if scope == "" {
		return Name{}, nil
	}
	// A scope is valid when a name in it is: check one, with the scope's own text in errors.
	n, err := parse("scope", scope, scope+"/x")
	if err == nil && n.Scope() != scope {
		err = &NameError{Field: "scope", Input: scope, Rule: "must be user/<user>, node/<node> or user/<user>/node/<node>"}
	}
	n.Secret = ""
	return n, err
}

func parse(field, input, name string) (Name, error) {
	bad := func(rule string, cause error) (Name, error) {
		return Name{}, &NameError{Field: field, Input: input, Rule: rule, Err: cause}
	}
	switch {
	case input == "":
		return bad("must not be empty", nil)
	case len(input) > MaxNameLen:
		return bad(fmt.Sprintf("must be at most %d bytes", MaxNameLen), nil)
	case strings.HasPrefix(input, mountPrefix):
		return bad(`must not start with "openhorizon/" (give the name within the org, not a Vault path)`, nil)
	}
	segs := strings.Split(input, "/")
	if slices.Contains(segs, ".") || slices.Contains(segs, "..") {
		return bad(`must not contain "." or ".." segments`, nil)
	}
	if slices.Contains(segs, "") {
		return bad("must not have empty segments (leading, trailing or doubled '/')", nil)
	}
	m, err := protocol.ParseManagerName(name)
	if err != nil {
		rule := err.Error()
		if ve := (*protocol.ValidationError)(nil); errors.As(err, &ve) {
			rule = ve.Rule
		}
		return bad(rule, err)
	}
	return Name{User: m.User, Node: m.Node, Secret: m.Name}, nil
}

// CheckWrite checks what every manager's Put and Create check first: the org and name, then
// the secret itself.
func CheckWrite(org, name string, s Secret) error {
	if _, err := Check(org, name); err != nil {
		return err
	}
	if err := CheckSecret(s); err != nil {
		return fmt.Errorf("secret %q: %w", name, err)
	}
	return nil
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
