package protocol

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateSecretName(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // empty: valid
	}{
		{"simple", "service_token", ""},
		{"dots and dashes", "db-pass.v2", ""},
		{"max length", strings.Repeat("a", 255), ""},
		{"empty", "", `secret name "": must not be empty`},
		{"too long", strings.Repeat("a", 256), "must be at most 255 bytes"},
		{"dot", ".", "must not be . or .."},
		{"dotdot", "..", "must not be . or .."},
		{"hidden", ".env", "must not start with '.'"},
		{"slash", "a/b", "byte 1 is not one of [A-Za-z0-9_.-]"},
		{"traversal", "../etc/passwd", "must not start with '.'"},
		{"space", "a b", "byte 1 is not one of"},
		{"nul", "a\x00b", "byte 1 is not one of"},
		{"unicode look-alike", "tok\u0435n", "byte 3 is not one of"},
		{"reserved etc", "etc", "reserved"},
		{"reserved proc", "proc", "reserved"},
		{"reserved view", "open-horizon-secrets", "reserved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSecretName(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateSecretName(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateSecretName(%q) = nil, want error containing %q", tc.in, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ValidateSecretName(%q) = %q, want it to contain %q", tc.in, err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalidSecretName) {
				t.Errorf("error %v does not wrap ErrInvalidSecretName", err)
			}
		})
	}
}
