package agent

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/protocol"
)

// anax's built-in node properties (externalpolicy/builtin_properties.go) the agent reports
// with its registration, and its constraints can name.
const (
	PropCPU             = "openhorizon.cpu"
	PropMemory          = "openhorizon.memory" // MB
	PropArch            = "openhorizon.arch"
	PropHardwareID      = "openhorizon.hardwareId"
	PropAllowPrivileged = "openhorizon.allowPrivileged" // set by the node policy; default false
)

// nodeFacts are what the agent measures of its host.
type nodeFacts struct {
	CPUs       int
	MemoryMB   int64
	HardwareID string
	HostIPs    []string
}

func readNodeFacts() nodeFacts {
	return nodeFacts{CPUs: runtime.NumCPU(), MemoryMB: memTotalMB(), HardwareID: hardwareID(), HostIPs: hostIPv4s()}
}

// memTotalMB reads MemTotal from /proc/meminfo; 0 when it can not.
func memTotalMB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// hardwareID is a stable id of the host: a digest of /etc/machine-id (the id itself is not
// published), "" without one.
func hardwareID() string {
	b, err := os.ReadFile("/etc/machine-id")
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte("anax-agent hardwareId\x00" + strings.TrimSpace(string(b))))
	return hex.EncodeToString(sum[:16])
}

// hostIPv4s lists the IPv4 addresses of the interfaces that are up, as anax's HZN_HOST_IPS.
func hostIPv4s() []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				out = append(out, n.IP.String())
			}
		}
	}
	return out
}

// allowPrivileged is the policy's openhorizon.allowPrivileged (Validate made it a bool).
func (p NodePolicy) allowPrivileged() bool {
	for _, prop := range p.Effective().Properties {
		if prop.Name == PropAllowPrivileged {
			b, _ := prop.Value.(bool)
			return b
		}
	}
	return false
}

// reportedProperties are the node's deployment properties as the agbot matches policies
// against them: the effective policy's, with the built-in ones measured here (the policy can
// not override those, as in anax, except allowPrivileged which it sets).
func (p NodePolicy) reportedProperties(arch string, f nodeFacts) []Property {
	builtin := map[string]any{PropCPU: f.CPUs, PropMemory: f.MemoryMB, PropArch: arch, PropAllowPrivileged: p.allowPrivileged()}
	if f.HardwareID != "" {
		builtin[PropHardwareID] = f.HardwareID
	}
	out := []Property{}
	for _, prop := range p.Effective().Properties {
		if _, ok := builtin[prop.Name]; !ok {
			out = append(out, prop)
		}
	}
	for _, name := range sortedKeys(builtin) {
		out = append(out, Property{Name: name, Value: builtin[name]})
	}
	return out
}

// withBuiltins is the node policy as `hzn policy list` shows it (anax's GET /node/policy):
// as registered, with the deployment section holding the properties the agbot matches
// against (built-in ones included) and the effective constraints.
func (p NodePolicy) withBuiltins(arch string, f nodeFacts) NodePolicy {
	eff := p.Effective()
	p.Deployment = &ExternalPolicy{Properties: p.reportedProperties(arch, f), Constraints: eff.Constraints}
	if p.Management == nil {
		p.Management = &ExternalPolicy{} // anax's sections are structs: always shown
	}
	return p
}

// nodeContext is what containers of a new agreement see of the node.
func (r *Registration) nodeContext(f nodeFacts) agreement.NodeContext {
	pattern := r.Pattern
	if pattern != "" && !strings.Contains(pattern, "/") {
		pattern = r.Org + "/" + pattern
	}
	return agreement.NodeContext{Org: r.Org, Node: r.Node, Pattern: pattern, ExchangeURL: r.AgbotURL,
		Arch: r.Arch, CPUs: f.CPUs, RAMMB: f.MemoryMB, HostIPs: f.HostIPs,
		AllowPrivileged: r.Policy.allowPrivileged(), Inputs: r.UserInput}
}

// NodeUserInput is the node's user input file (hzn register -f) in either of anax's forms:
// the current one, a list of {serviceOrgid, serviceUrl, serviceArch, serviceVersionRange,
// inputs}, or the older {"services": [{"org", "url", "versionRange", "variables": {...}}]}.
// The older form's "global" section (location attributes) is refused: it is not supported.
type NodeUserInput []protocol.InputBlock

// UnmarshalJSON reads either form, strictly.
func (u *NodeUserInput) UnmarshalJSON(b []byte) error {
	var blocks []protocol.InputBlock
	if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 && trimmed[0] == '[' {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&blocks); err != nil {
			return fmt.Errorf("user input: %w", err)
		}
		*u = blocks
		return nil
	}
	var old struct {
		Global   []json.RawMessage `json:"global"`
		Services []struct {
			Org          string         `json:"org"`
			URL          string         `json:"url"`
			VersionRange string         `json:"versionRange"`
			Variables    map[string]any `json:"variables"`
		} `json:"services"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&old); err != nil {
		return fmt.Errorf("user input: %w", err)
	}
	if len(old.Global) > 0 {
		return errors.New("user input: global: not supported (set the variables per service)")
	}
	for _, s := range old.Services {
		b := protocol.InputBlock{ServiceOrgid: s.Org, ServiceURL: s.URL, ServiceVersionRange: s.VersionRange}
		for _, name := range sortedKeys(s.Variables) {
			b.Inputs = append(b.Inputs, protocol.InputValue{Name: name, Value: s.Variables[name]})
		}
		blocks = append(blocks, b)
	}
	*u = blocks
	return nil
}
