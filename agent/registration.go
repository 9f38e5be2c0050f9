package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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
type Property = protocol.Property

// NodePolicy is anax's node policy file (exchangecommon.NodePolicy): top-level properties and
// constraints, and the nested deployment and management sections. The deployment policy the
// agent applies is the top level merged with deployment (Effective); management is accepted
// and kept, the agent does no node management.
type NodePolicy struct {
	Label       string          `json:"label,omitempty"`
	Description string          `json:"description,omitempty"`
	Properties  []Property      `json:"properties"`
	Constraints []string        `json:"constraints"`
	Deployment  *ExternalPolicy `json:"deployment,omitempty"`
	Management  *ExternalPolicy `json:"management,omitempty"`
}

// ExternalPolicy is a section of a node policy: properties and constraints.
type ExternalPolicy struct {
	Properties  []Property `json:"properties,omitempty"`
	Constraints []string   `json:"constraints,omitempty"`
}

// ParseNodePolicy reads a node policy strictly: unknown fields (named by their path), unnamed
// or duplicate properties and constraints that do not parse are refused with the field named.
func ParseNodePolicy(b []byte) (NodePolicy, error) {
	var p NodePolicy
	if len(bytes.TrimSpace(b)) == 0 {
		return p, nil
	}
	if err := unknownPolicyField(b); err != nil {
		return NodePolicy{}, fmt.Errorf("%w: node policy: %v", ErrInvalidRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return NodePolicy{}, fmt.Errorf("%w: node policy: %v", ErrInvalidRequest, err)
	}
	return p, p.Validate()
}

// unknownPolicyField names the first field a node policy does not have, with its path.
func unknownPolicyField(b []byte) error {
	var doc map[string]json.RawMessage
	if json.Unmarshal(b, &doc) != nil {
		return nil // the strict decode says why
	}
	top := map[string]bool{"label": true, "description": true, "properties": true, "constraints": true, "deployment": true, "management": true}
	for _, k := range sortedKeys(doc) {
		if !top[k] {
			return fmt.Errorf("field %s: is not a field of a node policy", k)
		}
		if k != "deployment" && k != "management" {
			continue
		}
		var sec map[string]json.RawMessage
		if json.Unmarshal(doc[k], &sec) != nil {
			continue
		}
		for _, sk := range sortedKeys(sec) {
			if sk != "properties" && sk != "constraints" {
				return fmt.Errorf("field %s.%s: is not a field of a node policy section (properties, constraints)", k, sk)
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Validate checks the policy's rules, in each section.
func (p NodePolicy) Validate() error {
	sections := []struct {
		prefix string
		props  []Property
		cons   []string
	}{{"", p.Properties, p.Constraints}}
	if p.Deployment != nil {
		sections = append(sections, struct {
			prefix string
			props  []Property
			cons   []string
		}{"deployment.", p.Deployment.Properties, p.Deployment.Constraints})
	}
	if p.Management != nil {
		sections = append(sections, struct {
			prefix string
			props  []Property
			cons   []string
		}{"management.", p.Management.Properties, p.Management.Constraints})
	}
	for _, sec := range sections {
		if err := validateSection(sec.prefix, sec.props, sec.cons); err != nil {
			return err
		}
	}
	for _, prop := range p.Effective().Properties {
		if prop.Name == PropAllowPrivileged {
			if _, ok := prop.Value.(bool); !ok {
				return fmt.Errorf("%w: node policy: property %s: value must be true or false", ErrInvalidRequest, PropAllowPrivileged)
			}
		}
	}
	return nil
}

func validateSection(prefix string, props []Property, cons []string) error {
	seen := map[string]bool{}
	for i, prop := range props {
		if prop.Name == "" || len(prop.Name) > 256 {
			return fmt.Errorf("%w: node policy: %sproperties[%d].name: must be 1..256 bytes", ErrInvalidRequest, prefix, i)
		}
		if seen[prop.Name] {
			return fmt.Errorf("%w: node policy: %sproperties[%d].name %q: listed twice", ErrInvalidRequest, prefix, i, prop.Name)
		}
		seen[prop.Name] = true
		switch prop.Value.(type) {
		case string, float64, bool, nil:
		case json.Number:
		default:
			return fmt.Errorf("%w: node policy: %sproperties[%d] %q: value must be a string, number or boolean", ErrInvalidRequest, prefix, i, prop.Name)
		}
	}
	if _, err := constraint.ParseAll(nonEmpty(cons)); err != nil {
		return fmt.Errorf("%w: node policy: %sconstraints: %v", ErrInvalidRequest, prefix, err)
	}
	return nil
}

// nonEmpty drops "" constraints (anax's files have [""] for none).
func nonEmpty(cons []string) []string {
	out := make([]string, 0, len(cons))
	for _, c := range cons {
		if strings.TrimSpace(c) != "" {
			out = append(out, c)
		}
	}
	return out
}

// Effective is the deployment policy of the node, as anax merges it: the top-level
// properties with the deployment section's (which win on a name), and the constraints of
// both (all must hold).
func (p NodePolicy) Effective() ExternalPolicy {
	out := ExternalPolicy{Constraints: nonEmpty(p.Constraints)}
	idx := map[string]int{}
	add := func(props []Property) {
		for _, prop := range props {
			if i, ok := idx[prop.Name]; ok {
				out.Properties[i] = prop
				continue
			}
			idx[prop.Name] = len(out.Properties)
			out.Properties = append(out.Properties, prop)
		}
	}
	add(p.Properties)
	if p.Deployment != nil {
		add(p.Deployment.Properties)
		out.Constraints = append(out.Constraints, nonEmpty(p.Deployment.Constraints)...)
	}
	return out
}

// admit returns the agreement manager's node policy check: every constraint of the effective
// deployment policy must hold over the properties of the proposal (the service's built-in
// ones and the deployment policy's).
func (p NodePolicy) admit() (func(map[string]any) error, error) {
	cons := p.Effective().Constraints
	if len(cons) == 0 {
		return nil, nil
	}
	expr, err := constraint.ParseAll(cons)
	if err != nil {
		return nil, err
	}
	return func(props map[string]any) error {
		if !expr.Eval(props) {
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
	// UserInput is the node's user input (hzn register -f): configuration, never a secret.
	UserInput []protocol.InputBlock `json:"userInput,omitempty"`

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
	ID               string                `json:"id"`
	Org              string                `json:"org"`
	Node             string                `json:"node"`
	Pattern          string                `json:"pattern,omitempty"`
	Arch             string                `json:"arch"`
	Policy           NodePolicy            `json:"policy"`
	UserInput        []protocol.InputBlock `json:"userInput,omitempty"`
	AgbotURL         string                `json:"agbotUrl"`
	AgbotID          string                `json:"agbotId"`
	AgbotFingerprint string                `json:"agbotFingerprint"`
	NodeFingerprint  string                `json:"nodeFingerprint"`
	RegisteredAt     time.Time             `json:"registeredAt"`
}

// Info returns the registration without the token.
func (r *Registration) Info() NodeInfo {
	return NodeInfo{ID: r.ID(), Org: r.Org, Node: r.Node, Pattern: r.Pattern, Arch: r.Arch, Policy: r.Policy, UserInput: r.UserInput,
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

// validateUserInput checks the node's user input: service names, version ranges, variable
// names and values anax can turn into environment variables.
func validateUserInput(blocks []protocol.InputBlock) error {
	for i, b := range blocks {
		f := fmt.Sprintf("userInput[%d]", i)
		if b.ServiceOrgid == "" || b.ServiceURL == "" {
			return fmt.Errorf("%w: %s: serviceOrgid and serviceUrl are required", ErrInvalidRequest, f)
		}
		if b.ServiceVersionRange != "" {
			if _, err := protocol.ParseVersionRange(b.ServiceVersionRange); err != nil {
				return fmt.Errorf("%w: %s.serviceVersionRange: %v", ErrInvalidRequest, f, err)
			}
		}
		for j, in := range b.Inputs {
			jf := fmt.Sprintf("%s.inputs[%d]", f, j)
			if err := protocol.CheckInputName(jf+".name", in.Name); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidRequest, err)
			}
			if _, err := protocol.InputString(in.Value); err != nil {
				return fmt.Errorf("%w: %s.value: %v", ErrInvalidRequest, jf, err)
			}
		}
	}
	return nil
}
