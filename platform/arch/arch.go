package arch

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// aliases maps the names that kernels, package managers and anax use for one architecture to
// the Open Horizon name. It is data so a new alias is a one-line change.
var aliases = map[string]string{
	"amd64": "amd64", "x86_64": "amd64", "x86-64": "amd64",
	"arm64": "arm64", "aarch64": "arm64", "armv8": "arm64", "armv8l": "arm64",
	"arm": "arm", "armhf": "arm", "armel": "arm", "armv6": "arm", "armv6l": "arm",
	"armv7": "arm", "armv7l": "arm", "arm32v7": "arm", "arm32v6": "arm",
	"386": "386", "i386": "386", "i686": "386",
	"ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
}

// Normalize returns the Open Horizon architecture name for arch ("aarch64" -> "arm64",
// "armv7l" -> "arm", "x86_64" -> "amd64"), or arch lower-cased when it is not known.
func Normalize(arch string) string {
	a := strings.ToLower(strings.TrimSpace(arch))
	if n, ok := aliases[a]; ok {
		return n
	}
	return a
}

// Matches reports whether a service built for serviceArch may run on a node of nodeArch.
// An empty or "*" service arch matches every node (anax's rule for secretBinding.serviceArch).
func Matches(serviceArch, nodeArch string) bool {
	if serviceArch == "" || serviceArch == "*" {
		return true
	}
	return Normalize(serviceArch) == Normalize(nodeArch)
}

// Node returns the architecture this binary runs as, in Open Horizon naming.
func Node() string { return Normalize(runtime.GOARCH) }

// Variant returns the GOARM variant ("7", "6", ...) the binary was built for on 32-bit ARM, and
// "" elsewhere. It is read from the build settings, so it matches the actual instruction set.
func Variant() string {
	if runtime.GOARCH != "arm" {
		return ""
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" {
				return s.Value
			}
		}
	}
	return ""
}

// ParseDeviceModel returns the device model from the content of /proc/device-tree/model (as on
// Raspberry Pi and most ARM boards): NUL-terminated, possibly padded. Empty when absent.
func ParseDeviceModel(raw []byte) string {
	return strings.TrimSpace(strings.TrimRight(string(raw), "\x00"))
}
