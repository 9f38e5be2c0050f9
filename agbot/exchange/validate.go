package exchange

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/edge-secrets/anax-agent/protocol"
)

// invalid builds the refusal every rule here returns; it wraps protocol.ErrInvalid.
func invalid(field, rule string, args ...any) error {
	return &protocol.ValidationError{Field: field, Rule: fmt.Sprintf(rule, args...)}
}

func checkID(field, id string) error {
	if err := protocol.ValidateID(field, id); err != nil {
		return err
	}
	return nil
}

// ValidateService checks a service definition before it is stored: identity fields, version
// syntax and every declared secret name (design §3) and format.
func ValidateService(s Service) error {
	for _, f := range []struct{ field, v string }{{"org", s.Org}, {"url", s.URL}, {"arch", s.Arch}} {
		if err := checkID(f.field, f.v); err != nil {
			return err
		}
	}
	if _, err := protocol.ParseVersion(s.Version); err != nil {
		return &protocol.ValidationError{Field: "version", Rule: err.Error(), Err: err}
	}
	if err := validateServiceExtras(s); err != nil {
		return err
	}
	if !s.DeviceDeployable() {
		if len(s.ClusterDeployment) > 0 {
			return nil // cluster-only: stored; the agbot never proposes it (ErrClusterOnly)
		}
		return invalid("deployment.services", "must declare at least one container")
	}
	for cname, c := range s.Deployment.Services {
		if err := checkID(fmt.Sprintf("deployment.services[%q]", cname), cname); err != nil {
			return err
		}
		for name, d := range c.Secrets {
			field := fmt.Sprintf("deployment.services[%q].secrets[%q]", cname, name)
			if err := protocol.ValidateSecretName(name); err != nil {
				return &protocol.ValidationError{Field: field, Rule: err.Error(), Err: err}
			}
			if d.Format != "" && d.Format != "value_only" {
				return invalid(field+".format", "must be empty (JSON key and value) or \"value_only\", not %q", d.Format)
			}
		}
	}
	// The agent's own rules (image, command, environment, user, onUpdate, sizes): a service
	// that every node would decline is refused here, where its publisher sees why.
	ps, err := s.Protocol()
	if err != nil {
		return err
	}
	return ps.Validate()
}

