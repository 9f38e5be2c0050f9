package container

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"

	"github.com/edge-secrets/anax-agent/ess"
)

// alwaysProtected are host paths no bind may reach, whatever the node allows: the kernel's
// interfaces (a container could change the host through them).
var alwaysProtected = []string{"/proc", "/sys"}

// hostSystem are the host's system directories: a service that binds them (at, under or
// above) could change the host (/etc/passwd, /root/.ssh, device nodes in /dev, binaries),
// so only where the node allows privileged services. anax's documentation asks for
// privileged there too.
var hostSystem = []string{"/etc", "/boot", "/root", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
	"/dev", "/var/lib", "/home"}

// engineSockets are the container engine's sockets: root on the host for whoever can write
// them. Bound only where Options.AllowDockerSocket says so.
var engineSockets = []string{"/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/var/run/containerd"}

// applyDeployment adds the deployment fields of spec to the engine's configuration, refusing
// with ErrPolicy what the node does not allow: privileged, host network, devices and host
// ports below 1024 (anax: "ports reserved for root") without inst.AllowPrivileged; binds onto protected host paths; mounts over the secret paths.
func (w *Worker) applyDeployment(inst *Instance, spec Spec, secrets []string, cfg *container.Config, host *container.HostConfig) error {
	needPriv := func(field string) error {
		return fmt.Errorf("%s: this node's policy does not set openhorizon.allowPrivileged: %w", field, ErrPolicy)
	}
	if spec.Privileged {
		if !inst.AllowPrivileged {
			return needPriv("privileged")
		}
		host.Privileged = true
		host.CapDrop = nil // privileged has every capability; no-new-privileges and limits stay
	}
	if spec.HostNetwork {
		if !inst.AllowPrivileged {
			return needPriv("network host")
		}
		host.NetworkMode = "host"
	}
	if len(spec.Devices) > 0 && !inst.AllowPrivileged {
		return needPriv(fmt.Sprintf("devices (%s)", spec.Devices[0].Host))
	}
	for _, d := range spec.Devices {
		if !strings.HasPrefix(d.Host, "/dev/") || !isCleanAbs(d.Host) || !isCleanAbs(d.Container) {
			return fmt.Errorf("device %q: host path must be a clean path under /dev/: %w", d.Host, ErrInvalid)
		}
		host.Resources.Devices = append(host.Resources.Devices, container.DeviceMapping{
			PathOnHost: d.Host, PathInContainer: d.Container, CgroupPermissions: d.Perms})
	}
	reserved := reservedTargets(secrets)
	for _, b := range spec.Binds {
		if err := checkTarget("bind "+b.Target, b.Target, reserved); err != nil {
			return err
		}
		m := mount.Mount{Type: mount.TypeVolume, Source: VolumeName(inst.Service, b.Source), Target: b.Target, ReadOnly: b.ReadOnly}
		if !b.Volume {
			if err := w.checkBindSource(b.Source, inst.AllowPrivileged); err != nil {
				return fmt.Errorf("bind %s:%s: %w", b.Source, b.Target, err)
			}
			m.Type, m.Source = mount.TypeBind, b.Source
		}
		host.Mounts = append(host.Mounts, m)
	}
	if len(spec.Tmpfs) > 0 {
		host.Tmpfs = map[string]string{}
		for t, o := range spec.Tmpfs {
			if err := checkTarget("tmpfs "+t, t, reserved); err != nil {
				return err
			}
			host.Tmpfs[t] = o
		}
	}
	for _, p := range spec.Ports {
		if p.HostPort != 0 && p.HostPort < 1024 && !inst.AllowPrivileged {
			return needPriv(fmt.Sprintf("ports: host port %d (below 1024)", p.HostPort))
		}
	}
	if err := addPorts(spec, cfg, host); err != nil {
		return err
	}
	if spec.CPUs < 0 || spec.CPUs > 1024 {
		return fmt.Errorf("max_cpus %g: must be 0..1024: %w", spec.CPUs, ErrInvalid)
	}
	host.NanoCPUs = int64(spec.CPUs * 1e9)
	host.LogConfig.Type = spec.LogDriver
	if spec.Entrypoint != nil {
		cfg.Entrypoint = append([]string(nil), spec.Entrypoint...)
	}
	return nil
}

