package engine

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/protocol"
)

func svcWith(url, version string, secrets []string, req ...exchange.RequiredService) exchange.Service {
	decl := map[string]protocol.SecretDecl{}
	for _, s := range secrets {
		decl[s] = protocol.SecretDecl{}
	}
	return exchange.Service{Org: "o", URL: url, Version: version, Arch: "amd64", RequiredServices: req,
		Deployment: exchange.Deployment{Services: map[string]exchange.Container{url + "c": {Image: "i:1", Secrets: decl,
			Raw: map[string]json.RawMessage{"image": json.RawMessage(`"i:1"`)}}}}}
}

// TestRequired: the highest version in range, requirements of requirements first, each once;
// an unmet one is named.
func TestRequired(t *testing.T) {
	w := &world{services: []exchange.Service{
		svcWith("cpu", "1.0.0", nil), svcWith("cpu", "1.2.2", nil), svcWith("cpu", "2.0.0", nil),
		svcWith("gps", "2.0.4", nil, exchange.RequiredService{URL: "cpu", Org: "o", VersionRange: "[1.0.0,2.0.0)", Arch: "amd64"}),
	}}
	top := svcWith("loc", "2.0.7", nil,
		exchange.RequiredService{URL: "gps", Org: "o", Version: "2.0.4", Arch: "amd64"},
		exchange.RequiredService{URL: "cpu", Org: "o", VersionRange: "1.0.0", Arch: "amd64"})
	deps, err := w.required(top, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		got = append(got, d.ID())
	}
	if strings.Join(got, " ") != "cpu_1.2.2_amd64 gps_2.0.4_amd64" {
		t.Fatalf("required = %v, want cpu 1.2.2 (gps's range, first) then gps", got)
	}
	missing := svcWith("x", "1.0.0", nil, exchange.RequiredService{URL: "nope", Org: "o", VersionRange: "1.0.0", Arch: "amd64"})
	if _, err := w.required(missing, "amd64"); err == nil || !strings.Contains(err.Error(), "o/nope") {
		t.Fatalf("err = %v, want the missing requirement named", err)
	}
	other := svcWith("x", "1.0.0", nil, exchange.RequiredService{URL: "cpu", Org: "o", VersionRange: "1.0.0", Arch: "arm64"})
	if _, err := w.required(other, "amd64"); err == nil {
		t.Fatal("a requirement for another arch was met")
	}
}

// TestBoundAcrossRequired: a required service's secrets are bound by the bindings for it; one
// name bound to two manager secrets in one agreement is refused.
func TestBoundAcrossRequired(t *testing.T) {
	bind := func(url, svcName, mgr string) protocol.SecretBinding {
		return protocol.SecretBinding{ServiceOrgid: "o", ServiceURL: url, Secrets: []protocol.BoundSecret{{ServiceSecret: svcName, ManagerSecret: mgr}}}
	}
	d := desire{svc: svcWith("loc", "1.0.0", []string{"a"}), deps: []exchange.Service{svcWith("cpu", "1.0.0", []string{"dep"})},
		bindings: []protocol.SecretBinding{bind("loc", "a", "m1"), bind("cpu", "dep", "m2")}}
	b, err := d.bound()
	if err != nil || b["a"].ManagerName != "m1" || b["dep"].ManagerName != "m2" {
		t.Fatalf("bound = %v, %v", b, err)
	}
	d.deps = []exchange.Service{svcWith("cpu", "1.0.0", []string{"a"})}
	d.bindings = []protocol.SecretBinding{bind("loc", "a", "m1"), bind("cpu", "a", "m2")}
	if _, err := d.bound(); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("err = %v, want the clash on a named", err)
	}
}

// TestNodeAdmits: the node's constraints (anax's compcheck node policy) against a deployment
// policy's properties and the service's built-in ones.
func TestNodeAdmits(t *testing.T) {
	n := exchange.Node{Constraints: []string{"iame2edev == true",
		"NONS==false || NOGPS == false || NOLOC == false || NOPWS == false || NOHELLO == false",
		"openhorizon.service.version != 2.0.6"}}
	s := svcWith("netspeed", "2.3.0", nil)
	for _, tc := range []struct {
		name  string
		props []exchange.Property
		ver   string
		want  bool
	}{
		{"anax's netspeed policy", []exchange.Property{{Name: "iame2edev", Value: "true"}, {Name: "NONS", Value: false}}, "2.3.0", true},
		{"property missing", []exchange.Property{{Name: "NONS", Value: false}}, "2.3.0", false},
		{"service version excluded", []exchange.Property{{Name: "iame2edev", Value: true}, {Name: "NOGPS", Value: false}}, "2.0.6", false},
		{"policy can not forge the version", []exchange.Property{{Name: "iame2edev", Value: true}, {Name: "NOGPS", Value: false},
			{Name: "openhorizon.service.version", Value: "9.9.9"}}, "2.0.6", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.Version = tc.ver
			if got := nodeAdmits(n, exchange.Policy{Properties: tc.props}, s); got != tc.want {
				t.Errorf("nodeAdmits = %v, want %v", got, tc.want)
			}
		})
	}
	if !nodeAdmits(exchange.Node{}, exchange.Policy{}, s) {
		t.Error("a node without constraints must admit")
	}
}
