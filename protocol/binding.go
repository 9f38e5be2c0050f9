package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// SecretBinding is the anax secretBinding of a pattern or deployment policy: which stored
// secret each service secret gets.
type SecretBinding struct {
	ServiceOrgid        string `json:"serviceOrgid"`
	ServiceURL          string `json:"serviceUrl"`
	ServiceArch         string `json:"serviceArch"`         // "" or "*": any; else exact
	ServiceVersionRange string `json:"serviceVersionRange"` // anax syntax, see ParseVersionRange
	// EnableNodeLevelSecrets makes the agbot look for node/<node>/<name> (or
	// user/<u>/node/<node>/<name>) first and fall back to the bound name.
	EnableNodeLevelSecrets bool          `json:"enableNodeLevelSecrets,omitempty"`
	Secrets                []BoundSecret `json:"secrets"`
}

// BoundSecret binds one service secret to a secret-manager name. On the wire it is the anax
// one-entry object {"<svcName>": "<mgrName>"}.
type BoundSecret struct {
	ServiceSecret string // the service's secret name (design §3)
	ManagerSecret string // the manager name: name, user/<u>/name, node/<n>/name, ...
}

// MarshalJSON writes {"svcName": "mgrName"}.
func (b BoundSecret) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{b.ServiceSecret: b.ManagerSecret})
}

// UnmarshalJSON reads {"svcName": "mgrName"} and refuses any other number of entries.
func (b *BoundSecret) UnmarshalJSON(data []byte) error {
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return fmt.Errorf("%w: bound secret must be an object, not null", ErrMalformed)
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%w: bound secret must be {\"<service secret>\": \"<manager secret>\"}", ErrMalformed)
	}
	if len(m) != 1 {
		return fmt.Errorf("%w: bound secret must have exactly one entry, has %d", ErrMalformed, len(m))
	}
	for k, v := range m {
		b.ServiceSecret, b.ManagerSecret = k, v
	}
	return nil
}

// VersionRange parses ServiceVersionRange.
func (b *SecretBinding) VersionRange() (VersionRange, error) {
	return ParseVersionRange(b.ServiceVersionRange)
}

// Matches reports whether the binding applies to a service (org, url, arch, version). An
// invalid binding or version matches nothing.
func (b *SecretBinding) Matches(org, url, arch, version string) bool {
	if b.ServiceOrgid != org || b.ServiceURL != url {
		return false
	}
	if b.ServiceArch != "" && b.ServiceArch != "*" && b.ServiceArch != arch {
		return false
	}
	r, err := b.VersionRange()
	if err != nil {
		return false
	}
	v, err := ParseVersion(version)
	return err == nil && r.Contains(v)
}

// ValidateBindings checks a list of secret bindings on its own (the agbot calls it when a
// pattern or policy is stored): field shapes, service and manager names, duplicates.
// field prefixes error paths, e.g. "secretBinding".
func ValidateBindings(field string, bs []SecretBinding) error {
	for i := range bs {
		if err := bs[i].validate(fmt.Sprintf("%s[%d]", field, i)); err != nil {
			return err
		}
	}
	// The same service secret bound twice for overlapping services is ambiguous.
	for i := range bs {
		for j := i + 1; j < len(bs); j++ {
			a, b := &bs[i], &bs[j]
			if a.ServiceOrgid != b.ServiceOrgid || a.ServiceURL != b.ServiceURL || !archOverlap(a.ServiceArch, b.ServiceArch) {
				continue
			}
			ra, _ := a.VersionRange()
			rb, _ := b.VersionRange()
			if !ra.Overlaps(rb) {
				continue
			}
			for _, sa := range a.Secrets {
				for _, sb := range b.Secrets {
					if sa.ServiceSecret == sb.ServiceSecret {
						return invalid(fmt.Sprintf("%s[%d].secrets", field, j),
							"service secret %s is already bound by %s[%d] for an overlapping service", quote(sa.ServiceSecret), field, i)
					}
				}
			}
		}
	}
	return nil
}

func archOverlap(a, b string) bool {
	return a == "" || a == "*" || b == "" || b == "*" || a == b
}

func (b *SecretBinding) validate(field string) error {
	if b.ServiceOrgid == "" {
		return invalid(field+".serviceOrgid", "must not be empty")
	}
	if b.ServiceURL == "" {
		return invalid(field+".serviceUrl", "must not be empty")
	}
	if err := validateArch(field+".serviceArch", b.ServiceArch, true); err != nil {
		return err
	}
	if _, err := b.VersionRange(); err != nil {
		return invalidCause(field+".serviceVersionRange", err)
	}
	if len(b.Secrets) == 0 {
		return invalid(field+".secrets", "must bind at least one secret")
	}
	seen := make(map[string]int, len(b.Secrets))
	for i, s := range b.Secrets {
		f := fmt.Sprintf("%s.secrets[%d]", field, i)
		if err := ValidateSecretName(s.ServiceSecret); err != nil {
			return invalidCause(f, err)
		}
		if j, dup := seen[s.ServiceSecret]; dup {
			return invalid(f, "service secret %s is bound twice (also at secrets[%d])", quote(s.ServiceSecret), j)
		}
		seen[s.ServiceSecret] = i
		if _, err := ParseManagerName(s.ManagerSecret); err != nil {
			return invalidCause(f, err)
		}
	}
	return nil
}

// validateArch: an architecture is a short lower-case word (amd64, arm64, arm, ...); a
// binding may also say "" or "*" for any.
func validateArch(field, arch string, wildcard bool) error {
	if arch == "" || arch == "*" {
		if wildcard {
			return nil
		}
		return invalid(field, "must name an architecture (amd64, arm64, arm, ...)")
	}
	if len(arch) > 32 {
		return invalid(field, "must be at most 32 bytes")
	}
	for i := 0; i < len(arch); i++ {
		c := arch[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return invalid(field, "must be \"*\", empty or an architecture of [a-z0-9_-], byte %d is not", i)
		}
	}
	return nil
}

// Overlaps reports whether two ranges share a version.
func (r VersionRange) Overlaps(o VersionRange) bool {
	// r's lower bound must be below o's upper bound and vice versa.
	below := func(lo Version, loInc bool, hi VersionRange) bool {
		if hi.Unbounded {
			return true
		}
		c := lo.Compare(hi.Max)
		return c < 0 || c == 0 && loInc && hi.MaxInclusive
	}
	return below(r.Min, r.MinInclusive, o) && below(o.Min, o.MinInclusive, r)
}
