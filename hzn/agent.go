package hzn

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The agent-side commands talk to the local agent's API on a unix socket:
// $HZN_AGENT_SOCKET, default DefaultAgentSocket (mode 0600: run them as root).

// DefaultAgentSocket is the agent's --api-socket default.
const DefaultAgentSocket = "/run/anax-agent/api.sock"

func init() {
	Register(nil, &Command{
		Name: "register", Short: "register this node with the agbot through the local agent",
		Long: "The agent generates its keys, registers them with the agbot using the node token, pins\n" +
			"the agbot's signing key and remembers all of it across restarts.\n" +
			"Once the agbot holds keys for the node, the token alone does not replace them: hzn unregister\n" +
			"on the old node releases them, or -u USER:PASSWORD of its owner or an org admin replaces them\n" +
			"(the old node's agreements are cancelled and it logs that its keys were replaced).\n" +
			"The node policy file is anax's: {\"properties\":[{\"name\":..,\"value\":..}],\"constraints\":[..]}.",
		Flags: func(fs *flag.FlagSet) {
			fs.String("n", "", "NODE:TOKEN (the node created with hzn exchange node create); NODE:- reads the token from stdin")
			fs.String("token-file", "", "file holding the node token (with -n NODE)")
			fs.String("u", "", "USER:PASSWORD of the node's owner or an org admin, needed when the agbot holds other keys for the node; USER:- reads the password from stdin")
			fs.String("password-file", "", "file holding the password of -u USER")
			fs.String("o", "", "organisation (default: the agent's --org)")
			fs.String("policy", "", "node policy file (JSON)")
			fs.String("pattern", "", "ORG/NAME of a pattern to run")
			fs.String("f", "", "user input file (JSON): anax's [{\"serviceOrgid\",\"serviceUrl\",\"inputs\":[{\"name\",\"value\"}]}]")
		},
		Run: agentRegister,
	})
	Register(nil, &Command{
		Name: "unregister", Short: "cancel every agreement, wipe every secret and forget the registration",
		Flags: func(fs *flag.FlagSet) { fs.Bool("f", false, "do not ask for confirmation") },
		Run:   agentUnregister,
	})
	Register(nil, &Command{Name: "node", Short: "the local node: list"})
	Register([]string{"node"}, &Command{Name: "list", Short: "show the node's registration (JSON; never the token)", Run: agentNodeList})
	Register(nil, &Command{Name: "agreement", Short: "the local node's agreements: list"})
	Register([]string{"agreement"}, &Command{
		Name: "list", Args: "[ID]", Short: "list the node's agreements (JSON: names, sequences, digest prefixes; never a value)",
		Run: agentAgreementList,
	})
	Register(nil, &Command{Name: "agent", Short: "the local agent: status"})
	Register([]string{"agent"}, &Command{
		Name: "status", Short: "secretfs mode, kernel features, agbot link, agreements, last update (JSON)",
		Run: agentStatus,
	})
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
		return nil, fmt.Errorf("agent at %s (set HZN_AGENT_SOCKET; the socket is root only): %w", a.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, &APIError{Status: resp.StatusCode, Msg: msg, Body: raw}
	}
	return raw, nil
}

// printRaw re-indents a JSON answer.
func printRaw(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("agent answer is not JSON: %w", err)
	}
	return printJSON(w, v)
}

