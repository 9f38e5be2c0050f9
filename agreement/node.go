package agreement

import (
	"strconv"
	"strings"

	"github.com/edge-secrets/anax-agent/protocol"
)

// NodeContext is what the agent tells the agreement manager about the node when a proposal
// arrives. Nothing in it is a secret: it becomes container environment.
type NodeContext struct {
	Org, Node   string // the registration: HZN_ORGANIZATION, HZN_DEVICE_ID
	Pattern     string // "org/name" or "" for policy nodes: HZN_PATTERN
	ExchangeURL string // the agbot's URL, which stands in for anax's exchange: HZN_EXCHANGE_URL
	Arch        string // HZN_ARCH
	CPUs        int    // HZN_CPUS
	RAMMB       int64  // HZN_RAM, in MB
	HostIPs     []string
	// AllowPrivileged is the node policy's openhorizon.allowPrivileged.
	AllowPrivileged bool
	// Inputs are the node's user input (hzn register -f): they win over the agbot's values.
	Inputs []protocol.InputBlock
}

// PlatformEnv is anax's platform variables of a container of agreement id, as anax sets
// them (config.ENVVAR_PREFIX "HZN_").
func (n NodeContext) PlatformEnv(agreementID string) map[string]string {
	env := map[string]string{
		"HZN_AGREEMENTID":  agreementID,
		"HZN_ORGANIZATION": n.Org,
		"HZN_DEVICE_ID":    n.Node,
		"HZN_PATTERN":      n.Pattern,
		"HZN_ARCH":         n.Arch,
		"HZN_EXCHANGE_URL": n.ExchangeURL,
		"HZN_HOST_IPS":     strings.Join(n.HostIPs, ","),
		"HZN_CPUS":         strconv.Itoa(max(n.CPUs, 1)),
		"HZN_RAM":          strconv.FormatInt(n.RAMMB, 10),
	}
	return env
}

// containerEnv is the environment the proposal's containers get beyond their deployment's:
// the platform variables (every container; nothing replaces them) and, by container name, the
// user input of the container's service (node over agbot over default). A variable without
// a value declines the proposal.
func (m *Manager) containerEnv(p *protocol.Proposal) (platform map[string]string, inputs map[string]map[string]string, allowPriv bool, err error) {
	var nc NodeContext
	if m.node != nil {
		nc = m.node()
	}
	if nc.Arch == "" {
		nc.Arch = m.arch
	}
	inputs = map[string]map[string]string{}
	for _, svc := range p.Service.All() {
		in, err := protocol.ResolveInputs(svc, nc.Inputs)
		if err != nil {
			return nil, nil, false, err
		}
		for name := range svc.Deployment.Services {
			if len(in) > 0 {
				inputs[name] = in
			}
		}
	}
	return nc.PlatformEnv(p.Agreement), inputs, nc.AllowPrivileged, nil
}
