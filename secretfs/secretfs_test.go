package secretfs

import (
	"errors"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Pure tests: they run on every platform.

func TestValidateID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"simple", "svc1", true},
		{"agreement style", "a1b2-c3_d4.e5", true},
		{"empty", "", false},
		{"dot", ".", false},
		{"dotdot", "..", false},
		{"leading dot", ".hidden", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"nul", "a\x00b", false},
		{"too long", strings.Repeat("a", 256), false},
		{"longest", strings.Repeat("a", 255), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

// allOnes32 is (uint32)(-1), which chown reads as "do not change".
var allOnes32 uint64 = 1<<32 - 1

func TestValidateSpec(t *testing.T) {
	good := Secret{Name: "token", Value: []byte("CANARY-spec")}
	tests := []struct {
		name     string
		spec     Spec
		wantName bool // the error also wraps protocol.ErrInvalidSecretName
		ok       bool
	}{
		{"good", Spec{ID: "s", UID: 1000, GID: 1000, Secrets: []Secret{good}}, false, true},
		{"no secrets", Spec{ID: "s"}, false, true},
		{"bad id", Spec{ID: "../x", Secrets: []Secret{good}}, false, false},
		{"negative uid", Spec{ID: "s", UID: -1}, false, false},
		{"uid means do not change", Spec{ID: "s", GID: int(allOnes32)}, false, false}, // -1 on 32-bit: invalid too
		{"empty name", Spec{ID: "s", Secrets: []Secret{{Name: ""}}}, true, false},
		{"dotdot name", Spec{ID: "s", Secrets: []Secret{{Name: ".."}}}, true, false},
		{"slash name", Spec{ID: "s", Secrets: []Secret{{Name: "a/b"}}}, true, false},
		{"reserved name", Spec{ID: "s", Secrets: []Secret{{Name: "etc"}}}, true, false},
		{"hidden name", Spec{ID: "s", Secrets: []Secret{{Name: ".data"}}}, true, false},
		{"duplicate", Spec{ID: "s", Secrets: []Secret{good, good}}, false, false},
		{"bad format", Spec{ID: "s", Secrets: []Secret{{Name: "x", Format: "yaml"}}}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSpec(tc.spec)
			if (err == nil) != tc.ok {
				t.Fatalf("validateSpec = %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if got := errors.Is(err, protocol.ErrInvalidSecretName); got != tc.wantName {
				t.Errorf("errors.Is(%v, protocol.ErrInvalidSecretName) = %v, want %v", err, got, tc.wantName)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("error %q carries a value", err)
			}
		})
	}
}

func TestContent(t *testing.T) {
	tests := []struct {
		name string
		in   Secret
		want string
	}{
		{"json", Secret{Key: "user", Value: []byte("CANARY-pw")}, `{"key":"user","value":"CANARY-pw"}`},
		{"json explicit", Secret{Key: "k", Value: []byte("a<b>&\"c\"\n"), Format: FormatJSON}, `{"key":"k","value":"a<b>&\"c\"\n"}`},
		{"json empty", Secret{}, `{"key":"","value":""}`},
		{"value only", Secret{Key: "ignored", Value: []byte("raw\x00bytes"), Format: FormatValueOnly}, "raw\x00bytes"},
		{"value only empty", Secret{Format: FormatValueOnly}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := content(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("content = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseVersionRoot(t *testing.T) {
	tests := []struct {
		root string
		name string
		gen  uint64
		ok   bool
	}{
		{"/v/token/3", "token", 3, true},
		{"/v/a.b-c_d/12345", "a.b-c_d", 12345, true},
		{"/v/token/0", "", 0, false},
		{"/v/token/03", "", 0, false},
		{"/v/token/3/x", "", 0, false},
		{"/v//3", "", 0, false},
		{"/view", "", 0, false},
		{"/", "", 0, false},
		{"/v/token/3//deleted", "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.root, func(t *testing.T) {
			name, gen, ok := parseVersionRoot(tc.root)
			if name != tc.name || gen != tc.gen || ok != tc.ok {
				t.Errorf("parseVersionRoot(%q) = %q, %d, %v; want %q, %d, %v", tc.root, name, gen, ok, tc.name, tc.gen, tc.ok)
			}
		})
	}
}

func TestParseViewGen(t *testing.T) {
	for _, tc := range []struct {
		in  string
		gen uint64
		ok  bool
	}{
		{"..g1", 1, true}, {"..g42", 42, true}, {"..data", 0, false}, {"..g", 0, false}, {"token", 0, false},
	} {
		if gen, ok := parseViewGen(tc.in); gen != tc.gen || ok != tc.ok {
			t.Errorf("parseViewGen(%q) = %d, %v; want %d, %v", tc.in, gen, ok, tc.gen, tc.ok)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/run/x", "/run/x", true}, {"/run/x/y", "/run/x", true}, {"/run/xy", "/run/x", false}, {"/a", "/run/x", false},
	} {
		if got := under(tc.path, tc.dir); got != tc.want {
			t.Errorf("under(%q, %q) = %v, want %v", tc.path, tc.dir, got, tc.want)
		}
	}
}
