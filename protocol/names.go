package protocol

import (
	"errors"
	"fmt"
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

func (e *NameError) Unwrap() error { return ErrInvalidSecretName }

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
