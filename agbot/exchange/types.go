package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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
type Property = protocol.Property

// Node is an edge node. TokenHash never leaves the agbot: the API shows NodeView.
type Node struct {
	Org          string               `json:"org"`
	ID           string               `json:"id"`
	Owner        string               `json:"owner"` // user name in Org
	TokenHash    string               `json:"tokenHash"`
	Pattern      string               `json:"pattern,omitempty"` // "org/pattern" or "pattern" (same org)
	Arch         string               `json:"arch,omitempty"`
	Properties   []Property           `json:"properties,omitempty"`
	Constraints  []string             `json:"constraints,omitempty"` // the node policy's, checked before proposing
	PublicKeys   *protocol.PublicKeys `json:"publicKeys,omitempty"`
	Registered   bool                 `json:"registered"`
	LastUpdated  string               `json:"lastUpdated,omitempty"`
	LastHeartbit string               `json:"lastHeartbeat,omitempty"`
	// ReplacedKeys are the keys the owner or an admin replaced: the agbot still accepts
	// the old node's answers to the cancels sealed to them, and nothing else.
	ReplacedKeys *protocol.PublicKeys `json:"replacedKeys,omitempty"`
	// SecretsAtCreation holds the version of every org-level node-specific secret
	// (node/<id>/...) that existed when this node record was created. Those versions were
	// written for an earlier node of that name, or before anyone owned it: a node owned by a
	// user never gets them (access.Deliver). Not shown by the API.
	SecretsAtCreation map[string]int64 `json:"secretsAtCreation,omitempty"`
}

// NodeAccess is the part of a node record that decides which secrets the node may be
// delivered: whose node it is and which node-specific versions predate it. It names its
// fields as Node does, so the store can decode a stored Node into it (store.Part) without
// decoding the node's keys, which are most of the record: an update's pass reads it for
// every affected node.
type NodeAccess struct {
	Org               string           `json:"org"`
	ID                string           `json:"id"`
	Owner             string           `json:"owner"`
	SecretsAtCreation map[string]int64 `json:"secretsAtCreation,omitempty"`
}

// Access is n's NodeAccess.
func (n Node) Access() NodeAccess {
	return NodeAccess{Org: n.Org, ID: n.ID, Owner: n.Owner, SecretsAtCreation: n.SecretsAtCreation}
}

// NodeView is a node as the API shows it.
type NodeView struct {
	Org          string               `json:"org"`
	ID           string               `json:"id"`
	Owner        string               `json:"owner"`
	Pattern      string               `json:"pattern,omitempty"`
	Arch         string               `json:"arch,omitempty"`
	Properties   []Property           `json:"properties,omitempty"`
	Constraints  []string             `json:"constraints,omitempty"`
	PublicKeys   *protocol.PublicKeys `json:"publicKeys,omitempty"`
	Registered   bool                 `json:"registered"`
	LastUpdated  string               `json:"lastUpdated,omitempty"`
	LastHeartbit string               `json:"lastHeartbeat,omitempty"`
}

