package hzn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// The agent-side commands talk to the local agent's API on a unix socket:
// $HZN_AGENT_SOCKET, default DefaultAgentSocket (mode 0600: run them as root).

// DefaultAgentSocket is the agent's --api-socket default.
const DefaultAgentSocket = "/run/anax-agent/api.sock"

func (c *cli) addAgent() {
	reg := c.app.Command("register", "Register this edge node with the agbot through the local agent. The agent generates its keys, registers them with the node token, pins the agbot's signing key and remembers all of it across restarts.").Alias("reg")
	r := registerFlags{
		idTok:      reg.Flag("node-id-tok", "The Horizon exchange node ID and token (node:- reads the token from stdin). If not specified, HZN_EXCHANGE_NODE_AUTH will be used as a default.").Short('n').PlaceHolder("ID:TOK").String(),
		tokFile:    reg.Flag("token-file", "Read the node token from this file.").String(),
		userPw:     reg.Flag("user-pw", "Credentials of the node's owner or an org admin: they create the node on the agbot if it does not exist yet (with HZN_AGBOT_URL), and let the agent replace keys the agbot already holds for the node. USER:- reads the password from stdin. If not specified, HZN_EXCHANGE_USER_AUTH will be used as a default.").Short('u').PlaceHolder("USER:PW").String(),
		pwFile:     reg.Flag("password-file", "Read the password of -u USER from this file.").String(),
		inputFile:  reg.Flag("input-file", "A JSON file with values for the user input variables of the services this node runs: anax's [{\"serviceOrgid\",\"serviceUrl\",\"inputs\":[{\"name\",\"value\"}]}] (or its older {\"services\":[...]} form).").Short('f').String(),
		orgFlag:    reg.Flag("nodeorg", "The organization the node is registered in. The default is the HZN_ORG_ID environment variable, then the agent's --org.").Short('o').String(),
		patFlag:    reg.Flag("pattern", "The pattern to run on this node, [org/]name. Mutually exclusive with <nodeorg> and <pattern> arguments.").Short('p').String(),
		policy:     reg.Flag("policy", "A JSON file with the node policy: {\"properties\":[{\"name\":..,\"value\":..}],\"constraints\":[..]} (or anax's {\"deployment\":{...}}).").String(),
		service:    reg.Flag("service", "Wait for the named service to start executing on this node ('*': any service).").Short('s').String(),
		serviceOrg: reg.Flag("serviceorg", "The org of the service to wait for on this node.").String(),
		timeout:    reg.Flag("timeout", "The number of seconds for the --service to start.").Short('t').Default("60").Int(),
		argOrg:     reg.Arg("nodeorg", "The organization the node is registered in. Mutually exclusive with -o and -p.").String(),
		argPat:     reg.Arg("pattern", "The pattern to run on this node. Mutually exclusive with -o and -p.").String(),
	}
	reg.Flag("name", "The name of the node (ignored: the node id is its name).").Short('m').String()
	haGroup := reg.Flag("ha-group", "The HA group (not supported by this agent).").String()
	c.on(reg, func() error {
		if *haGroup != "" {
			return fail(ExitInput, "--ha-group is not supported by this agent")
		}
		return c.register(r)
	})

	unreg := c.app.Command("unregister", "Unregister this node: cancel every agreement, stop its containers, wipe every secret and forget the registration.").Alias("unreg")
	force := unreg.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	remove := unreg.Flag("remove", "Also remove this node resource from the agbot (needs HZN_AGBOT_URL and HZN_EXCHANGE_USER_AUTH of its owner or an org admin).").Short('r').Bool()
	unreg.Flag("deep-clean", "Accepted for compatibility: unregister always removes every leftover of the registration.").Short('D').Bool()
	unreg.Flag("timeout", "Accepted for compatibility.").Short('t').Default("0").Int()
	c.on(unreg, func() error { return c.unregister(*force, *remove) })

	node := c.app.Command("node", "List general information about this edge node.")
	c.on(node.Command("list", "Display general information about this edge node (anax's shape; never the token).").Alias("ls"), c.nodeList)

	pol := c.app.Command("policy", "List the policy of this edge node.").Alias("pol")
	c.on(pol.Command("list", "Display this edge node's policy as the agbot matches it: the registered policy, with the built-in properties (openhorizon.cpu, .memory, .arch, .hardwareId, .allowPrivileged) in its deployment section.").Alias("ls"),
		func() error { return c.registeredJSON("/node/policy", emptyNodePolicy) })
	ui := c.app.Command("userinput", "List the user input of this edge node.").Alias("u")
	c.on(ui.Command("list", "Display the user input given at registration (hzn register -f): values of the services' variables, never a secret.").Alias("ls"),
		func() error { return c.registeredJSON("/node/userinput", "[]") })

	ag := c.app.Command("agreement", "List the agreements this edge node has made with the agbot.").Alias("ag")
	agList := ag.Command("list", "List the active agreements (names, sequences, digest prefixes; never a value).").Alias("ls")
	agID := agList.Arg("agreement-id", "Show the details of this active agreement.").String()
	archived := agList.Flag("archived", "List archived agreements (this agent keeps none).").Short('r').Bool()
	c.on(agList, func() error { return c.agreementList(*agID, *archived) })

	agent := c.app.Command("agent", "The local agent.")
	c.on(agent.Command("status", "secretfs mode, kernel features, agbot link, agreements, last update (JSON)."), func() error {
		raw, err := newAgentClient(c.get).do("GET", "/status", nil)
		if err != nil {
			return err
		}
		return printRaw(c.env.Stdout, raw)
	})
	c.on(c.app.Command("architecture", "Show the architecture of this machine (as defined by Horizon and golang)."), func() error {
		fmt.Fprintln(c.env.Stdout, runtime.GOARCH)
		return nil
	})
	c.on(c.app.Command("version", "Show the version of hzn and of the local agent."), c.version)
}

