package linux

import (
	"fmt"
	"strconv"
	"strings"
)

// KernelVersion is the numeric prefix of a kernel release such as "6.18.44-fc-v669".
type KernelVersion struct {
	Major, Minor, Patch int
}

// ParseKernelRelease reads the leading "major.minor[.patch]" of a uname release string.
func ParseKernelRelease(release string) (KernelVersion, error) {
	var v KernelVersion
	s := strings.TrimSpace(release)
	// Cut at the first byte that is neither a digit nor a dot: "5.15.0-91-generic", "6.5.0+".
	end := strings.IndexFunc(s, func(r rune) bool { return r != '.' && (r < '0' || r > '9') })
	if end >= 0 {
		s = s[:end]
	}
	parts := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(parts) < 2 {
		return v, fmt.Errorf("kernel release %q: want major.minor[.patch]", release)
	}
	nums := make([]int, 3)
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 0 {
			return v, fmt.Errorf("kernel release %q: field %d is not a number", release, i+1)
		}
		nums[i] = n
	}
	return KernelVersion{Major: nums[0], Minor: nums[1], Patch: nums[2]}, nil
}

// AtLeast reports whether v is major.minor or newer.
func (v KernelVersion) AtLeast(major, minor int) bool {
	if v.Major != major {
		return v.Major > major
	}
	return v.Minor >= minor
}

func (v KernelVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// parseUmask reads the "Umask:" line of /proc/<pid>/status (Linux 4.7+); 0o777 when absent.
func parseUmask(status string) uint32 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil || n > 0o777 {
				return 0o777
			}
			return uint32(n)
		}
	}
	return 0o777
}
