package agreement

import (
	"errors"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// The platform variables and the user input reach every container of the agreement, and the
// node's input wins over the agbot's; both survive a restart of the agent (kept in the record).
func TestProposeSetsPlatformAndUserInput(t *testing.T) {
	nc := NodeContext{Org: "org1", Node: "node1", Pattern: "org1/pat", ExchangeURL: "https://agbot:3090", Arch: "amd64",
		CPUs: 4, RAMMB: 2048, HostIPs: []string{"10.0.0.2", "172.17.0.1"}, AllowPrivileged: true,
		Inputs: []protocol.InputBlock{{ServiceOrgid: "acme", ServiceURL: "svc.example", Inputs: []protocol.InputValue{{Name: "var2", Value: 7.0}}}}}
	e := newEnv(t, func(o *Options) { o.Node = func() NodeContext { return nc } })
	p := e.proposal("ag1", values("1"))
	p.Service.UserInput = []protocol.InputVar{{Name: "var1", Type: "string", Value: "bp_string", Set: true}, {Name: "var2", Type: "int", Value: "1", Set: true}}
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		t.Fatalf("reply = %s %q, want accepted", rep.Status, rep.Reason)
	}
	e.runner.mu.Lock()
	inst := e.runner.insts[instanceID("ag1")]
	e.runner.mu.Unlock()
	want := map[string]string{"HZN_AGREEMENTID": "ag1", "HZN_ORGANIZATION": "org1", "HZN_DEVICE_ID": "node1", "HZN_PATTERN": "org1/pat",
		"HZN_ARCH": "amd64", "HZN_CPUS": "4", "HZN_RAM": "2048", "HZN_HOST_IPS": "10.0.0.2,172.17.0.1",
		"HZN_EXCHANGE_URL": "https://agbot:3090"}
	for k, v := range want {
		if inst.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, inst.Env[k], v)
		}
	}
	if len(inst.Containers) != 3 {
		t.Fatalf("%d containers, want 3", len(inst.Containers))
	}
	for _, c := range inst.Containers {
		if c.Env["var1"] != "bp_string" || c.Env["var2"] != "7" {
			t.Errorf("container %s env = %v, want the user input (var2 from the node)", c.Name, c.Env)
		}
	}
	if !inst.AllowPrivileged {
		t.Error("the node's openhorizon.allowPrivileged did not reach the worker")
	}
	for _, v := range inst.Env {
		if strings.Contains(v, "secret-value") {
			t.Fatalf("a secret value is in the environment: %v", inst.Env)
		}
	}
	r, err := e.m.db.get("ag1")
	if err != nil || r.Inputs["web"]["var2"] != "7" || r.Env["HZN_DEVICE_ID"] != "node1" || !r.AllowPrivileged {
		t.Fatalf("record env = %v, %v: want it kept for restarts", r, err)
	}
}

// A variable the service declares with no value from the agbot or the node declines the
// proposal, naming it; nothing is left on the node.
func TestProposeDeclinesMissingUserInput(t *testing.T) {
	e := newEnv(t)
	p := e.proposal("ag1", values("1"))
	p.Service.UserInput = []protocol.InputVar{{Name: "HZN_LAT", Type: "float"}}
	rep := e.m.Propose(e.ctx, p)
	if rep.Status != protocol.StatusDeclined || !strings.Contains(rep.Reason, "HZN_LAT") || !strings.Contains(rep.Reason, "no value") {
		t.Fatalf("reply = %s %q, want declined naming HZN_LAT", rep.Status, rep.Reason)
	}
	if n := len(e.runner.calls); n != 0 {
		t.Errorf("runner called %d times: %v", n, e.runner.calls)
	}
}

// Node constraints are checked against the deployment policy's properties as well as the
// service's built-in ones (anax matches both ways); a policy can not forge a built-in one.
func TestProposeNodeConstraintsSeePolicyProperties(t *testing.T) {
	for _, tc := range []struct {
		name  string
		props []protocol.Property
		ok    bool
	}{
		{"policy property holds", []protocol.Property{{Name: "iame2edev", Value: true}}, true},
		{"policy property missing", nil, false},
		{"policy property false", []protocol.Property{{Name: "iame2edev", Value: false}}, false},
		{"forged built-in", []protocol.Property{{Name: "iame2edev", Value: true}, {Name: "openhorizon.service.url", Value: "other"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen map[string]any
			e := newEnv(t, func(o *Options) {
				o.Admit = func(props map[string]any) error {
					seen = props
					if props["iame2edev"] != true || props["openhorizon.service.url"] != "svc.example" {
						return errDenied
					}
					return nil
				}
			})
			p := e.proposal("ag1", values("1"))
			p.Properties = tc.props
			rep := e.m.Propose(e.ctx, p)
			if (rep.Status == protocol.StatusAccepted) != tc.ok {
				t.Fatalf("reply = %s %q (saw %v), want accepted=%v", rep.Status, rep.Reason, seen, tc.ok)
			}
		})
	}
}

var errDenied = errors.New("constraint iame2edev == true does not hold")

// A required service's containers run in the same agreement, before the service's own, with
// their own secrets and their own service's user input; a duplicate container name across
// the services is declined.
func TestProposeRequiredServices(t *testing.T) {
	e := newEnv(t)
	p := e.proposal("ag1", values("1"))
	dep := protocol.Service{Org: "IBM", URL: "service-cpu", Version: "1.2.2", Arch: p.Service.Arch,
		UserInput: []protocol.InputVar{{Name: "cpu_var1", Type: "string", Value: "bp_ibm_var1", Set: true}},
		Deployment: protocol.Deployment{Services: map[string]protocol.Container{
			"cpu": {Image: "cpu:1", Secrets: map[string]protocol.SecretDecl{"secret_dep1": {}}}}}}
	p.Service.RequiredServices = []protocol.Service{dep}
	p.Secrets["secret_dep1"] = protocol.SecretValue{Key: "k", Value: canary("secret_dep1", "1")}
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		t.Fatalf("reply = %s %q, want accepted", rep.Status, rep.Reason)
	}
	e.runner.mu.Lock()
	inst := e.runner.insts[instanceID("ag1")]
	e.runner.mu.Unlock()
	if len(inst.Containers) != 4 || inst.Containers[0].Name != "cpu" {
		t.Fatalf("containers = %d, first %q: want 4 with the required service's first", len(inst.Containers), inst.Containers[0].Name)
	}
	for _, c := range inst.Containers {
		hasVar := c.Env["cpu_var1"] == "bp_ibm_var1"
		if hasVar != (c.Name == "cpu") {
			t.Errorf("container %s env %v: cpu_var1 belongs to the required service's containers only", c.Name, c.Env)
		}
	}
	if got := inst.Containers[0].Secrets; len(got) != 1 || got[0].Name != "secret_dep1" || inst.Containers[0].Store == nil {
		t.Errorf("the required service's container has secrets %v", got)
	}

	p2 := e.proposal("ag2", values("2"))
	dup := dep
	dup.Deployment = protocol.Deployment{Services: map[string]protocol.Container{"web": {Image: "cpu:1"}}}
	p2.Service.RequiredServices = []protocol.Service{dup}
	rep := e.m.Propose(e.ctx, p2)
	if rep.Status != protocol.StatusDeclined || !strings.Contains(rep.Reason, "unique") {
		t.Fatalf("reply = %s %q, want declined for the duplicate container name", rep.Status, rep.Reason)
	}
}