// agentClient talks HTTP over the agent's unix socket.
type agentClient struct {
	socket string
	http   *http.Client
}

func newAgentClient(getenv func(string) string) *agentClient {
	sock := getenv("HZN_AGENT_SOCKET")
	if sock == "" {
		sock = DefaultAgentSocket
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &agentClient{socket: sock, http: &http.Client{Transport: tr, Timeout: 10 * time.Minute}}
}

// do sends a request to the agent and returns the raw JSON answer.
func (a *agentClient) do(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://anax-agent"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fail(ExitHTTP, "Can't connect to the agent at %s (set HZN_AGENT_SOCKET; the socket is root only): %v", a.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, &ExitError{Code: ExitGeneral, Err: &APIError{Status: resp.StatusCode, Msg: apiMessage(raw)}}
	}
	return raw, nil
}

// stream sends a GET to the agent and copies the answer to w as it arrives (a followed log).
// No client timeout: it lasts as long as the agent streams (Ctrl-C ends it).
func (a *agentClient) stream(path string, w io.Writer) error {
	hc := *a.http
	hc.Timeout = 0
	resp, err := hc.Get("http://anax-agent" + path)
	if err != nil {
		return fail(ExitHTTP, "Can't connect to the agent at %s (set HZN_AGENT_SOCKET; the socket is root only): %v", a.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return &ExitError{Code: ExitGeneral, Err: &APIError{Status: resp.StatusCode, Msg: apiMessage(raw)}}
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// addServiceLog is anax's `hzn service log [-f] [-c CONTAINER] SERVICE`: the output of a
// service's container running on this node.
func (c *cli) addServiceLog() {
	svc := c.app.Command("service", "List or manage the services that are currently registered on this Horizon edge node.").Alias("serv")
	logCmd := svc.Command("log", "Show the container logs for a service.")
	follow := logCmd.Flag("tail", "Continuously polls the service's logs to display the most recent records, similar to tail -F behavior.").Short('f').Bool()
	cont := logCmd.Flag("container", "The name of the service container whose log to show, when the service has several.").Short('c').String()
	name := logCmd.Arg("service", "The name of the service whose log records should be displayed: [ORG/]URL. The service name is the same as the url field of a service definition.").Required().String()
	c.on(logCmd, func() error {
		q := url.Values{"service": {*name}}
		if *follow {
			q.Set("follow", "true")
		}
		if *cont != "" {
			q.Set("container", *cont)
		}
		return newAgentClient(c.get).stream("/service/log?"+q.Encode(), c.env.Stdout)
	})
}

// emptyNodePolicy is anax's empty exchangecommon.NodePolicy as `hzn policy list` prints it for
// a node with no policy (its sections are structs, so they are never omitted).
const emptyNodePolicy = `{"properties":null,"constraints":null,"deployment":{"properties":null,"constraints":null},"management":{"properties":null,"constraints":null}}`

// registeredJSON prints the agent's answer at path, or empty (as JSON) when the node is not
// registered, as anax prints an empty policy or user input list for an unconfigured node
// (its agent answers 200 with them).
func (c *cli) registeredJSON(path, empty string) error {
	raw, err := newAgentClient(c.get).do("GET", path, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		raw, err = []byte(empty), nil
	}
	if err != nil {
		return err
	}
	// Indented in the order the agent wrote it (anax's struct order), not re-sorted.
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return fail(ExitJSON, "agent answer: %v", err)
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(c.env.Stdout)
	return err
}

// printRaw re-indents a JSON answer.
func printRaw(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("agent answer is not JSON: %w", err)
	}
	return printJSON(w, v)
}

// registerFlags are the flags and arguments of hzn register.
type registerFlags struct {
	idTok, tokFile, userPw, pwFile, inputFile, orgFlag, patFlag, policy, service, serviceOrg, argOrg, argPat *string
	timeout                                                                                                  *int
}

// registerTarget resolves the node, token, org and pattern from flags, arguments and
// environment as anax does.
func (c *cli) registerTarget(r registerFlags) (node, token, org, pattern string, err error) {
	if (*r.argOrg != "" || *r.argPat != "") && (*r.orgFlag != "" || *r.patFlag != "") {
		return "", "", "", "", fail(ExitInput, "-o and -p are mutually exclusive with <nodeorg> and <pattern> arguments.")
	}
	org, pattern = *r.orgFlag, *r.patFlag
	if *r.argOrg != "" {
		org, pattern = *r.argOrg, *r.argPat
	}
	if org == "" {
		org = c.get("HZN_ORG_ID")
	}
	idTok := c.orEnv(r.idTok, "HZN_EXCHANGE_NODE_AUTH")
	node, token, _ = strings.Cut(idTok, ":")
	if o, n, ok := strings.Cut(node, "/"); ok {
		if org == "" {
			org = o
		}
		node = n
	}
	if node == "" {
		return "", "", "", "", fail(ExitInput, "give the node and its token with -n NODE:TOKEN (or NODE:- for stdin, or --token-file) or HZN_EXCHANGE_NODE_AUTH")
	}
	if token == "" && *r.tokFile == "" {
		return "", "", "", "", fail(ExitInput, "the node token is missing: -n NODE:TOKEN, NODE:- (stdin) or --token-file FILE")
	}
	token, err = c.credential("node token", token, *r.tokFile)
	return node, token, org, pattern, err
}

// readUserInput reads a node user input file (the agent checks its shape and values).
func readUserInput(file string) (json.RawMessage, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fail(ExitFile, "reading --input-file %s failed: %v", file, err)
	}
	var ui json.RawMessage
	if err := json.Unmarshal(b, &ui); err != nil {
		return nil, fail(ExitJSON, "failed to unmarshal --input-file %s: %v", file, err)
	}
	return ui, nil
}

// readPolicy reads a node policy file: this project's {"properties","constraints"} or
// anax's with a "deployment" section.
func readPolicy(file string) (json.RawMessage, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fail(ExitFile, "reading --policy %s failed: %v", file, err)
	}
	var pol struct {
		Deployment json.RawMessage `json:"deployment"`
	}
	if err := json.Unmarshal(b, &pol); err != nil {
		return nil, fail(ExitJSON, "failed to unmarshal --policy %s: %v", file, err)
	}
	if len(pol.Deployment) > 0 {
		return pol.Deployment, nil
	}
	return b, nil
}

