package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/platform/arch"
)

// anaxFile reads one of anax's test/gov documents (agbot/exchange/testdata/anax) as a JSON
// object, to publish it with the fields this deployment must differ in (org, arch, image).
func anaxFile(t *testing.T, dir, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", dir, "testdata", "anax", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// testAnaxFormats publishes anax's own netspeed service definition (userInput, requiredServices,
// clusterDeployment, deploymentSignature, value_only and JSON secrets), its deployment policy
// (properties, constraints, userInput, secretBinding with enableNodeLevelSecrets, nodeHealth,
// priorities) and registers a node with anax's nested node policy (deployment section) and
// node user input. The policies match both ways (the node's constraints need the policy's
// properties); the container gets its secrets, the HZN_* variables and the user input with
// anax's conversions and precedence (node over policy over default).
func testAnaxFormats(t *testing.T, s *suite) {
	e := s.newEnv(t, "anax-formats", nil)
	admin := e.agbot.Admin
	nodeArch := arch.Node()
	const url = "https://bluehorizon.network/services/netspeed"

	// The required service: anax's IBM service-cpu (a bind of /tmp, a secret, user input).
	cpu := anaxFile(t, "agbot/exchange", "service_defs__IBM__service-cpu_1.2.2_secrets.json")
	cpu["org"], cpu["arch"] = org, nodeArch
	cpuc := cpu["deployment"].(map[string]any)["services"].(map[string]any)["cpu"].(map[string]any)
	cpuc["image"] = e.s.image
	// anax's file binds /tmp, which here holds the agent's secrets root: the node would
	// (rightly) decline it. Another host directory takes its place.
	cpuc["binds"] = []string{t.TempDir() + ":/hosttmp"}
	e.hzn(admin, "exchange", "service", "publish", "-f", e.writeJSON("anax-service-cpu.json", cpu))

	svc := anaxFile(t, "agbot/exchange", "service_defs__e2edev__netspeed_2.3.0_secrets.json")
	svc["org"], svc["arch"] = org, nodeArch
	dep := svc["deployment"].(map[string]any)["services"].(map[string]any)["netspeed"].(map[string]any)
	dep["image"] = e.s.image
	// One of its four required services, in this org: two service-cpu of different orgs
	// would both name their container cpu, which one agreement's network can not hold.
	svc["requiredServices"] = []any{map[string]any{"url": "https://bluehorizon.network/service-cpu", "org": org,
		"versionRange": "1.0.0", "arch": nodeArch}}
	e.hzn(admin, "exchange", "service", "publish", "-f", e.writeJSON("anax-service.json", svc))

	pol := anaxFile(t, "agbot/exchange", "deployment_policies__userdev__netspeed_secrets.json")
	pol["service"].(map[string]any)["org"] = org
	// The blocks for netspeed and IBM's service-cpu move to this org; e2edev's service-cpu
	// stays in its org (it matches nothing here).
	for _, key := range []string{"userInput", "secretBinding"} {
		for _, x := range pol[key].([]any) {
			if m := x.(map[string]any); m["serviceUrl"] == url || m["serviceOrgid"] == "IBM" {
				m["serviceOrgid"] = org
			}
		}
	}
	e.hzn(admin, "exchange", "deployment", "addpolicy", "-f", e.writeJSON("anax-policy.json", pol), "netspeed")

	sec1, sec2 := e.s.canaries.Next("anax-sec1"), e.s.canaries.Next("anax-sec2")
	e.putSecret(admin, "netspeed-secret1", "k1", sec1, "")
	e.putSecret(admin, "netspeed-secret2", "k2", sec2, "")

	e.hzn(admin, "exchange", "node", "create", "-n", "nodeX:tokX")
	a := e.agent("nodeX", "")
	nodePol := e.writeJSON("anax-node-policy.json", anaxFile(t, "agent", "input_files__compcheck__node_policy.json"))
	nodeUI := e.writeJSON("anax-node-ui.json", []any{map[string]any{"serviceOrgid": org, "serviceUrl": url,
		"serviceArch": "", "serviceVersionRange": "[2.0.0,INFINITY)", "inputs": []any{map[string]any{"name": "var5", "value": "node_value"}}}})
	if _, err := a.Hzn(e.ctx, "register", "-n", "nodeX:tokX", "--policy", nodePol, "-f", nodeUI); err != nil {
		t.Fatal(err)
	}
	// What the node registered, as anax's hzn policy list and hzn userinput list show it: the
	// built-in properties beside the file's, the user input as given.
	if out, err := a.Hzn(e.ctx, "policy", "list"); err != nil || !strings.Contains(out, `"name": "openhorizon.cpu"`) || !strings.Contains(out, `"deployment"`) {
		t.Errorf("hzn policy list: %v\n%s", err, out)
	}
	if out, err := a.Hzn(e.ctx, "userinput", "list"); err != nil || !strings.Contains(out, `"value": "node_value"`) {
		t.Errorf("hzn userinput list: %v\n%s", err, out)
	}
	in, err := a.ActiveAgreement(e.ctx, url, time.Minute)
	if err != nil {
		var held any
		code, derr := e.agbot.Do(org+"/"+admin, "GET", "/org/"+org+"/agreements", nil, &held)
		t.Fatalf("%v; the agbot's agreements (%d %v): %v", err, code, derr, held)
	}
	ag := in.ID
	ids := map[string]string{}
	for _, c := range in.Containers {
		ids[c.Name] = c.ContainerID
	}
	if len(ids) != 2 || in.Containers[0].Name != "cpu" {
		t.Fatalf("containers %+v: want the required service's cpu first, then netspeed", in.Containers)
	}
	c := ids["netspeed"]
	env := e.containerEnv(c)
	cpuEnv := e.containerEnv(ids["cpu"])
	if cpuEnv["cpu_var1"] != "bp_ibm_var1" || cpuEnv["HZN_AGREEMENTID"] != ag || env["cpu_var1"] != "" {
		t.Errorf("the required service's env: cpu_var1 %q, HZN_AGREEMENTID %q; netspeed's cpu_var1 %q", cpuEnv["cpu_var1"], cpuEnv["HZN_AGREEMENTID"], env["cpu_var1"])
	}
	// The required service's own secret reached it, through the policy's binding for it.
	e.wantFiles(ids["cpu"], map[string]string{"secret-dep1": file("k1", sec1, "")})
	want := map[string]string{
		"HZN_ORGANIZATION": org, "HZN_DEVICE_ID": "nodeX", "HZN_ARCH": nodeArch, "HZN_EXCHANGE_URL": a.Config.AgbotURL, "HZN_AGREEMENTID": ag,
		"var1": "bp_string", "var2": "10", "var3": "10.220000", "var4": "bp_abcd bp_1234",
		"var5": "node_value", "var6": "default",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("container env %s = %q, want %q", k, env[k], v)
		}
	}
	e.wantFiles(c, map[string]string{"sec1": sec1, "sec2": file("k2", sec2, "")})
	e.scanLive(a)
	if _, err := a.Hzn(e.ctx, "unregister", "-f"); err != nil {
		t.Fatal(err)
	}
	e.wantClean(a, true)
}

// containerEnv is a container's environment as the engine holds it.
func (e *env) containerEnv(id string) map[string]string {
	e.t.Helper()
	ins, err := e.s.docker.ContainerInspect(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range ins.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}
