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
			if !errors.Is(err, ErrInvalidSecretName) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalidSecretName and ErrInvalid", err)
			}
		})
	}
}

func TestParseManagerName(t *testing.T) {
	tests := []struct {
		in      string
		want    ManagerName
		wantErr string // exact
	}{
		{"db", ManagerName{Name: "db"}, ""},
		{"user", ManagerName{}, `secret manager name "user": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"node", ManagerName{}, `secret manager name "node": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"test/password1", ManagerName{Name: "test/password1"}, ""},
		{"test/more-passwords/password2", ManagerName{Name: "test/more-passwords/password2"}, ""},
		{"user/alice/test/password1", ManagerName{User: "alice", Name: "test/password1"}, ""},
		{"node/n1/test/password1", ManagerName{Node: "n1", Name: "test/password1"}, ""},
		{"user/alice/node/n1/a/b/c", ManagerName{User: "alice", Node: "n1", Name: "a/b/c"}, ""},
		{"user/alice/x/n/db", ManagerName{User: "alice", Name: "x/n/db"}, ""},
		{"a/user/b", ManagerName{Name: "a/user/b"}, ""},
		{"user/alice/db", ManagerName{User: "alice", Name: "db"}, ""},
		{"node/node1/db", ManagerName{Node: "node1", Name: "db"}, ""},
		{"user/alice/node/node1/db", ManagerName{User: "alice", Node: "node1", Name: "db"}, ""},
		{"user/a@b.com/db-1.v2", ManagerName{User: "a@b.com", Name: "db-1.v2"}, ""},
		{"", ManagerName{}, `secret manager name "": must not be empty`},
		{"user/alice", ManagerName{}, `secret manager name "user/alice": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"user/alice/node/n1", ManagerName{}, `secret manager name "user/alice/node/n1": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"node/n1/node/n2/db", ManagerName{}, `secret manager name "node/n1/node/n2/db": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"a/b/c/d/e/f/g/h/i", ManagerName{}, `secret manager name "a/b/c/d/e/f/g/h/i": name has 9 segments, more than 8`},
		{"openhorizon/myorg/db", ManagerName{}, `secret manager name "openhorizon/myorg/db": must not start with "openhorizon/" (give the name within the org, not a Vault path)`},
		{"test//password1", ManagerName{}, `secret manager name "test//password1": name segment must not be empty`},
		{"test/../password1", ManagerName{}, `secret manager name "test/../password1": name segment must not be . or ..`},
		{"node/n/user/u/db", ManagerName{}, `secret manager name "node/n/user/u/db": must be name, user/<user>/name, node/<node>/name or user/<user>/node/<node>/name`},
		{"user//db", ManagerName{}, `secret manager name "user//db": user segment must not be empty`},
		{"node//db", ManagerName{}, `secret manager name "node//db": node segment must not be empty`},
		{"user/alice/", ManagerName{}, `secret manager name "user/alice/": name segment must not be empty`},
		{"user/../db", ManagerName{}, `secret manager name "user/../db": user segment must not be . or ..`},
		{"user/alice/node/n 1/db", ManagerName{}, `secret manager name "user/alice/node/n 1/db": node segment byte 1 is not one of [A-Za-z0-9_.@+-]`},
		{"db:1", ManagerName{}, `secret manager name "db:1": name segment byte 2 is not one of [A-Za-z0-9_.@+-]`},
		{strings.Repeat("a", 256), ManagerName{}, `secret manager name "` + strings.Repeat("a", 64) + `...": name segment must be at most 255 bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseManagerName(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseManagerName(%q) = %v", tc.in, err)
				}
				if got != tc.want {
					t.Errorf("ParseManagerName(%q) = %+v, want %+v", tc.in, got, tc.want)
				}
				if got.String() != tc.in {
					t.Errorf("String() = %q, want %q", got.String(), tc.in)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("ParseManagerName(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
		})
	}
}

func TestManagerNameFallback(t *testing.T) {
	m := ManagerName{User: "alice", Name: "db"}
	n := m.ForNode("node1")
	if got, want := n.String(), "user/alice/node/node1/db"; got != want {
		t.Errorf("ForNode = %q, want %q", got, want)
	}
	if !n.NodeSpecific() || m.NodeSpecific() {
		t.Errorf("NodeSpecific: %v %v, want true false", n.NodeSpecific(), m.NodeSpecific())
	}
	if n.WithoutNode() != m {
		t.Errorf("WithoutNode = %+v, want %+v", n.WithoutNode(), m)
	}
}

func TestValidateID(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"myorg/node1", ""},
		{"agbot-1.example.com:8443", ""},
		{"a1b2c3", ""},
		{"", "field id: must not be empty"},
		{strings.Repeat("a", 257), "field id: must be at most 256 bytes"},
		{"/etc", "field id: must not start with '/' or '.'"},
		{".hidden", "field id: must not start with '/' or '.'"},
		{"a\"b", "field id: byte 1 is not one of [A-Za-z0-9_.@+:/-]"},
		{"a<b", "field id: byte 1 is not one of [A-Za-z0-9_.@+:/-]"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			err := ValidateID("id", tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateID(%q) = %v", tc.in, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidateID(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
