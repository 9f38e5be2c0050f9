package protocol

import (
	"errors"
	"testing"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr string
	}{
		{"1", Version{1, 0, 0}, ""},
		{"1.2", Version{1, 2, 0}, ""},
		{"1.2.3", Version{1, 2, 3}, ""},
		{"0.0.0", Version{}, ""},
		{"10.20.4294967295", Version{10, 20, 4294967295}, ""},
		{"", Version{}, `version "": must not be empty`},
		{"1.2.3.4", Version{}, `version "1.2.3.4": must be x, x.y or x.y.z`},
		{"01.2", Version{}, `version "01.2": part 1 must be a decimal number without leading zeros`},
		{"1..2", Version{}, `version "1..2": part 2 must be a decimal number without leading zeros`},
		{"1.x", Version{}, `version "1.x": part 2 must be a decimal number without leading zeros`},
		{"-1", Version{}, `version "-1": part 1 must be a decimal number without leading zeros`},
		{"4294967296", Version{}, `version "4294967296": part 1 is out of range`},
		{"INFINITY", Version{}, `version "INFINITY": part 1 must be a decimal number without leading zeros`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseVersion(tc.in)
			if tc.wantErr == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ParseVersion(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseVersion(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestParseVersionRange(t *testing.T) {
	tests := []struct {
		in      string
		want    string // String() of the parsed range
		in1     []string
		out     []string
		wantErr string
	}{
		{"", "[0.0.0,INFINITY)", []string{"0", "1.2.3", "99999"}, nil, ""},
		{"1.2.3", "[1.2.3,INFINITY)", []string{"1.2.3", "1.2.4", "2"}, []string{"1.2.2", "0.9", "1.2"}, ""},
		{"2", "[2.0.0,INFINITY)", []string{"2", "2.0.0", "3.1"}, []string{"1.9.9"}, ""},
		{"[1.0.0,2.0.0)", "[1.0.0,2.0.0)", []string{"1", "1.9.9"}, []string{"0.9.9", "2", "2.0.1"}, ""},
		{"(1.0.0,2.0.0]", "(1.0.0,2.0.0]", []string{"1.0.1", "2"}, []string{"1", "2.0.1"}, ""},
		{"[1.0,INFINITY)", "[1.0.0,INFINITY)", []string{"1", "1000"}, []string{"0.9"}, ""},
		{"[1.2.3,1.2.3]", "[1.2.3,1.2.3]", []string{"1.2.3"}, []string{"1.2.4", "1.2.2"}, ""},
		{"[0.0.0,INFINITY)", "[0.0.0,INFINITY)", []string{"0"}, nil, ""},
		{"[1.0.0, 2.0.0)", "", nil, nil, `version range "[1.0.0, 2.0.0)": must not contain whitespace`},
		{"1.0.0,2.0.0", "", nil, nil, `version range "1.0.0,2.0.0": must start with '[' or '('`},
		{"[1.0.0,2.0.0", "", nil, nil, `version range "[1.0.0,2.0.0": must end with ']' or ')'`},
		{"[1.0.0)", "", nil, nil, `version range "[1.0.0)": must hold exactly two versions separated by ','`},
		{"[1,2,3)", "", nil, nil, `version range "[1,2,3)": must hold exactly two versions separated by ','`},
		{"[a,2)", "", nil, nil, `version range "[a,2)": lower bound is not a version`},
		{"[1,b)", "", nil, nil, `version range "[1,b)": upper bound is not a version or INFINITY`},
		{"[INFINITY,INFINITY)", "", nil, nil, `version range "[INFINITY,INFINITY)": lower bound is not a version`},
		{"[2.0.0,1.0.0)", "", nil, nil, `version range "[2.0.0,1.0.0)": lower bound is above the upper bound`},
		{"[1.0.0,1.0.0)", "", nil, nil, `version range "[1.0.0,1.0.0)": is empty`},
		{"x.y.z", "", nil, nil, `version range "x.y.z": must be a version (at least) or an interval like [1.0.0,2.0.0)`},
		{"[", "", nil, nil, `version range "[": must end with ']' or ')'`},
		{"[1)", "", nil, nil, `version range "[1)": is too short for an interval like [1,2)`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseVersionRange(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseVersionRange(%q) = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVersionRange(%q) = %v", tc.in, err)
			}
			if r.String() != tc.want {
				t.Errorf("String() = %q, want %q", r.String(), tc.want)
			}
			for _, v := range tc.in1 {
				if !r.Contains(mustVersion(t, v)) {
					t.Errorf("%s does not contain %s, want it to", tc.in, v)
				}
			}
			for _, v := range tc.out {
				if r.Contains(mustVersion(t, v)) {
					t.Errorf("%s contains %s, want it not to", tc.in, v)
				}
			}
		})
	}
}

func TestVersionRangeOverlaps(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"", "1.0.0", true},
		{"[1,2)", "[2,3)", false},
		{"[1,2]", "[2,3)", true},
		{"[1,2]", "(2,3)", false},
		{"[1,2)", "1.5", true},
		{"3", "[1,2]", false},
	}
	for _, tc := range tests {
		a, _ := ParseVersionRange(tc.a)
		b, _ := ParseVersionRange(tc.b)
		if got := a.Overlaps(b); got != tc.want {
			t.Errorf("%q overlaps %q = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := b.Overlaps(a); got != tc.want {
			t.Errorf("%q overlaps %q = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

func mustVersion(t *testing.T, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