// View strips the token hash.
func (n Node) View() NodeView {
	return NodeView{Org: n.Org, ID: n.ID, Owner: n.Owner, Pattern: n.Pattern, Arch: n.Arch,
		Properties: n.Properties, Constraints: n.Constraints, PublicKeys: n.PublicKeys, Registered: n.Registered,
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

// Service is an anax service definition (exchangecommon.ServiceDefinition): every field anax
// accepts. MatchHardware, ClusterDeployment and the signatures are kept as given; the agent
// runs only Deployment (a service with only a ClusterDeployment is for clusters, see
// DeviceDeployable).
type Service struct {
	Org                        string            `json:"org"`
	Label                      string            `json:"label,omitempty"`
	Description                string            `json:"description,omitempty"`
	Public                     bool              `json:"public"`
	Documentation              string            `json:"documentation,omitempty"`
	URL                        string            `json:"url"`
	Version                    string            `json:"version"`
	Arch                       string            `json:"arch"`
	Sharable                   string            `json:"sharable,omitempty"`
	MatchHardware              json.RawMessage   `json:"matchHardware,omitempty"`
	RequiredServices           []RequiredService `json:"requiredServices,omitempty"`
	UserInput                  []UserInputDecl   `json:"userInput,omitempty"`
	Deployment                 Deployment        `json:"deployment"`
	DeploymentSignature        string            `json:"deploymentSignature,omitempty"`
	ClusterDeployment          json.RawMessage   `json:"clusterDeployment,omitempty"`
	ClusterDeploymentSignature string            `json:"clusterDeploymentSignature,omitempty"`
	Owner                      string            `json:"owner,omitempty"`
	LastUpdated                string            `json:"lastUpdated,omitempty"`
}

// RequiredService is a service this one depends on (exchangecommon.ServiceDependency):
// versionRange is anax's field, version its older spelling.
type RequiredService struct {
	URL          string `json:"url"`
	Org          string `json:"org"`
	Version      string `json:"version,omitempty"`
	VersionRange string `json:"versionRange,omitempty"`
	Arch         string `json:"arch"`
}

// UserInputDecl is a variable a service takes from user input (exchangecommon.UserInput).
// Type is "string" (also ""), "int", "float", "boolean" (or "bool") or "list of strings".
type UserInputDecl struct {
	Name         string `json:"name"`
	Label        string `json:"label"`
	Type         string `json:"type"`
	DefaultValue any    `json:"defaultValue,omitempty"`
}

// UserInputBlock sets variables of the services a policy or pattern names (anax's
// policy.UserInput).
type UserInputBlock = protocol.InputBlock

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

// ServiceVersion is one entry of serviceVersions (businesspolicy.WorkloadChoice; patterns add
// the deployment_overrides fields). The agbot uses Version; the rest is kept as given, but
// a non-empty deployment_overrides is refused (CheckVersions): the agent does not apply it.
type ServiceVersion struct {
	Version             string          `json:"version"`
	Priority            *Priority       `json:"priority,omitempty"`
	UpgradePolicy       *UpgradePolicy  `json:"upgradePolicy,omitempty"`
	DeploymentOverrides json.RawMessage `json:"deployment_overrides,omitempty"` // "" or {} only

	DeploymentOverridesSignature string `json:"deployment_overrides_signature,omitempty"`
}

// Priority is anax's workload priority (rollback settings).
type Priority struct {
	PriorityValue     int `json:"priority_value,omitempty"`
	Retries           int `json:"retries,omitempty"`
	RetryDurationS    int `json:"retry_durations,omitempty"`
	VerifiedDurationS int `json:"verified_durations,omitempty"`
}

// UpgradePolicy is anax's upgrade policy.
type UpgradePolicy struct {
	Lifecycle string `json:"lifecycle,omitempty"`
	Time      string `json:"time,omitempty"`
}

// NodeHealth is anax's node health policy, in seconds.
type NodeHealth struct {
	MissingHBInterval    int `json:"missing_heartbeat_interval,omitempty"`
	CheckAgreementStatus int `json:"check_agreement_status,omitempty"`
}

// DataVerification is anax's (deprecated) data verification of a pattern's service.
type DataVerification struct {
	Enabled   bool   `json:"enabled,omitempty"`
	URL       string `json:"URL,omitempty"`
	User      string `json:"user,omitempty"`
	Password  string `json:"password,omitempty"`
	Interval  int    `json:"interval,omitempty"`
	CheckRate int    `json:"check_rate,omitempty"`
	Metering  any    `json:"metering,omitempty"`
}

// PolicyService is the service a deployment policy deploys.
type PolicyService struct {
	Name             string           `json:"name"` // the service url
	Org              string           `json:"org"`
	Arch             string           `json:"arch"` // "" or "*": any
	ClusterNamespace string           `json:"clusterNamespace,omitempty"`
	ServiceVersions  []ServiceVersion `json:"serviceVersions"`
	NodeHealth       *NodeHealth      `json:"nodeHealth,omitempty"`
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
	UserInput     []UserInputBlock         `json:"userInput,omitempty"`
	SecretBinding []protocol.SecretBinding `json:"secretBinding,omitempty"`
	Owner         string                   `json:"owner,omitempty"`
	Created       string                   `json:"created,omitempty"`
	LastUpdated   string                   `json:"lastUpdated,omitempty"`
}

// PatternService is one service of a pattern.
type PatternService struct {
	ServiceURL       string            `json:"serviceUrl"`
	ServiceOrgid     string            `json:"serviceOrgid"`
	ServiceArch      string            `json:"serviceArch"`
	AgreementLess    bool              `json:"agreementLess,omitempty"`
	ServiceVersions  []ServiceVersion  `json:"serviceVersions"`
	DataVerification *DataVerification `json:"dataVerification,omitempty"`
	NodeHealth       *NodeHealth       `json:"nodeHealth,omitempty"`
}

// AgreementProtocol is an entry of a pattern's agreementProtocols.
type AgreementProtocol struct {
	Name            string `json:"name"`
	ProtocolVersion int    `json:"protocolVersion,omitempty"`
	Blockchains     any    `json:"blockchains,omitempty"`
}

// Pattern is an anax pattern.
type Pattern struct {
	Org                string                   `json:"org,omitempty"`
	Name               string                   `json:"name,omitempty"`
	Label              string                   `json:"label,omitempty"`
	Description        string                   `json:"description,omitempty"`
	Public             bool                     `json:"public"`
	Services           []PatternService         `json:"services"`
	AgreementProtocols []AgreementProtocol      `json:"agreementProtocols,omitempty"`
	UserInput          []UserInputBlock         `json:"userInput,omitempty"`
	SecretBinding      []protocol.SecretBinding `json:"secretBinding,omitempty"`
	Owner              string                   `json:"owner,omitempty"`
	LastUpdated        string                   `json:"lastUpdated,omitempty"`
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// DeviceDeployable reports whether the service has a deployment a device node runs: a service
// with only a clusterDeployment is for Kubernetes clusters.
func (s Service) DeviceDeployable() bool { return len(s.Deployment.Services) > 0 }

// ErrClusterOnly: the service has a clusterDeployment and no deployment; this agent runs
// device deployments only.
var ErrClusterOnly = errors.New("service has only a clusterDeployment: this agent runs device deployments (deployment) only")

// unsupportedDeployment are fields of anax's deployment the agent refuses, with the reason.
var unsupportedDeployment = map[string]string{
	"pid":               "sharing the host's or another container's process namespace is not supported",
	"ipc":               "sharing an IPC namespace is not supported",
	"sysctls":           "services do not set kernel parameters on this agent",
	"security_opt":      "the agent sets the security options (no-new-privileges) itself",
	"network_isolation": "network isolation is not supported",
}

// Protocol converts the service into what a proposal carries: each container's fields decoded
// strictly into protocol.Container (anax's names), unsupported ones refused with the reason.
func (s Service) Protocol() (protocol.Service, error) {
	out := protocol.Service{Org: s.Org, URL: s.URL, Version: s.Version, Arch: s.Arch,
		Deployment: protocol.Deployment{Services: map[string]protocol.Container{}}}
	if !s.DeviceDeployable() && len(s.ClusterDeployment) > 0 {
		return out, fmt.Errorf("service %s: %w", s.ID(), ErrClusterOnly)
	}
	for _, name := range sortedKeys(s.Deployment.Services) {
		c := s.Deployment.Services[name]
		f := fmt.Sprintf("deployment.services[%q]", name)
		for _, k := range sortedKeys(c.Raw) {
			if why, ok := unsupportedDeployment[k]; ok {
				return out, invalid(f+"."+k, "not supported: %s", why)
			}
			if !containerFields[k] {
				return out, invalid(f+"."+k, "is not a field of anax's deployment")
			}
		}
		b, err := json.Marshal(c)
		if err != nil {
			return out, fmt.Errorf("%s: %w", f, err)
		}
		var pc protocol.Container
		if err := strictUnmarshal(b, &pc); err != nil {
			return out, invalid(f, "%s", describeJSON(err))
		}
		out.Deployment.Services[name] = pc
	}
	return out, nil
}

// containerFields are the JSON names of protocol.Container: anax's deployment fields.
var containerFields = jsonNames(reflect.TypeOf(protocol.Container{}))

func jsonNames(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" {
			out[name] = true
		}
	}
	return out
}

// describeJSON names a decoding problem without echoing input.
func describeJSON(err error) string {
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("field %s: JSON %s where %s is expected", typ.Field, typ.Value, typ.Type)
	}
	if strings.HasPrefix(err.Error(), "json: unknown field") {
		return err.Error()
	}
	return "does not have the shape of anax's deployment"
}

