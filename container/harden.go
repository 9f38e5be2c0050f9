package container

import (
	"fmt"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/edge-secrets/anax-agent/protocol"
)

// DefaultPidsLimit is how many processes and threads a service container may have at once,
// so a fork bomb in one service can not exhaust the node's pid space.
const DefaultPidsLimit = 1024

// dockerDefaultCaps are the capabilities Docker gives a container by default. A service may
// add back any of them; others only if the node allows them (Options.ExtraCapabilities), so no
// proposal gets more than Docker's defaults unless the node's operator says so.
var dockerDefaultCaps = map[string]bool{
	"CAP_CHOWN": true, "CAP_DAC_OVERRIDE": true, "CAP_FSETID": true, "CAP_FOWNER": true,
	"CAP_MKNOD": true, "CAP_NET_RAW": true, "CAP_SETGID": true, "CAP_SETUID": true,
	"CAP_SETFCAP": true, "CAP_SETPCAP": true, "CAP_NET_BIND_SERVICE": true, "CAP_SYS_CHROOT": true,
	"CAP_KILL": true, "CAP_AUDIT_WRITE": true,
}

// noNewPrivileges stops setuid binaries and file capabilities from raising a process's
// privileges inside the container.
const noNewPrivileges = "no-new-privileges"

// hostConfig is the engine's host configuration of a service container: Docker's defaults
// hardened. Every capability is dropped and only those the service declares (cap_add) are
// added back; no-new-privileges; at most DefaultPidsLimit processes; the deployment's memory
// limit, if any, with no swap beyond it.
func (w *Worker) hostConfig(spec Spec, mounts []mount.Mount) (*container.HostConfig, error) {
	caps := make([]string, 0, len(spec.CapAdd))
	seen := map[string]bool{}
	for _, name := range spec.CapAdd {
		c, err := protocol.CanonicalCapability(name)
		if err != nil {
			return nil, fmt.Errorf("cap_add: %w: %w", err, ErrInvalid)
		}
		if !dockerDefaultCaps[c] && !w.extraCaps[c] {
			return nil, fmt.Errorf("cap_add: %s is not among Docker's default capabilities and this node does not allow it (allow_capabilities): %w", c, ErrPolicy)
		}
		if !seen[c] {
			seen[c] = true
			caps = append(caps, c)
		}
	}
	if m := spec.MemoryMB; m != 0 && (m < protocol.MinMemoryMB || m > protocol.MaxMemoryMB) {
		return nil, fmt.Errorf("memory limit %d MiB: must be 0 (none) or %d..%d: %w", m, protocol.MinMemoryMB, protocol.MaxMemoryMB, ErrInvalid)
	}
	pids := int64(DefaultPidsLimit)
	host := &container.HostConfig{
		Mounts:        mounts,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		CapDrop:       []string{"ALL"},
		SecurityOpt:   []string{noNewPrivileges},
		Resources:     container.Resources{PidsLimit: &pids},
	}
	if len(caps) > 0 {
		host.CapAdd = caps
	}
	if spec.MemoryMB > 0 {
		host.Memory = spec.MemoryMB << 20
		host.MemorySwap = host.Memory // memory+swap equal to memory: no swap
	}
	return host, nil
}