// Report is the outcome of publishing a policy or pattern that was accepted: notes and
// warnings the publisher should read.
type Report struct {
	Notes    []string `json:"notes,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// BindingFor returns the bindings that apply to s merged into service secret name ->
// binding entry. Later bindings win (ValidateBindings refuses real overlaps).
func BindingFor(bindings []protocol.SecretBinding, s Service) map[string]BoundSecret {
	out := map[string]BoundSecret{}
	for i := range bindings {
		b := &bindings[i]
		if !b.Matches(s.Org, s.URL, s.Arch, s.Version) {
			continue
		}
		for _, p := range b.Secrets {
			out[p.ServiceSecret] = BoundSecret{ManagerName: p.ManagerSecret, NodeLevel: b.EnableNodeLevelSecrets}
		}
	}
	return out
}

// BoundSecret is where one service secret comes from.
type BoundSecret struct {
	ManagerName string // org or user level manager name
	NodeLevel   bool   // look for the node-specific variant first
}

// ValidateBindings checks the syntax of a secretBinding list (protocol's rules) and that
// each binds an org or user level name: node-specific values come through
// enableNodeLevelSecrets.
func ValidateBindings(bindings []protocol.SecretBinding) error {
	if err := protocol.ValidateBindings("secretBinding", bindings); err != nil {
		return err
	}
	for i, b := range bindings {
		for j, p := range b.Secrets {
			mn, _ := protocol.ParseManagerName(p.ManagerSecret)
			if mn.NodeSpecific() {
				return invalid(fmt.Sprintf("secretBinding[%d].secrets[%d]", i, j),
					"binds node-specific secret %q: bind the org or user level name and set enableNodeLevelSecrets", p.ManagerSecret)
			}
		}
	}
	return nil
}

// CheckPublish applies the publishing rules of a policy or pattern to the services it deploys:
// a declared secret with no binding is refused (naming it); a bound name the service does
// not declare is a note; a bound manager name missing from the manager is a warning.
// exists reports whether a manager name holds a secret (nil skips that check).
func CheckPublish(bindings []protocol.SecretBinding, services []Service, exists func(mgr string) (bool, error)) (Report, error) {
	var rep Report
	if err := ValidateBindings(bindings); err != nil {
		return rep, err
	}
	used := map[int]bool{}
	for _, s := range services {
		bound := map[string]string{}
		for i := range bindings {
			if !bindings[i].Matches(s.Org, s.URL, s.Arch, s.Version) {
				continue
			}
			used[i] = true
			for _, p := range bindings[i].Secrets {
				bound[p.ServiceSecret] = p.ManagerSecret
			}
		}
		declared := s.DeclaredSecrets()
		names := sortedKeys(declared)
		for _, name := range names {
			if _, ok := bound[name]; !ok {
				return rep, invalid("secretBinding", "service %s secret %q (container %v) has no binding", s.ID(), name, declared[name])
			}
		}
		for _, svc := range sortedKeys(bound) {
			if _, ok := declared[svc]; !ok {
				rep.Notes = append(rep.Notes, fmt.Sprintf("service %s does not declare secret %q: its binding is ignored", s.ID(), svc))
				continue
			}
			if exists == nil {
				continue
			}
			ok, err := exists(bound[svc])
			if err != nil {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("could not check secret %q: %v", bound[svc], err))
			} else if !ok {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("secret %q bound to %s %q is not in the secrets manager yet: agreements wait for it", bound[svc], s.ID(), svc))
			}
		}
	}
	for i, b := range bindings {
		if !used[i] && len(services) > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("secretBinding[%d] (%s/%s) matches no deployed service", i, b.ServiceOrgid, b.ServiceURL))
		}
	}
	return rep, nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// ValidatePolicy checks a deployment policy's own fields (not the services it names).
func ValidatePolicy(p Policy) error {
	if err := checkID("service.name", p.Service.Name); err != nil {
		return err
	}
	if err := checkID("service.org", p.Service.Org); err != nil {
		return err
	}
	if len(p.Service.ServiceVersions) == 0 {
		return invalid("service.serviceVersions", "must name at least one version")
	}
	if err := checkVersions("service.serviceVersions", p.Service.ServiceVersions); err != nil {
		return err
	}
	if err := validateInputBlocks(p.UserInput); err != nil {
		return err
	}
	return ValidateBindings(p.SecretBinding)
}

// ValidatePattern checks a pattern's own fields.
func ValidatePattern(p Pattern) error {
	if len(p.Services) == 0 {
		return invalid("services", "must name at least one service")
	}
	for i, s := range p.Services {
		f := fmt.Sprintf("services[%d]", i)
		if err := checkID(f+".serviceUrl", s.ServiceURL); err != nil {
			return err
		}
		if err := checkID(f+".serviceOrgid", s.ServiceOrgid); err != nil {
			return err
		}
		if len(s.ServiceVersions) == 0 {
			return invalid(f+".serviceVersions", "must name at least one version")
		}
		if err := checkVersions(f+".serviceVersions", s.ServiceVersions); err != nil {
			return err
		}
	}
	if err := validateInputBlocks(p.UserInput); err != nil {
		return err
	}
	return ValidateBindings(p.SecretBinding)
}

// ArchMatches reports whether a wanted arch ("", "*" or a name) admits have.
func ArchMatches(want, have string) bool { return want == "" || want == "*" || want == have }

// Usable reports whether a policy, pattern or node of org from may use a service or pattern
// of org owner marked public or not: within its org always, across orgs only if public
// (anax's rule, enforced at publish, registration and matching).
func Usable(from, owner string, public bool) bool { return from == owner || public }

// sharable values anax accepts ("single" is its old name of singleton).
var sharable = map[string]bool{"": true, "exclusive": true, "single": true, "singleton": true, "multiple": true}

// validateServiceExtras checks sharable, requiredServices and userInput.
func validateServiceExtras(s Service) error {
	if !sharable[s.Sharable] {
		return invalid("sharable", "must be exclusive, singleton or multiple, not %q", s.Sharable)
	}
	for i, r := range s.RequiredServices {
		f := fmt.Sprintf("requiredServices[%d]", i)
		if err := checkID(f+".url", r.URL); err != nil {
			return err
		}
		if err := checkID(f+".org", r.Org); err != nil {
			return err
		}
		vr := r.VersionRange
		if vr == "" {
			vr = r.Version
		}
		if _, err := protocol.ParseVersionRange(vr); err != nil {
			return &protocol.ValidationError{Field: f + ".versionRange", Rule: err.Error(), Err: err}
		}
	}
	seen := map[string]bool{}
	for i, u := range s.UserInput {
		f := fmt.Sprintf("userInput[%d]", i)
		if err := protocol.CheckInputName(f+".name", u.Name); err != nil {
			return err
		}
		if seen[u.Name] {
			return invalid(f+".name", "%s is declared twice", u.Name)
		}
		seen[u.Name] = true
		if _, ok := protocol.InputTypes[u.Type]; !ok {
			return invalid(f+".type", "must be string, int, float, boolean or list of strings, not %q", u.Type)
		}
		if _, _, err := protocol.DefaultEnv(u.Type, u.DefaultValue); err != nil {
			return invalid(f+".defaultValue", "%v", err)
		}
	}
	return nil
}

// validateInputBlocks checks a policy's or pattern's userInput.
func validateInputBlocks(blocks []UserInputBlock) error {
	for i, b := range blocks {
		f := fmt.Sprintf("userInput[%d]", i)
		if err := checkID(f+".serviceUrl", b.ServiceURL); err != nil {
			return err
		}
		if err := checkID(f+".serviceOrgid", b.ServiceOrgid); err != nil {
			return err
		}
		if b.ServiceVersionRange != "" {
			if _, err := protocol.ParseVersionRange(b.ServiceVersionRange); err != nil {
				return &protocol.ValidationError{Field: f + ".serviceVersionRange", Rule: err.Error(), Err: err}
			}
		}
		for j, in := range b.Inputs {
			jf := fmt.Sprintf("%s.inputs[%d]", f, j)
			if err := protocol.CheckInputName(jf+".name", in.Name); err != nil {
				return err
			}
			if _, err := protocol.InputString(in.Value); err != nil {
				return invalid(jf+".value", "%v", err)
			}
		}
	}
	return nil
}

// checkVersions checks each version and refuses deployment_overrides with content: anax
// would change the deployment with it, this agbot does not.
func checkVersions(f string, vs []ServiceVersion) error {
	for i, v := range vs {
		if _, err := protocol.ParseVersion(v.Version); err != nil {
			return &protocol.ValidationError{Field: fmt.Sprintf("%s[%d].version", f, i), Rule: err.Error(), Err: err}
		}
		switch strings.TrimSpace(string(v.DeploymentOverrides)) {
		case "", `""`, "{}", "null":
		default:
			return invalid(fmt.Sprintf("%s[%d].deployment_overrides", f, i),
				"not supported: publish a service version with the deployment you want instead")
		}
	}
	return nil
}