// ProtocolFor is Protocol with the service's variables resolved from the policy's or
// pattern's userInput (first matching block wins per variable, as anax finds one block) over
// the service's defaults. A variable with neither stays unset: the node's input must give it.
func (s Service) ProtocolFor(inputs []UserInputBlock) (protocol.Service, error) {
	out, err := s.Protocol()
	if err != nil {
		return out, err
	}
	var block *UserInputBlock
	for i := range inputs {
		if inputs[i].Matches(s.Org, s.URL, s.Arch, s.Version) {
			block = &inputs[i]
			break
		}
	}
	for i, d := range s.UserInput {
		v := protocol.InputVar{Name: d.Name, Type: d.Type}
		env, ok, err := protocol.DefaultEnv(d.Type, d.DefaultValue)
		if err != nil {
			return out, invalid(fmt.Sprintf("userInput[%d].defaultValue", i), "%v", err)
		}
		v.Value, v.Set = env, ok
		if block != nil {
			for _, in := range block.Inputs {
				if in.Name != d.Name {
					continue
				}
				env, err := protocol.InputEnv(d.Type, in.Value)
				if err != nil {
					return out, invalid("userInput", "service %s variable %s: %v", s.ID(), d.Name, err)
				}
				v.Value, v.Set = env, true
			}
		}
		out.UserInput = append(out.UserInput, v)
	}
	return out, nil
}
