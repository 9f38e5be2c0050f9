package arch

import (
	"runtime"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amd64", "amd64"}, {"x86_64", "amd64"}, {"aarch64", "arm64"}, {"ARM64", "arm64"},
		{"armv7l", "arm"}, {"armhf", "arm"}, {"arm", "arm"}, {" arm64 ", "arm64"}, {"mips", "mips"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := Normalize(tc.in); got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		name          string
		service, node string
		want          bool
	}{
		{"any star", "*", "arm", true},
		{"any empty", "", "arm64", true},
		{"same", "arm64", "arm64", true},
		{"alias", "aarch64", "arm64", true},
		{"32 vs 64", "arm", "arm64", false},
		{"amd vs arm", "amd64", "arm64", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Matches(tc.service, tc.node); got != tc.want {
				t.Errorf("Matches(%q, %q) = %v, want %v", tc.service, tc.node, got, tc.want)
			}
		})
	}
}

func TestNodeAndVariant(t *testing.T) {
	if got, want := Node(), Normalize(runtime.GOARCH); got != want {
		t.Errorf("Node() = %q, want %q", got, want)
	}
	// Under qemu for armv7 (make test-arm) the build setting must say 7.
	if runtime.GOARCH == "arm" && Variant() == "" {
		t.Errorf("Variant() is empty on GOARCH=arm")
	}
	if runtime.GOARCH != "arm" && Variant() != "" {
		t.Errorf("Variant() = %q on %s, want empty", Variant(), runtime.GOARCH)
	}
}

func TestParseDeviceModel(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"pi", "Raspberry Pi 4 Model B Rev 1.4\x00", "Raspberry Pi 4 Model B Rev 1.4"},
		{"empty", "", ""},
		{"padded", "Board X \x00\x00", "Board X"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseDeviceModel([]byte(tc.raw)); got != tc.want {
				t.Errorf("ParseDeviceModel(%q) = %q, want %q", tc.raw, got, tc.want)
			}
		})
	}
}
