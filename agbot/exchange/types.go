package exchange

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/edge-secrets/anax-agent/protocol"
)

// User is an org user. PasswordHash never leaves the agbot: the API shows UserView.
type User struct {
	Org          string `json:"org"`
	Name         string `json:"username"`
	Admin        bool   `json:"admin"`
	PasswordHash string `json:"passwordHash"`
	LastUpdated  string `json:"lastUpdated,omitempty"`
}

// UserView is a user as the API shows it.
type UserView struct {
	Org         string `json:"org"`
	Name        string `json:"username"`
	Admin       bool   `json:"admin"`
	LastUpdated string `json:"lastUpdated,omitempty"`
}

// View strips the password hash.
func (u User) View() UserView {
	return UserView{Org: u.Org, Name: u.Name, Admin: u.Admin, LastUpdated: u.LastUpdated}
}

// Property is an anax node or policy property.
type Property struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
	Type  string `json:"type,omitempty"`
}

// Node is an edge node. TokenHash never leaves the agbot: the API shows NodeView.
type Node struct {
	Org          string               `json:"org"`
	ID           string               `json:"id"`
	Owner        string               `json:"owner"` // user name in Org
	TokenHash    string               `json:"tokenHash"`
	Pattern      string               `json:"pattern,omitempty"` // "org/pattern" or "pattern" (same org)
	Arch         string               `json:"arch,omitempty"`
	Properties   []Property           `json:"properties,omitempty"`
	PublicKeys   *protocol.PublicKeys `json:"publicKeys,omitempty"`
	Registered   bool                 `json:"registered"`
	LastUpdated  string               `json:"lastUpdated,omitempty"`
	LastHeartbit string               `json:"lastHeartbeat,omitempty"`
	// ReplacedKeys are the keys the owner or an admin replaced: the agbot still accepts
	// the old node's answers to the cancels sealed to them, and nothing else.
	ReplacedKeys *protocol.PublicKeys `json:"replacedKeys,omitempty"`
}

// NodeView is a node as the API shows it.
type NodeView struct {
	Org          string               `json:"org"`
	ID           string               `json:"id"`
	Owner        string               `json:"owner"`
	Pattern      string               `json:"pattern,omitempty"`
	Arch         string               `json:"arch,omitempty"`
	Properties   []Property           `json:"properties,omitempty"`
	PublicKeys   *protocol.PublicKeys `json:"publicKeys,omitempty"`
	Registered   bool                 `json:"registered"`
	LastUpdated  string               `json:"lastUpdated,omitempty"`
	LastHeartbit string               `json:"lastHeartbeat,omitempty"`
}

// View strips the token hash.
func (n Node) View() NodeView {
	return NodeView{Org: n.Org, ID: n.ID, Owner: n.Owner, Pattern: n.Pattern, Arch: n.Arch,
		Properties: n.Properties, PublicKeys: n.PublicKeys, Registered: n.Registered,
		LastUpdated: n.LastUpdated, LastHeartbit: n.LastHeartbit}
}

// PatternRef splits the node's pattern into org and name; a bare name is in the node's org.
func (n Node) PatternRef() (org, name string) {
	if n.Pattern == "" {
		return "", ""
	}
	if o, p, ok := strings.Cut(n.Pattern, "/"); ok {
		return o, p
	}
	return n.Org, n.Pattern
}

// Container is one container of a deployment. Only the fields the agbot reasons about are
// typed; every other field of the anax deployment (image, ports, binds, user, ...) is kept
// as given and passed on to the agent.
type Container struct {
	Image   string
	Secrets map[string]protocol.SecretDecl
	Raw     map[string]json.RawMessage // every field, as given
}

// UnmarshalJSON keeps all fields and types image and secrets.
func (c *Container) UnmarshalJSON(b []byte) error {
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	c.Raw = raw
	c.Image, c.Secrets = "", nil
	if v, ok := raw["image"]; ok {
		if err := json.Unmarshal(v, &c.Image); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	if v, ok := raw["secrets"]; ok {
		if err := strictUnmarshal(v, &c.Secrets); err != nil {
			return fmt.Errorf("secrets: %w", err)
		}
	}
	return nil
}

// MarshalJSON writes every field back, with secrets as typed.
func (c Container) MarshalJSON() ([]byte, error) {
	out := make(map[string]json.RawMessage, len(c.Raw)+2)
	for k, v := range c.Raw {
		out[k] = v
	}
	if c.Image != "" {
		b, _ := json.Marshal(c.Image)
		out["image"] = b
	}
	delete(out, "secrets")
	if len(c.Secrets) > 0 {
		b, err := json.Marshal(c.Secrets)
		if err != nil {
			return nil, err
		}
		out["secrets"] = b
	}
	return json.Marshal(out)
}

// Deployment is anax's deployment: containers by name. The exchange stores it as a JSON
// string, hzn files as an object; both are accepted.
type Deployment struct {
	Services map[string]Container `json:"services"`
}

// UnmarshalJSON accepts an object or a string holding one.
func (d *Deployment) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*d = Deployment{}
			return nil
		}
		b = []byte(s)
	}
	type plain Deployment
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*d = Deployment(p)
	return nil
}

