package protocol

import (
	"fmt"
	"strings"
)

// Resource and privilege fields of a container, as anax's deployment string names them
// (cap_add, max_memory_mb). The agent drops every capability a container does not declare.

// MinMemoryMB and MaxMemoryMB bound Container.MaxMemoryMB when set: the engine refuses less
// than 6 MiB, and more than 1 TiB is a typo.
const (
	MinMemoryMB = 6
	MaxMemoryMB = 1 << 20
)

// capabilities are the Linux capabilities (capability.h, kernel 5.9+), without "CAP_".
var capabilities = map[string]bool{
	"CHOWN": true, "DAC_OVERRIDE": true, "DAC_READ_SEARCH": true, "FOWNER": true, "FSETID": true,
	"KILL": true, "SETGID": true, "SETUID": true, "SETPCAP": true, "LINUX_IMMUTABLE": true,
	"NET_BIND_SERVICE": true, "NET_BROADCAST": true, "NET_ADMIN": true, "NET_RAW": true,
	"IPC_LOCK": true, "IPC_OWNER": true, "SYS_MODULE": true, "SYS_RAWIO": true, "SYS_CHROOT": true,
	"SYS_PTRACE": true, "SYS_PACCT": true, "SYS_ADMIN": true, "SYS_BOOT": true, "SYS_NICE": true,
	"SYS_RESOURCE": true, "SYS_TIME": true, "SYS_TTY_CONFIG": true, "MKNOD": true, "LEASE": true,
	"AUDIT_WRITE": true, "AUDIT_CONTROL": true, "SETFCAP": true, "MAC_OVERRIDE": true,
	"MAC_ADMIN": true, "SYSLOG": true, "WAKE_ALARM": true, "BLOCK_SUSPEND": true, "AUDIT_READ": true,
	"PERFMON": true, "BPF": true, "CHECKPOINT_RESTORE": true,
}

// CanonicalCapability returns a capability name as the engine takes it, "CAP_<NAME>". It
// accepts "NAME" or "CAP_NAME" in any case, like Docker; "ALL" is refused, because it would
// undo the drop of every capability the container does not declare.
func CanonicalCapability(name string) (string, error) {
	up := strings.TrimPrefix(strings.ToUpper(name), "CAP_")
	if up == "ALL" {
		return "", fmt.Errorf("capability %s: ALL is refused: list the capabilities the service needs", quote(name))
	}
	if !capabilities[up] {
		return "", fmt.Errorf("capability %s: not a Linux capability (e.g. NET_BIND_SERVICE, CHOWN)", quote(name))
	}
	return "CAP_" + up, nil
}

// validateResources checks cap_add and max_memory_mb.
func (c *Container) validateResources(f string) error {
	if len(c.CapAdd) > len(capabilities) {
		return invalid(f+".cap_add", "has %d entries, more than the %d Linux capabilities", len(c.CapAdd), len(capabilities))
	}
	seen := map[string]int{}
	for i, name := range c.CapAdd {
		cf := fmt.Sprintf("%s.cap_add[%d]", f, i)
		canon, err := CanonicalCapability(name)
		if err != nil {
			return invalidCause(cf, err)
		}
		if j, dup := seen[canon]; dup {
			return invalid(cf, "%s is listed twice (also at cap_add[%d])", canon, j)
		}
		seen[canon] = i
	}
	if m := c.MaxMemoryMB; m != 0 && (m < MinMemoryMB || m > MaxMemoryMB) {
		return invalid(f+".max_memory_mb", "must be 0 (no limit) or %d..%d, got %d", MinMemoryMB, MaxMemoryMB, m)
	}
	return nil
}