func agentRegister(c *Context, args []string) error {
	node, token, err := nodeToken(c)
	if err != nil || len(args) != 0 {
		return errors.Join(err, fmt.Errorf("%w: want -n NODE:TOKEN, -n NODE:- or -n NODE --token-file FILE", ErrUsage))
	}
	req := map[string]any{"node": node, "token": token}
	if u, pwFile := flagStr(c, "u"), flagStr(c, "password-file"); u != "" || pwFile != "" {
		user, pw, _ := strings.Cut(u, ":")
		if user == "" || (pw == "" && pwFile == "") {
			return fmt.Errorf("%w: want -u USER:PASSWORD, -u USER:- or -u USER --password-file FILE", ErrUsage)
		}
		if pw == "-" && strings.HasSuffix(flagStr(c, "n"), ":-") {
			return fmt.Errorf("%w: only one of -n and -u can read stdin; use --token-file or --password-file for the other", ErrUsage)
		}
		if pw, err = credential(c, "password", pw, pwFile); err != nil {
			return err
		}
		req["user"] = user + ":" + pw
	}
	if org := flagStr(c, "o"); org != "" {
		req["org"] = org
	}
	if p := flagStr(c, "pattern"); p != "" {
		req["pattern"] = p
	}
	if file := flagStr(c, "policy"); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		var pol json.RawMessage
		if err := json.Unmarshal(b, &pol); err != nil {
			return fmt.Errorf("--policy %s: not JSON: %v", file, err)
		}
		req["policy"] = pol
	}
	if file := flagStr(c, "f"); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		var ui json.RawMessage
		if err := json.Unmarshal(b, &ui); err != nil {
			return fmt.Errorf("-f %s: not JSON: %v", file, err)
		}
		req["userInput"] = ui
	}
	raw, err := newAgentClient(c.Getenv).do("POST", "/node", req)
	if err != nil {
		return err
	}
	var info struct {
		ID               string `json:"id"`
		AgbotID          string `json:"agbotId"`
		AgbotFingerprint string `json:"agbotFingerprint"`
		Pattern          string `json:"pattern"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return fmt.Errorf("agent answer: %w", err)
	}
	fmt.Fprintf(c.Stdout, "node %s registered with agbot %s (key %s pinned)\n", info.ID, info.AgbotID, info.AgbotFingerprint)
	return nil
}

func agentUnregister(c *Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: unregister takes no arguments", ErrUsage)
	}
	cl := newAgentClient(c.Getenv)
	if !flagBool(c, "f") {
		raw, err := cl.do("GET", "/node", nil)
		if err != nil {
			return err
		}
		var info struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(raw, &info)
		fmt.Fprintf(c.Stdout, "Are you sure you want to unregister node %s? Every agreement is cancelled and every secret wiped. [y/N]: ", info.ID)
		line, _ := bufio.NewReader(c.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			fmt.Fprintln(c.Stdout, "not unregistered")
			return nil
		}
	}
	raw, err := cl.do("DELETE", "/node", nil)
	if err != nil {
		return err
	}
	var res struct {
		Node         string   `json:"node"`
		Cancelled    []string `json:"cancelled"`
		NotDelivered []string `json:"notDelivered"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("agent answer: %w", err)
	}
	fmt.Fprintf(c.Stdout, "node %s unregistered: %d agreements cancelled, secrets wiped", res.Node, len(res.Cancelled))
	if len(res.NotDelivered) > 0 {
		fmt.Fprintf(c.Stdout, " (%d cancels not delivered: the agbot was not reachable)", len(res.NotDelivered))
	}
	fmt.Fprintln(c.Stdout)
	return nil
}

func agentNodeList(c *Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: node list takes no arguments", ErrUsage)
	}
	raw, err := newAgentClient(c.Getenv).do("GET", "/node", nil)
	if err != nil {
		return err
	}
	return printRaw(c.Stdout, raw)
}

func agentAgreementList(c *Context, args []string) error {
	path := "/agreement"
	switch len(args) {
	case 0:
	case 1:
		path += "/" + url.PathEscape(args[0])
	default:
		return fmt.Errorf("%w: agreement list takes at most one ID", ErrUsage)
	}
	raw, err := newAgentClient(c.Getenv).do("GET", path, nil)
	if err != nil {
		return err
	}
	return printRaw(c.Stdout, raw)
}

func agentStatus(c *Context, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: agent status takes no arguments", ErrUsage)
	}
	raw, err := newAgentClient(c.Getenv).do("GET", "/status", nil)
	if err != nil {
		return err
	}
	return printRaw(c.Stdout, raw)
}
