package reliability

import (
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// TestHostileDeployment: proposals whose deployment would give a service the node's secrets,
// the kernel's interfaces, the container engine or privileges the node policy does not grant
// are declined with a reason naming the field; nothing of them is left on the node (store,
// container, agreement) and no value reaches the reason or the log.
func TestHostileDeployment(t *testing.T) {
	n := newNode(t, "", 0)
	cases := []struct {
		name, mention string
		edit          func(c *protocol.Container)
	}{
		{"bind the secrets root", "reaches " + n.root, func(c *protocol.Container) { c.Binds = []string{n.root + ":/x"} }},
		{"bind a store under the secrets root", "reaches " + n.root, func(c *protocol.Container) { c.Binds = []string{n.root + "/stores:/x:ro"} }},
		{"bind the state dir", "reaches " + n.state, func(c *protocol.Container) { c.Binds = []string{n.state + ":/x:ro"} }},
		{"bind the host root", "host's root", func(c *protocol.Container) { c.Binds = []string{"/:/host"} }},
		{"bind /proc", "reaches /proc", func(c *protocol.Container) { c.Binds = []string{"/proc:/hostproc:ro"} }},
		{"bind a process root", "reaches /proc", func(c *protocol.Container) { c.Binds = []string{"/proc/1/root:/h"} }},
		{"bind /sys", "reaches /sys", func(c *protocol.Container) { c.Binds = []string{"/sys:/s"} }},
		{"bind the docker socket", "engine's socket", func(c *protocol.Container) { c.Binds = []string{"/var/run/docker.sock:/var/run/docker.sock"} }},
		{"bind /run", "reaches /run", func(c *protocol.Container) { c.Binds = []string{"/run:/r"} }},
		{"bind /etc writable", "host system directory", func(c *protocol.Container) { c.Binds = []string{"/etc:/hostetc"} }},
		{"bind /dev", "reaches /dev", func(c *protocol.Container) { c.Binds = []string{"/dev:/hostdev"} }},
		{"bind over the secret view", "secrets", func(c *protocol.Container) { c.Binds = []string{"/tmp:/open-horizon-secrets"} }},
		{"tmpfs over a secret", "secrets", func(c *protocol.Container) { c.Tmpfs = map[string]string{"/db": ""} }},
		{"privileged", "privileged", func(c *protocol.Container) { c.Privileged = true }},
		{"host network", "network host", func(c *protocol.Container) { c.Network = "host" }},
		{"device /dev/mem", "devices", func(c *protocol.Container) { c.Devices = []string{"/dev/mem"} }},
		{"device disk", "devices", func(c *protocol.Container) { c.Devices = []string{"/dev/sda:/dev/sda:rwm"} }},
		{"cap_add SYS_ADMIN", "cap_add", func(c *protocol.Container) { c.CapAdd = []string{"SYS_ADMIN"} }},
		{"device outside /dev", "under /dev", func(c *protocol.Container) { c.Devices = []string{"/etc/shadow:/dev/x"} }},
		{"relative bind", "binds", func(c *protocol.Container) { c.Binds = []string{"../../etc:/x"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := uniqueID("de91")
			s := n.service("db")
			c := s.Deployment.Services["reader"]
			tc.edit(&c)
			s.Deployment.Services["reader"] = c
			rep := n.m.Propose(n.ctx, &protocol.Proposal{Meta: n.meta(protocol.TypeProposal, id, 1), Service: s,
				Secrets: map[string]protocol.SecretValue{"db": {Key: "k", Value: canaryDB}}})
			if rep.Status != protocol.StatusDeclined {
				t.Fatalf("reply = %s, want declined", rep.Status)
			}
			if !strings.Contains(rep.Reason, tc.mention) {
				t.Errorf("reason %q does not name %q", rep.Reason, tc.mention)
			}
			if strings.Contains(rep.Reason, "CANARY-") {
				t.Errorf("the reason repeats a secret value")
			}
			if _, err := n.m.Agreement(id); err == nil {
				t.Errorf("the declined proposal left its agreement")
			}
			if stores, _ := n.fs.Stores(); len(stores) != 0 {
				t.Errorf("the declined proposal left %d stores", len(stores))
			}
			if cs, _ := n.worker.List(n.ctx); len(cs) != 0 {
				t.Errorf("the declined proposal left %d containers", len(cs))
			}
		})
	}
}
