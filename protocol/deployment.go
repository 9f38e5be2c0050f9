package protocol

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
)

// Deployment fields of anax's deployment string beyond image, command, environment, user,
// cap_add and max_memory_mb: their syntax and the typed values the node runs. Whether the
// node allows a field (privileged, host network, devices, a bind's source) is the node's
// decision, not a syntax rule: the container package makes it.

// Bounds of the deployment fields.
const (
	maxMounts  = 64
	maxPorts   = 64
	MaxCPUs    = 1024 // max_cpus above this is a typo
	minCPUs    = 0.01
	maxPathLen = 4096
)

// Bind is a parsed binds entry: a host directory (Source absolute) or a named Docker volume
// (Volume true) mounted at Target.
type Bind struct {
	Source   string
	Target   string
	ReadOnly bool
	Volume   bool
}

// ParseBind parses anax's "source:target[:ro|rw]". A source that is not an absolute path
// names a Docker volume ([A-Za-z0-9][A-Za-z0-9_.-]*). Paths must be clean.
func ParseBind(s string) (Bind, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Bind{}, fmt.Errorf("bind %s: must be source:target or source:target:ro|rw", quote(s))
	}
	b := Bind{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return Bind{}, fmt.Errorf("bind %s: option %s: only ro or rw", quote(s), quote(parts[2]))
		}
	}
	if strings.HasPrefix(b.Source, "/") {
		if err := cleanAbs(b.Source); err != nil {
			return Bind{}, fmt.Errorf("bind %s: source: %w", quote(s), err)
		}
	} else {
		b.Volume = true
		if err := validateContainerName("", b.Source); err != nil {
			return Bind{}, fmt.Errorf("bind %s: source is neither an absolute path nor a volume name [A-Za-z0-9][A-Za-z0-9_.-]*", quote(s))
		}
	}
	if err := cleanAbs(b.Target); err != nil {
		return Bind{}, fmt.Errorf("bind %s: target: %w", quote(s), err)
	}
	if b.Target == "/" {
		return Bind{}, fmt.Errorf("bind %s: target must not be /", quote(s))
	}
	return b, nil
}

// Device is a parsed devices entry: host device node, path in the container, cgroup
// permissions (a subset of "rwm", default "rwm").
type Device struct {
	Host, Container, Perms string
}

// ParseDevice parses "/dev/x", "/dev/x:/dev/y" or "/dev/x:/dev/y:rwm". The host path must
// be under /dev.
func ParseDevice(s string) (Device, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 {
		return Device{}, fmt.Errorf("device %s: must be host[:container[:perms]]", quote(s))
	}
	d := Device{Host: parts[0], Container: parts[0], Perms: "rwm"}
	if len(parts) > 1 {
		d.Container = parts[1]
	}
	if len(parts) > 2 {
		d.Perms = parts[2]
	}
	if err := cleanAbs(d.Host); err != nil || !strings.HasPrefix(d.Host, "/dev/") {
		return Device{}, fmt.Errorf("device %s: host path must be a clean path under /dev/", quote(s))
	}
	if err := cleanAbs(d.Container); err != nil || d.Container == "/" {
		return Device{}, fmt.Errorf("device %s: container path must be a clean absolute path", quote(s))
	}
	if d.Perms == "" || strings.Trim(d.Perms, "rwm") != "" || len(d.Perms) > 3 {
		return Device{}, fmt.Errorf("device %s: permissions must be a subset of rwm", quote(s))
	}
	return d, nil
}

// PortBinding is an anax ports (or specific_ports) entry, Docker's shape:
// {"HostPort": "5200:6414/tcp", "HostIP": "0.0.0.0"}.
type PortBinding struct {
	HostPort string `json:"HostPort"`
	HostIP   string `json:"HostIP,omitempty"`
}

// EphemeralPort publishes a container port on a port the engine picks.
type EphemeralPort struct {
	LocalhostOnly   bool   `json:"localhost_only,omitempty"`
	PortAndProtocol string `json:"port_and_protocol"`
}

// Port is a parsed port publication. HostPort 0 lets the engine pick one.
type Port struct {
	HostIP        string // "" is every interface
	HostPort      uint16
	ContainerPort uint16
	Proto         string // tcp or udp
}

// Parse reads HostPort as anax does: "host:container[/proto]" or "container[/proto]" (the
// same port on the host); proto tcp (default) or udp.
func (p PortBinding) Parse() (Port, error) {
	spec, proto, _ := strings.Cut(p.HostPort, "/")
	out := Port{Proto: "tcp", HostIP: p.HostIP}
	if proto != "" {
		if proto != "tcp" && proto != "udp" {
			return Port{}, fmt.Errorf("port %s: protocol must be tcp or udp", quote(p.HostPort))
		}
		out.Proto = proto
	}
	host, ctr, two := strings.Cut(spec, ":")
	if !two {
		ctr = host
	}
	var err error
	if out.ContainerPort, err = portNumber(ctr); err != nil {
		return Port{}, fmt.Errorf("port %s: %w", quote(p.HostPort), err)
	}
	if out.HostPort, err = portNumber(host); err != nil {
		return Port{}, fmt.Errorf("port %s: %w", quote(p.HostPort), err)
	}
	if p.HostIP != "" {
		if err := hostIP(p.HostIP); err != nil {
			return Port{}, fmt.Errorf("port %s: HostIP: %w", quote(p.HostPort), err)
		}
	}
	return out, nil
}

