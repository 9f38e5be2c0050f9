package protocol

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a service version in anax syntax: `x`, `x.y` or `x.y.z`, decimal, no leading
// zeros; missing parts are zero.
type Version [3]uint32

// ParseVersion parses an anax version string.
func ParseVersion(s string) (Version, error) {
	var v Version
	if s == "" {
		return v, fmt.Errorf("version %s: %w", quote(s), invalid("", "must not be empty"))
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return v, fmt.Errorf("version %s: %w", quote(s), invalid("", "must be x, x.y or x.y.z"))
	}
	for i, p := range parts {
		if p == "" || len(p) > 1 && p[0] == '0' || strings.TrimLeft(p, "0123456789") != "" {
			return v, fmt.Errorf("version %s: %w", quote(s), invalid("", "part %d must be a decimal number without leading zeros", i+1))
		}
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return v, fmt.Errorf("version %s: %w", quote(s), invalid("", "part %d is out of range", i+1))
		}
		v[i] = uint32(n)
	}
	return v, nil
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// Compare returns -1, 0 or +1.
func (v Version) Compare(w Version) int {
	for i := range v {
		switch {
		case v[i] < w[i]:
			return -1
		case v[i] > w[i]:
			return 1
		}
	}
	return 0
}

// VersionRange is an anax serviceVersionRange: `1.2.3` means [1.2.3,INFINITY); otherwise
// `[` or `(`, a version, `,`, a version or INFINITY, `]` or `)`. The empty string means
// every version.
type VersionRange struct {
	Min          Version
	MinInclusive bool
	Max          Version
	MaxInclusive bool
	Unbounded    bool // no upper limit (INFINITY)
}

// AllVersions is the range the empty string stands for.
var AllVersions = VersionRange{MinInclusive: true, Unbounded: true}

// ParseVersionRange parses an anax version range. Errors wrap ErrInvalid and say the rule.
func ParseVersionRange(s string) (VersionRange, error) {
	bad := func(rule string, args ...any) (VersionRange, error) {
		return VersionRange{}, fmt.Errorf("version range %s: %w", quote(s), invalid("", rule, args...))
	}
	if s == "" {
		return AllVersions, nil
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return bad("must not contain whitespace")
	}
	if !strings.ContainsAny(s, "[](),") {
		v, err := ParseVersion(s)
		if err != nil {
			return bad("must be a version (at least) or an interval like [1.0.0,2.0.0)")
		}
		return VersionRange{Min: v, MinInclusive: true, Unbounded: true}, nil
	}
	if s[0] != '[' && s[0] != '(' {
		return bad("must start with '[' or '('")
	}
	if last := s[len(s)-1]; last != ']' && last != ')' {
		return bad("must end with ']' or ')'")
	}
	if len(s) < 5 {
		return bad("is too short for an interval like [1,2)")
	}
	lo, hi, ok := strings.Cut(s[1:len(s)-1], ",")
	if !ok || strings.Contains(hi, ",") {
		return bad("must hold exactly two versions separated by ','")
	}
	r := VersionRange{MinInclusive: s[0] == '[', MaxInclusive: s[len(s)-1] == ']'}
	var err error
	if r.Min, err = ParseVersion(lo); err != nil {
		return bad("lower bound is not a version")
	}
	if hi == "INFINITY" {
		r.Unbounded, r.MaxInclusive = true, false
		return r, nil
	}
	if r.Max, err = ParseVersion(hi); err != nil {
		return bad("upper bound is not a version or INFINITY")
	}
	switch c := r.Min.Compare(r.Max); {
	case c > 0:
		return bad("lower bound is above the upper bound")
	case c == 0 && !(r.MinInclusive && r.MaxInclusive):
		return bad("is empty")
	}
	return r, nil
}

// Contains reports whether v lies in the range.
func (r VersionRange) Contains(v Version) bool {
	c := v.Compare(r.Min)
	if c < 0 || c == 0 && !r.MinInclusive {
		return false
	}
	if r.Unbounded {
		return true
	}
	c = v.Compare(r.Max)
	return c < 0 || c == 0 && r.MaxInclusive
}

func (r VersionRange) String() string {
	lo, hi := "(", ")"
	if r.MinInclusive {
		lo = "["
	}
	if r.MaxInclusive {
		hi = "]"
	}
	max := "INFINITY"
	if !r.Unbounded {
		max = r.Max.String()
	}
	return lo + r.Min.String() + "," + max + hi
}
