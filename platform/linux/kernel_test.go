package linux

import "testing"

func TestParseKernelRelease(t *testing.T) {
	tests := []struct {
		name    string
		release string
		want    KernelVersion
		wantErr bool
	}{
		{"this machine", "6.18.44-fc-v669", KernelVersion{6, 18, 44}, false},
		{"debian", "6.1.0-18-arm64", KernelVersion{6, 1, 0}, false},
		{"ubuntu", "5.15.0-91-generic", KernelVersion{5, 15, 0}, false},
		{"raspberry pi", "6.6.31+rpt-rpi-v7", KernelVersion{6, 6, 31}, false},
		{"two fields", "6.5", KernelVersion{6, 5, 0}, false},
		{"trailing plus", "6.5.0+", KernelVersion{6, 5, 0}, false},
		{"newline", "6.8.0\n", KernelVersion{6, 8, 0}, false},
		{"empty", "", KernelVersion{}, true},
		{"one field", "6", KernelVersion{}, true},
		{"letters", "abc", KernelVersion{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKernelRelease(tc.release)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseKernelRelease(%q) error = %v, wantErr %v", tc.release, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ParseKernelRelease(%q) = %v, want %v", tc.release, got, tc.want)
			}
		})
	}
}

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		name         string
		v            KernelVersion
		major, minor int
		want         bool
	}{
		{"same", KernelVersion{6, 5, 0}, 6, 5, true},
		{"newer minor", KernelVersion{6, 18, 0}, 6, 5, true},
		{"older minor", KernelVersion{6, 4, 9}, 6, 5, false},
		{"newer major", KernelVersion{7, 0, 0}, 6, 5, true},
		{"older major", KernelVersion{5, 19, 0}, 6, 4, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.v.AtLeast(tc.major, tc.minor); got != tc.want {
				t.Errorf("%v.AtLeast(%d, %d) = %v, want %v", tc.v, tc.major, tc.minor, got, tc.want)
			}
		})
	}
}

func TestParseUmask(t *testing.T) {
	tests := []struct {
		name, status string
		want         uint32
	}{
		{"usual", "Name:\tagent\nUmask:\t0022\nState:\tR\n", 0o022},
		{"strict", "Umask:\t0077\n", 0o077},
		{"zero", "Umask:\t0000\n", 0},
		{"absent: assume the worst", "Name:\tagent\n", 0o777},
		{"garbage", "Umask:\tzz\n", 0o777},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseUmask(tc.status); got != tc.want {
				t.Errorf("parseUmask = %#o, want %#o", got, tc.want)
			}
		})
	}
}