// Parse reads port_and_protocol ("7777" or "7777/udp"); the engine picks the host port.
func (e EphemeralPort) Parse() (Port, error) {
	p, err := PortBinding{HostPort: e.PortAndProtocol}.Parse()
	if err != nil {
		return Port{}, err
	}
	p.HostPort = 0
	if e.LocalhostOnly {
		p.HostIP = "127.0.0.1"
	}
	return p, nil
}

func portNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s is not a port number 1..65535", quote(s))
	}
	return uint16(n), nil
}

// hostIP accepts a dotted IPv4 address or an IPv6 address of hex digits and colons.
func hostIP(s string) error {
	if len(s) > 45 || strings.Trim(s, "0123456789abcdefABCDEF:.") != "" || s == "" {
		return fmt.Errorf("%s is not an IP address", quote(s))
	}
	return nil
}

// tmpfsOptions are the tmpfs mount options a service may set.
var tmpfsOptions = map[string]bool{"size": true, "mode": true, "uid": true, "gid": true,
	"ro": true, "rw": true, "noexec": true, "exec": true, "nosuid": true, "nodev": true}

// ParseTmpfs checks a tmpfs entry: a clean absolute target other than / and comma separated
// options among size=, mode=, uid=, gid=, ro, rw, noexec, exec, nosuid, nodev.
func ParseTmpfs(target, options string) error {
	if err := cleanAbs(target); err != nil || target == "/" {
		return fmt.Errorf("tmpfs %s: target must be a clean absolute path other than /", quote(target))
	}
	if options == "" {
		return nil
	}
	for _, o := range strings.Split(options, ",") {
		k, v, hasV := strings.Cut(o, "=")
		if !tmpfsOptions[k] || hasV != (k == "size" || k == "mode" || k == "uid" || k == "gid") {
			return fmt.Errorf("tmpfs %s: option %s is not one of size=, mode=, uid=, gid=, ro, rw, noexec, exec, nosuid, nodev", quote(target), quote(o))
		}
		if hasV && (v == "" || strings.Trim(v, "0123456789kmgKMG") != "") {
			return fmt.Errorf("tmpfs %s: option %s: value must be a number (size may end in k, m or g)", quote(target), quote(o))
		}
	}
	return nil
}

// logDrivers are the engine log drivers a service may pick: those that keep logs on the node.
var logDrivers = map[string]bool{"": true, "none": true, "local": true, "json-file": true, "syslog": true, "journald": true}

func cleanAbs(p string) error {
	if p == "" || len(p) > maxPathLen || !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsAny(p, "\x00\n,") {
		return fmt.Errorf("%s must be a clean absolute path", quote(p))
	}
	return nil
}

// AllPorts parses ports, specific_ports and ephemeral_ports, in that order.
func (c *Container) AllPorts() ([]Port, error) {
	var out []Port
	for _, list := range [][]PortBinding{c.Ports, c.SpecificPorts} {
		for _, pb := range list {
			p, err := pb.Parse()
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	for _, e := range c.EphemeralPorts {
		p, err := e.Parse()
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// validateDeployment checks the syntax of the fields above.
func (c *Container) validateDeployment(f string) error {
	if len(c.Binds) > maxMounts {
		return invalid(f+".binds", "has %d entries, more than %d", len(c.Binds), maxMounts)
	}
	for i, s := range c.Binds {
		if _, err := ParseBind(s); err != nil {
			return invalidCause(fmt.Sprintf("%s.binds[%d]", f, i), err)
		}
	}
	if len(c.Devices) > maxMounts {
		return invalid(f+".devices", "has %d entries, more than %d", len(c.Devices), maxMounts)
	}
	for i, s := range c.Devices {
		if _, err := ParseDevice(s); err != nil {
			return invalidCause(fmt.Sprintf("%s.devices[%d]", f, i), err)
		}
	}
	if len(c.Tmpfs) > maxMounts {
		return invalid(f+".tmpfs", "has %d entries, more than %d", len(c.Tmpfs), maxMounts)
	}
	for _, t := range sortedKeys(c.Tmpfs) {
		if err := ParseTmpfs(t, c.Tmpfs[t]); err != nil {
			return invalidCause(keyField(f+".tmpfs", t), err)
		}
	}
	if n := len(c.Ports) + len(c.SpecificPorts) + len(c.EphemeralPorts); n > maxPorts {
		return invalid(f+".ports", "has %d entries (with specific_ports and ephemeral_ports), more than %d", n, maxPorts)
	}
	if _, err := c.AllPorts(); err != nil {
		return invalidCause(f+".ports", err)
	}
	switch c.Network {
	case "", "bridge", "host":
	default:
		return invalid(f+".network", "must be \"\", \"bridge\" or \"host\", got %s: other networks are not supported", quote(c.Network))
	}
	if len(c.Entrypoint) > maxArgs {
		return invalid(f+".entrypoint", "has %d arguments, more than %d", len(c.Entrypoint), maxArgs)
	}
	for i, a := range c.Entrypoint {
		if err := validateText(fmt.Sprintf("%s.entrypoint[%d]", f, i), a, maxArgLen, true); err != nil {
			return err
		}
	}
	if m := c.MaxCPUs; m != 0 && (math.IsNaN(m) || m < minCPUs || m > MaxCPUs) {
		return invalid(f+".max_cpus", "must be 0 (no limit) or %g..%d, got %g", minCPUs, MaxCPUs, m)
	}
	if !logDrivers[c.LogDriver] {
		return invalid(f+".log_driver", "must be none, local, json-file, syslog or journald (drivers that keep logs on the node), got %s", quote(c.LogDriver))
	}
	return validateText(f+".variation_label", c.VariationLabel, maxTextLen, true)
}