// reservedTargets are the container paths the agent mounts: no bind or tmpfs goes over them.
func reservedTargets(secrets []string) []string {
	out := []string{DirViewTarget, ess.AuthTarget, ess.CertTarget, ess.SocketDir}
	for _, s := range secrets {
		out = append(out, "/"+s)
	}
	return out
}

func checkTarget(what, target string, reserved []string) error {
	if !isCleanAbs(target) || target == "/" {
		return fmt.Errorf("%s: target must be a clean absolute path other than /: %w", what, ErrInvalid)
	}
	for _, r := range reserved {
		if within(target, r) {
			return fmt.Errorf("%s: the agent mounts the service's secrets at %s: %w", what, r, ErrPolicy)
		}
	}
	return nil
}

// within reports whether p is dir or under it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// checkBindSource refuses a host source that is, is under, or contains a protected path:
// the secrets root, ESS root and state directory (Options.ProtectedPaths), /proc, /sys, the
// engine's sockets unless allowed, and the host's system directories unless the node allows
// privileged services. Symbolic links in the existing part of the path are
// resolved first, so a link to /proc is /proc.
func (w *Worker) checkBindSource(src string, allowPrivileged bool) error {
	if !isCleanAbs(src) {
		return fmt.Errorf("source must be a clean absolute path: %w", ErrInvalid)
	}
	type rule struct {
		path, why string
	}
	var rules []rule
	for _, p := range alwaysProtected {
		rules = append(rules, rule{p, "the kernel's interfaces are never bound"})
	}
	for _, p := range w.protected {
		rules = append(rules, rule{p, "the agent's secrets, ESS and state are never bound"})
	}
	if !allowPrivileged {
		for _, p := range hostSystem {
			rules = append(rules, rule{p, "a host system directory needs openhorizon.allowPrivileged in the node policy"})
		}
	}
	if !w.dockerSocket {
		for _, p := range engineSockets {
			rules = append(rules, rule{p, "the container engine's socket is root on the host (allow_docker_socket)"})
		}
	}
	check := func(p string) error {
		if p == "/" {
			return fmt.Errorf("source /: the host's root holds the agent's secrets: %w", ErrPolicy)
		}
		for _, r := range rules {
			if within(p, r.path) || within(r.path, p) {
				return fmt.Errorf("source %s reaches %s: %s: %w", p, r.path, r.why, ErrPolicy)
			}
		}
		return nil
	}
	if err := check(src); err != nil {
		return err
	}
	real, err := resolveExisting(src)
	if err != nil {
		return fmt.Errorf("source: %w: %w", err, ErrInvalid)
	}
	return check(real)
}

// resolveExisting resolves symbolic links in the longest existing prefix of p and appends the
// rest (which the engine would create as directories).
func resolveExisting(p string) (string, error) {
	rest := ""
	cur := p
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if cur == "/" {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = filepath.Dir(cur)
	}
}

// addPorts publishes the deployment's ports.
func addPorts(spec Spec, cfg *container.Config, host *container.HostConfig) error {
	if len(spec.Ports) == 0 {
		return nil
	}
	cfg.ExposedPorts = nat.PortSet{}
	host.PortBindings = nat.PortMap{}
	for _, p := range spec.Ports {
		if p.ContainerPort == 0 || (p.Proto != "tcp" && p.Proto != "udp") {
			return fmt.Errorf("port %d/%s: want a port 1..65535 and tcp or udp: %w", p.ContainerPort, p.Proto, ErrInvalid)
		}
		port := nat.Port(strconv.Itoa(int(p.ContainerPort)) + "/" + p.Proto)
		cfg.ExposedPorts[port] = struct{}{}
		hp := ""
		if p.HostPort != 0 {
			hp = strconv.Itoa(int(p.HostPort))
		}
		host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: hp})
	}
	return nil
}

// VolumeName is the engine volume a deployment's named volume maps to: the name prefixed
// with a digest of the service's org and url, so one service keeps its data across versions
// and agreements, and no other service (of this or another org) can name its volume.
func VolumeName(s Service, name string) string {
	sum := sha256.Sum256([]byte(s.Org + "\x00" + s.URL))
	return "hzn-" + hex.EncodeToString(sum[:8]) + "-" + name
}
