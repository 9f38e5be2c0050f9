package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/protocol/constraint"
)

// Files the agent keeps in its state directory, next to the agreement manager's
// (agreements.db, digest.key). Every one is mode 0600 in a 0700 directory.
const (
	registrationFile = "registration.json"
	nodeKeysFile     = "node-keys.json"
)

// Errors of the registration, turned into HTTP codes by the local API.
var (
	// ErrNotRegistered: the node has no registration.
	ErrNotRegistered = errors.New("node is not registered")
	// ErrRegistered: the node is registered already.
	ErrRegistered = errors.New("node is already registered")
	// ErrInvalidRequest: a request to the local API broke a rule; nothing changed.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrAgbotKey: the agbot's signing key is not the one pinned or expected.
	ErrAgbotKey = errors.New("agbot key does not match")
	// ErrAgbot: the agbot refused or could not be reached.
	ErrAgbot = errors.New("agbot")
)

// Property is an anax node policy property.
type Property struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Type  string `json:"type,omitempty"`
}

// NodePolicy is anax's node policy file: {"properties":[{"name":..,"value":..}],"constraints":[..]}.
type NodePolicy struct {
	Properties  []Property `json:"properties"`
	Constraints []string   `json:"constraints"`
}

// ParseNodePolicy reads a node policy strictly: unknown fields, unnamed or duplicate
// properties and constraints that do not parse are refused with the field named.
func ParseNodePolicy(b []byte) (NodePolicy, error) {
	var p NodePolicy
	if len(bytes.TrimSpace(b)) == 0 {
		return p, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return NodePolicy{}, fmt.Errorf("%w: node policy: %v", ErrInvalidRequest, err)
	}
	return p, p.Validate()
}

// Validate checks the policy's rules.
func (p NodePolicy) Validate() error {
	seen := map[string]bool{}
	for i, prop := range p.Properties {
		if prop.Name == "" || len(prop.Name) > 256 {
			return fmt.Errorf("%w: node policy: properties[%d].name: must be 1..256 bytes", ErrInvalidRequest, i)
		}
		if seen[prop.Name] {
			return fmt.Errorf("%w: node policy: properties[%d].name %q: listed twice", ErrInvalidRequest, i, prop.Name)
		}
		seen[prop.Name] = true
		switch prop.Value.(type) {
		case string, float64, bool, nil:
		case json.Number:
		default:
			return fmt.Errorf("%w: node policy: properties[%d] %q: value must be a string, number or boolean", ErrInvalidRequest, i, prop.Name)
		}
	}
	if _, err := constraint.ParseAll(p.Constraints); err != nil {
		return fmt.Errorf("%w: node policy: constraints: %v", ErrInvalidRequest, err)
	}
	return nil
}

// admit returns the agreement manager's node policy check: every constraint must hold over
// the proposed service's built-in properties.
func (p NodePolicy) admit() (func(map[string]any) error, error) {
	if len(p.Constraints) == 0 {
		return nil, nil
	}
	expr, err := constraint.ParseAll(p.Constraints)
	if err != nil {
		return nil, err
	}
	return func(service map[string]any) error {
		if !expr.Eval(service) {
			return fmt.Errorf("constraint %s does not hold", expr.String())
		}
		return nil
	}, nil
}

// Registration is what the node remembers of its registration, across restarts, in
// registration.json (mode 0600). The node token is a credential for the agbot's node routes;
// it never leaves this file but to authenticate to the agbot.
type Registration struct {
	Org     string     `json:"org"`
	Node    string     `json:"node"`
	Token   string     `json:"token"`
	Pattern string     `json:"pattern,omitempty"`
	Policy  NodePolicy `json:"policy"`
	Arch    string     `json:"arch"`

	AgbotURL         string               `json:"agbotUrl"`
	AgbotID          string               `json:"agbotId"`
	AgbotKeys        *protocol.PublicKeys `json:"agbotKeys"`
	AgbotFingerprint string               `json:"agbotFingerprint"`
	NodeFingerprint  string               `json:"nodeFingerprint"`
	RegisteredAt     time.Time            `json:"registeredAt"`
}

// ID is the node's protocol id: "<org>/<node>".
func (r *Registration) ID() string { return r.Org + "/" + r.Node }

// NodeInfo is the registration as the local API shows it: no token.
type NodeInfo struct {
	ID               string     `json:"id"`
	Org              string     `json:"org"`
	Node             string     `json:"node"`
	Pattern          string     `json:"pattern,omitempty"`
	Arch             string     `json:"arch"`
	Policy           NodePolicy `json:"policy"`
	AgbotURL         string     `json:"agbotUrl"`
	AgbotID          string     `json:"agbotId"`
	AgbotFingerprint string     `json:"agbotFingerprint"`
	NodeFingerprint  string     `json:"nodeFingerprint"`
	RegisteredAt     time.Time  `json:"registeredAt"`
}

// Info returns the registration without the token.
func (r *Registration) Info() NodeInfo {
	return NodeInfo{ID: r.ID(), Org: r.Org, Node: r.Node, Pattern: r.Pattern, Arch: r.Arch, Policy: r.Policy,
		AgbotURL: r.AgbotURL, AgbotID: r.AgbotID, AgbotFingerprint: r.AgbotFingerprint,
		NodeFingerprint: r.NodeFingerprint, RegisteredAt: r.RegisteredAt}
}

// validSegment checks an org or node name: one path segment the agbot accepts.
func validSegment(field, v string) error {
	if err := protocol.ValidateID(field, v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if strings.ContainsAny(v, "/:") {
		return fmt.Errorf("%w: %s: must not contain '/' or ':'", ErrInvalidRequest, field)
	}
	return nil
}

// loadRegistration reads the registration, or returns nil when the node is not registered.
// A file readable by others is refused: it holds the node token.
func loadRegistration(dir string) (*Registration, error) {
	path := filepath.Join(dir, registrationFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("registration: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("registration: %s has mode %#o, want 0600 (it holds the node token)", path, st.Mode().Perm())
	}
	var r Registration
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("registration: %s: %w", path, err)
	}
	if r.Org == "" || r.Node == "" || r.AgbotID == "" || r.AgbotKeys == nil {
		return nil, fmt.Errorf("registration: %s is incomplete (org, node, agbotId and agbotKeys are required)", path)
	}
	if err := r.AgbotKeys.Validate(); err != nil {
		return nil, fmt.Errorf("registration: %s: agbotKeys: %w", path, err)
	}
	return &r, nil
}

// saveRegistration writes the registration atomically: a new 0600 file, synced, renamed over
// the old one, and the directory synced.
func saveRegistration(dir string, r *Registration) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, registrationFile), b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// forgetRegistration removes the registration and the node's keys: a later registration
// starts with new keys.
func forgetRegistration(dir string) error {
	var errs []error
	for _, name := range []string{registrationFile, nodeKeysFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return syncDir(dir)
}
