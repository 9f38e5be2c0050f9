package exchange

import (
	"fmt"
	"sort"

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
	if len(s.Deployment.Services) == 0 {
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

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
	for i, v := range p.Service.ServiceVersions {
		if _, err := protocol.ParseVersion(v.Version); err != nil {
			return &protocol.ValidationError{Field: fmt.Sprintf("service.serviceVersions[%d].version", i), Rule: err.Error(), Err: err}
		}
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
		for j, v := range s.ServiceVersions {
			if _, err := protocol.ParseVersion(v.Version); err != nil {
				return &protocol.ValidationError{Field: fmt.Sprintf("%s.serviceVersions[%d].version", f, j), Rule: err.Error(), Err: err}
			}
		}
	}
	return ValidateBindings(p.SecretBinding)
}

// ArchMatches reports whether a wanted arch ("", "*" or a name) admits have.
func ArchMatches(want, have string) bool { return want == "" || want == "*" || want == have }

// Usable reports whether a policy, pattern or node of org from may use a service or pattern
// of org owner marked public or not: within its org always, across orgs only if public
// (anax's rule, enforced at publish, registration and matching).
func Usable(from, owner string, public bool) bool { return from == owner || public }