func (c *cli) register(r registerFlags) error {
	node, token, org, pattern, err := c.registerTarget(r)
	if err != nil {
		return err
	}
	req := map[string]any{"node": node, "token": token}
	if org != "" {
		req["org"] = org
	}
	if pattern != "" {
		req["pattern"] = pattern
	}
	if *r.policy != "" {
		pol, err := readPolicy(*r.policy)
		if err != nil {
			return err
		}
		req["policy"] = pol
	}
	if *r.inputFile != "" {
		ui, err := readUserInput(*r.inputFile)
		if err != nil {
			return err
		}
		req["userInput"] = ui
	}
	user, err := c.registerUser(r)
	if err != nil {
		return err
	}
	if user != "" {
		req["user"] = user // the agent's authority to replace keys the agbot holds
		if err := c.ensureNode(user, org, node, token); err != nil {
			return err
		}
	}
	raw, err := newAgentClient(c.get).do("POST", "/node", req)
	if err != nil {
		return err
	}
	var info struct {
		ID               string `json:"id"`
		AgbotID          string `json:"agbotId"`
		AgbotFingerprint string `json:"agbotFingerprint"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return fail(ExitJSON, "agent answer: %v", err)
	}
	fmt.Fprintf(c.env.Stdout, "Node %s registered with agbot %s (its key %s is pinned).\n", info.ID, info.AgbotID, info.AgbotFingerprint)
	fmt.Fprintln(c.env.Stdout, "Horizon node is registered. Workload agreement negotiation should begin shortly. Run 'hzn agreement list' to view.")
	if *r.service == "" {
		return nil
	}
	return c.waitService(*r.service, *r.serviceOrg, *r.timeout)
}

// registerUser resolves -u USER:PASSWORD (or HZN_EXCHANGE_USER_AUTH), the password also
// as "-" (stdin) or --password-file; "" when none is given.
func (c *cli) registerUser(r registerFlags) (string, error) {
	u := c.orEnv(r.userPw, "HZN_EXCHANGE_USER_AUTH")
	if u == "" && *r.pwFile == "" {
		return "", nil
	}
	user, pw, _ := strings.Cut(u, ":")
	if user == "" || (pw == "" && *r.pwFile == "") {
		return "", fail(ExitInput, "want -u USER:PASSWORD, -u USER:- or -u USER --password-file FILE")
	}
	pw, err := c.credential("password", pw, *r.pwFile)
	if err != nil {
		return "", err
	}
	return user + ":" + pw, nil
}

// ensureNode creates the node on the agbot with the user's credentials when it does not
// exist there yet, as anax's register does; without HZN_AGBOT_URL it leaves that to
// 'hzn exchange node create'.
func (c *cli) ensureNode(userPw, org, node, token string) error {
	if c.agbotURL() == "" {
		return nil
	}
	o := org
	cl, err := c.client(&o, &userPw)
	if err != nil {
		return err
	}
	code, raw, err := cl.Call("GET", cl.Path("nodes", node), nil)
	if err != nil || code != http.StatusNotFound {
		c.verbosef("node %s/%s on the agbot: HTTP %d", cl.Org, node, code)
		return err
	}
	c.verbosef("node %s/%s does not exist on the agbot (%s): creating it", cl.Org, node, apiMessage(raw))
	if err := cl.Do("PUT", cl.Path("nodes", node), map[string]any{"token": token, "arch": runtime.GOARCH}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "Node %s/%s created on the agbot.\n", cl.Org, node)
	return nil
}

// waitService polls the agent until an agreement runs service ('*': any), as anax's -s.
func (c *cli) waitService(service, org string, timeout int) error {
	what := service
	if org != "" {
		what = org + "/" + service
	}
	fmt.Fprintf(c.env.Stdout, "Waiting for up to %v seconds for service %v to start...\n", timeout, what)
	ac := newAgentClient(c.get)
	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	for {
		raw, err := ac.do("GET", "/agreement", nil)
		if err != nil {
			return err
		}
		var list []agentAgreement
		if err := json.Unmarshal(raw, &list); err != nil {
			return fail(ExitJSON, "agent answer: %v", err)
		}
		for _, a := range list {
			if a.Phase == "active" && (service == "*" || a.Service.URL == service && (org == "" || a.Service.Org == org)) {
				fmt.Fprintf(c.env.Stdout, "Service %v is started.\n", what)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fail(ExitGeneral, "Timeout waiting for service %v to successfully start. Run 'hzn agreement list' and 'hzn agent status'.", what)
		}
		time.Sleep(time.Second)
	}
}

func (c *cli) unregister(force, remove bool) error {
	ac := newAgentClient(c.get)
	var info struct {
		ID   string `json:"id"`
		Org  string `json:"org"`
		Node string `json:"node"`
	}
	raw, err := ac.do("GET", "/node", nil)
	if err != nil {
		return err
	}
	_ = json.Unmarshal(raw, &info)
	var cl *Client
	if remove {
		if cl, err = c.client(&info.Org, nil); err != nil {
			return fail(exitCode(err), "-r removes the node from the agbot with HZN_EXCHANGE_USER_AUTH and HZN_AGBOT_URL: %v", err)
		}
	}
	if !force {
		ok, err := c.confirm(fmt.Sprintf("Are you sure you want to unregister this Horizon node (%s)? Every agreement is cancelled and every secret wiped.", info.ID))
		if !ok || err != nil {
			return err
		}
	}
	if raw, err = ac.do("DELETE", "/node", nil); err != nil {
		return err
	}
	var res struct {
		Node         string   `json:"node"`
		Cancelled    []string `json:"cancelled"`
		NotDelivered []string `json:"notDelivered"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fail(ExitJSON, "agent answer: %v", err)
	}
	fmt.Fprintf(c.env.Stdout, "node %s unregistered: %d agreements cancelled, secrets wiped", res.Node, len(res.Cancelled))
	if len(res.NotDelivered) > 0 {
		fmt.Fprintf(c.env.Stdout, " (%d cancels not delivered: the agbot was not reachable)", len(res.NotDelivered))
	}
	fmt.Fprintln(c.env.Stdout)
	if cl != nil {
		if err := cl.Do("DELETE", cl.Path("nodes", info.Node), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(c.env.Stdout, "Node %s removed from the agbot.\n", info.ID)
	}
	return nil
}

// nodeView is anax's 'hzn node list' shape, plus this agent's agbot pinning.
type nodeView struct {
	ID            string         `json:"id"`
	Organization  *string        `json:"organization"`
	Pattern       *string        `json:"pattern"`
	Name          string         `json:"name,omitempty"`
	NodeType      string         `json:"nodeType"`
	TokenValid    *bool          `json:"token_valid"`
	HAGroup       string         `json:"ha_group"`
	ConfigState   map[string]any `json:"configstate"`
	Configuration map[string]any `json:"configuration"`
	Agbot         map[string]any `json:"agbot,omitempty"`
}

func (c *cli) nodeList() error {
	raw, err := newAgentClient(c.get).do("GET", "/node", nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return printJSON(c.env.Stdout, nodeView{NodeType: "device", ConfigState: map[string]any{"state": "unconfigured"},
			Configuration: map[string]any{"architecture": runtime.GOARCH}})
	}
	if err != nil {
		return err
	}
	var in struct {
		ID, Org, Node, Pattern, Arch, AgbotURL, AgbotID, AgbotFingerprint, NodeFingerprint string
		RegisteredAt                                                                       time.Time
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return fail(ExitJSON, "agent answer: %v", err)
	}
	if in.Node == "" {
		in.Org, in.Node, _ = strings.Cut(in.ID, "/")
	}
	valid := true
	return printJSON(c.env.Stdout, nodeView{
		ID: in.Node, Organization: &in.Org, Pattern: &in.Pattern, Name: in.Node, NodeType: "device", TokenValid: &valid,
		ConfigState:   map[string]any{"state": "configured", "last_update_time": in.RegisteredAt.UTC().Format("2006-01-02 15:04:05 -0700 MST")},
		Configuration: map[string]any{"exchange_api": in.AgbotURL, "architecture": in.Arch},
		Agbot:         map[string]any{"id": in.AgbotID, "fingerprint": in.AgbotFingerprint, "nodeFingerprint": in.NodeFingerprint},
	})
}

// agentAgreement is what the agent says of one agreement (package agreement's Info).
type agentAgreement struct {
	ID         string    `json:"id"`
	Instance   string    `json:"instance"`
	Agbot      string    `json:"agbot"`
	Phase      string    `json:"phase"`
	AcceptedAt time.Time `json:"acceptedAt"`
	Service    struct {
		Org     string `json:"org"`
		URL     string `json:"url"`
		Version string `json:"version"`
		Arch    string `json:"arch"`
	} `json:"service"`
}

// anaxAgreement puts anax's 'hzn agreement list' fields first, then the agent's own.
func anaxAgreement(raw json.RawMessage) (map[string]any, error) {
	var a agentAgreement
	var extra map[string]any
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return nil, err
	}
	t := a.AcceptedAt.UTC().Format("2006-01-02 15:04:05 -0700 MST")
	out := map[string]any{
		"name": a.Instance, "current_agreement_id": a.ID, "consumer_id": a.Agbot,
		"agreement_creation_time": t, "agreement_accepted_time": t, "agreement_protocol": "Basic",
		"workload_to_run": map[string]string{"url": a.Service.URL, "org": a.Service.Org, "version": a.Service.Version, "arch": a.Service.Arch},
	}
	for _, k := range []string{"phase", "sequence", "updatedAt", "mode", "containers", "secrets", "note"} {
		if v, ok := extra[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

func (c *cli) agreementList(id string, archived bool) error {
	if archived {
		fmt.Fprintln(c.env.Stdout, "[]")
		return nil
	}
	path := "/agreement"
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	raw, err := newAgentClient(c.get).do("GET", path, nil)
	if err != nil {
		return err
	}
	if id != "" {
		a, err := anaxAgreement(raw)
		if err != nil {
			return fail(ExitJSON, "agent answer: %v", err)
		}
		return printJSON(c.env.Stdout, a)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return fail(ExitJSON, "agent answer: %v", err)
	}
	out := make([]map[string]any, 0, len(list))
	for _, r := range list {
		a, err := anaxAgreement(r)
		if err != nil {
			return fail(ExitJSON, "agent answer: %v", err)
		}
		out = append(out, a)
	}
	return printJSON(c.env.Stdout, out)
}

func (c *cli) version() error {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	fmt.Fprintf(c.env.Stdout, "Horizon CLI version: %s (anax-agent)\n", v)
	raw, err := newAgentClient(c.get).do("GET", "/status", nil)
	if err != nil {
		fmt.Fprintln(c.env.Stdout, "Horizon Agent version: failed to get.")
		return nil
	}
	var st struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(raw, &st)
	if st.Version == "" {
		st.Version = "anax-agent"
	}
	fmt.Fprintf(c.env.Stdout, "Horizon Agent version: %s\n", st.Version)
	return nil
}