// Service is an anax service definition.
type Service struct {
	Org              string            `json:"org"`
	Label            string            `json:"label,omitempty"`
	Description      string            `json:"description,omitempty"`
	Public           bool              `json:"public"`
	Documentation    string            `json:"documentation,omitempty"`
	URL              string            `json:"url"`
	Version          string            `json:"version"`
	Arch             string            `json:"arch"`
	Sharable         string            `json:"sharable,omitempty"`
	RequiredServices []json.RawMessage `json:"requiredServices,omitempty"`
	UserInput        []json.RawMessage `json:"userInput,omitempty"`
	Deployment       Deployment        `json:"deployment"`
	Owner            string            `json:"owner,omitempty"`
	LastUpdated      string            `json:"lastUpdated,omitempty"`
}

// ID is the exchange id `<url>_<version>_<arch>`.
func (s Service) ID() string { return ServiceID(s.URL, s.Version, s.Arch) }

// ServiceID builds the exchange id of a service.
func ServiceID(url, version, arch string) string { return url + "_" + version + "_" + arch }

// DeclaredSecrets lists the service's secret names, sorted, with every container that
// declares each.
func (s Service) DeclaredSecrets() map[string][]string {
	out := map[string][]string{}
	for cname, c := range s.Deployment.Services {
		for name := range c.Secrets {
			out[name] = append(out[name], cname)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}

// ServiceVersion is one entry of serviceVersions.
type ServiceVersion struct {
	Version       string          `json:"version"`
	Priority      json.RawMessage `json:"priority,omitempty"`
	UpgradePolicy json.RawMessage `json:"upgradePolicy,omitempty"`
}

// PolicyService is the service a deployment policy deploys.
type PolicyService struct {
	Name            string           `json:"name"` // the service url
	Org             string           `json:"org"`
	Arch            string           `json:"arch"` // "" or "*": any
	ServiceVersions []ServiceVersion `json:"serviceVersions"`
	NodeHealth      json.RawMessage  `json:"nodeHealth,omitempty"`
}

// Policy is an anax deployment (business) policy.
type Policy struct {
	Org           string                   `json:"org,omitempty"`
	Name          string                   `json:"name,omitempty"`
	Label         string                   `json:"label,omitempty"`
	Description   string                   `json:"description,omitempty"`
	Service       PolicyService            `json:"service"`
	Properties    []Property               `json:"properties,omitempty"`
	Constraints   []string                 `json:"constraints,omitempty"`
	UserInput     []json.RawMessage        `json:"userInput,omitempty"`
	SecretBinding []protocol.SecretBinding `json:"secretBinding,omitempty"`
	Owner         string                   `json:"owner,omitempty"`
	LastUpdated   string                   `json:"lastUpdated,omitempty"`
}

// PatternService is one service of a pattern.
type PatternService struct {
	ServiceURL      string           `json:"serviceUrl"`
	ServiceOrgid    string           `json:"serviceOrgid"`
	ServiceArch     string           `json:"serviceArch"`
	ServiceVersions []ServiceVersion `json:"serviceVersions"`
}

// Pattern is an anax pattern.
type Pattern struct {
	Org           string                   `json:"org,omitempty"`
	Name          string                   `json:"name,omitempty"`
	Label         string                   `json:"label,omitempty"`
	Description   string                   `json:"description,omitempty"`
	Public        bool                     `json:"public"`
	Services      []PatternService         `json:"services"`
	UserInput     []json.RawMessage        `json:"userInput,omitempty"`
	SecretBinding []protocol.SecretBinding `json:"secretBinding,omitempty"`
	Owner         string                   `json:"owner,omitempty"`
	LastUpdated   string                   `json:"lastUpdated,omitempty"`
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Protocol converts the service into what a proposal carries. Fields of the deployment the
// agent does not run (ports, binds, ...) stay in the exchange.
func (s Service) Protocol() (protocol.Service, error) {
	out := protocol.Service{Org: s.Org, URL: s.URL, Version: s.Version, Arch: s.Arch,
		Deployment: protocol.Deployment{Services: map[string]protocol.Container{}}}
	for name, c := range s.Deployment.Services {
		pc := protocol.Container{Image: c.Image, Secrets: c.Secrets}
		for field, dst := range map[string]any{"command": &pc.Command, "environment": &pc.Environment, "user": &pc.User,
			"cap_add": &pc.CapAdd, "max_memory_mb": &pc.MaxMemoryMB} {
			if v, ok := c.Raw[field]; ok {
				if err := json.Unmarshal(v, dst); err != nil {
					return out, fmt.Errorf("deployment.services[%q].%s: %w", name, field, err)
				}
			}
		}
		out.Deployment.Services[name] = pc
	}
	return out, nil
}
