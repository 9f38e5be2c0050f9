package engine

import (
	"fmt"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/protocol/constraint"
)

// maxRequiredDepth bounds how deep requiredServices nest.
const maxRequiredDepth = 8

// required resolves s's requiredServices for a node of arch, as anax does: for each, the
// highest published version in its range (versionRange, or version as the lowest), of the
// node's arch; their own requirements first (each service once). A requirement nothing
// satisfies is an error naming it: the agreement is held with it.
func (w *world) required(s exchange.Service, arch string) ([]exchange.Service, error) {
	var out []exchange.Service
	seen := map[string]bool{s.Org + "/" + s.URL: true}
	var visit func(s exchange.Service, depth int) error
	visit = func(s exchange.Service, depth int) error {
		if depth >= maxRequiredDepth {
			return fmt.Errorf("requiredServices of %s nest deeper than %d", s.ID(), maxRequiredDepth)
		}
		for _, r := range s.RequiredServices {
			key := r.Org + "/" + r.URL
			if seen[key] {
				continue // needed twice, or a cycle: run once
			}
			vr := r.VersionRange
			if vr == "" {
				vr = r.Version
			}
			rng, err := protocol.ParseVersionRange(vr)
			if err != nil {
				return fmt.Errorf("required service %s of %s: %w", key, s.ID(), err)
			}
			if !exchange.ArchMatches(r.Arch, arch) {
				return fmt.Errorf("required service %s of %s is for arch %q, the node is %q", key, s.ID(), r.Arch, arch)
			}
			dep, ok := w.bestIn(r.Org, r.URL, arch, rng)
			if !ok {
				return fmt.Errorf("required service %s %s (%s) of %s is not published", key, vr, arch, s.ID())
			}
			if !dep.DeviceDeployable() {
				return fmt.Errorf("required service %s: %w", dep.ID(), exchange.ErrClusterOnly)
			}
			seen[key] = true
			if err := visit(dep, depth+1); err != nil {
				return err
			}
			out = append(out, dep)
		}
		return nil
	}
	return out, visit(s, 0)
}

// bestIn is the highest published version of org/url for arch within rng.
func (w *world) bestIn(org, url, arch string, rng protocol.VersionRange) (exchange.Service, bool) {
	var out exchange.Service
	var outV protocol.Version
	found := false
	for _, s := range w.services {
		if s.Org != org || s.URL != url || s.Arch != arch {
			continue
		}
		v, err := protocol.ParseVersion(s.Version)
		if err != nil || !rng.Contains(v) {
			continue
		}
		if !found || v.Compare(outV) > 0 {
			out, outV, found = s, v, true
		}
	}
	return out, found
}

// services are the desire's services: the required ones, then its own.
func (d desire) services() []exchange.Service {
	return append(append([]exchange.Service(nil), d.deps...), d.svc)
}

// bound maps every secret the desire's services declare to its binding; a secret none binds
// gets an empty entry (held: "has no binding"). Two services of the agreement declaring one
// name bound to different manager secrets is an error.
func (d desire) bound() (map[string]exchange.BoundSecret, error) {
	out := map[string]exchange.BoundSecret{}
	for _, s := range d.services() {
		b := exchange.BindingFor(d.bindings, s)
		for name := range s.DeclaredSecrets() {
			got, ok := b[name]
			if prev, seen := out[name]; seen && ok && prev.ManagerName != "" && prev != got {
				return nil, fmt.Errorf("secret %q is bound to %q and, for required service %s, to %q: one agreement holds one value per name",
					name, prev.ManagerName, s.ID(), got.ManagerName)
			}
			if ok || out[name].ManagerName == "" {
				out[name] = got
			}
		}
	}
	return out, nil
}

// proposal is the service a proposal carries: the desire's service with its user input, and
// its required services with theirs, and the bindings that apply to any of them.
func (d desire) proposal() (protocol.Service, []protocol.SecretBinding, error) {
	if d.err != nil {
		return protocol.Service{}, nil, d.err
	}
	svc, err := d.svc.ProtocolFor(d.inputs)
	if err != nil {
		return svc, nil, err
	}
	for _, dep := range d.deps {
		ps, err := dep.ProtocolFor(d.inputs)
		if err != nil {
			return svc, nil, fmt.Errorf("required service %s: %w", dep.ID(), err)
		}
		svc.RequiredServices = append(svc.RequiredServices, ps)
	}
	return svc, d.appliedBindings(), nil
}

// appliedBindings are the bindings that apply to the desire's services, each keeping only the
// secrets a service declares: a binding publish reported as ignored must not reach (and make
// invalid) the proposal.
func (d desire) appliedBindings() []protocol.SecretBinding {
	var applied []protocol.SecretBinding
	for _, b := range d.bindings {
		declared := map[string]bool{}
		for _, s := range d.services() {
			if b.Matches(s.Org, s.URL, s.Arch, s.Version) {
				for name := range s.DeclaredSecrets() {
					declared[name] = true
				}
			}
		}
		if len(declared) == 0 {
			continue
		}
		kept := b
		kept.Secrets = nil
		for _, p := range b.Secrets {
			if declared[p.ServiceSecret] {
				kept.Secrets = append(kept.Secrets, p)
			}
		}
		if len(kept.Secrets) > 0 {
			applied = append(applied, kept)
		}
	}
	return applied
}

// nodeAdmits checks the node's constraints against the deployment policy's properties and the
// service's built-in ones, as anax's agbot matches both ways before it proposes. The node
// checks them again when the proposal arrives.
func nodeAdmits(n exchange.Node, p exchange.Policy, s exchange.Service) bool {
	if len(n.Constraints) == 0 {
		return true
	}
	expr, err := constraint.ParseAll(n.Constraints)
	if err != nil {
		return false
	}
	props := map[string]any{}
	for _, prop := range p.Properties {
		props[prop.Name] = prop.Value
	}
	for k, v := range map[string]any{"openhorizon.service.url": s.URL, "openhorizon.service.name": s.URL,
		"openhorizon.service.org": s.Org, "openhorizon.service.version": s.Version, "openhorizon.service.arch": s.Arch} {
		props[k] = v
	}
	return expr.Eval(props)
}
