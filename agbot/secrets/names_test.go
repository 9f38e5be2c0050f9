package secrets

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestParseName(t *testing.T) {
	long := strings.Repeat("a", MaxSegmentLen)
	tests := []struct {
		name string
		in   string
		want Name
		rule string // substring of the error; "" means valid
	}{
		{"org level", "db-password", Name{Secret: "db-password"}, ""},
		{"user level", "user/bob/token", Name{User: "bob", Secret: "token"}, ""},
		{"node level", "node/n1/token", Name{Node: "n1", Secret: "token"}, ""},
		{"user node level", "user/bob@x.org/node/n-1/tok.en_2", Name{User: "bob@x.org", Node: "n-1", Secret: "tok.en_2"}, ""},
		{"longest segment", long, Name{Secret: long}, ""},
		{"empty", "", Name{}, "must not be empty"},
		{"too long", strings.Repeat("a/", MaxNameLen), Name{}, "at most 1024 bytes"},
		{"too long, org level", strings.Repeat("a", MaxNameLen+1), Name{}, "at most 1024 bytes"},
		{"segment too long", long + "a", Name{}, "at most 255 bytes"},
		{"dot dot", "user/../node/n/x", Name{}, `".." segments`},
		{"dot dot leaf", "..", Name{}, `".." segments`},
		{"dot segment", "user/./x", Name{}, `".." segments`},
		{"leading slash", "/x", Name{}, "empty segments"},
		{"trailing slash", "user/bob/x/", Name{}, "empty segments"},
		{"double slash", "user//x", Name{}, "empty segments"},
		{"mount prefix", "openhorizon/org/x", Name{}, `"openhorizon/"`},
		{"bad byte", "pass word", Name{}, "byte 4 is not one of [A-Za-z0-9_.@+-]"},
		{"at and plus", "user/bob@x.org/a+b@c", Name{User: "bob@x.org", Secret: "a+b@c"}, ""},
		{"leading dot", "node/.n/.x", Name{Node: ".n", Secret: ".x"}, ""},
		{"bare user", "user", Name{}, "must be name, user/<user>/name"},
		{"colon", "a:b", Name{}, "byte 1 is not one of [A-Za-z0-9_.@+-]"},
		{"nul", "a\x00b", Name{}, "byte 1"},
		{"backslash", `a\b`, Name{}, "byte 1"},
		{"unicode", "pässword", Name{}, "name segment byte 1"},
		{"bad node", "node/n 1/x", Name{}, "node segment byte 1"},
		{"nested org level", "group/g/x", Name{Secret: "group/g/x"}, ""},
		{"two segments", "test/password1", Name{Secret: "test/password1"}, ""},
		{"nested user level", "user/bob/test/password1", Name{User: "bob", Secret: "test/password1"}, ""},
		{"nested node level", "node/n1/a/b", Name{Node: "n1", Secret: "a/b"}, ""},
		{"node then user", "node/n/user/u/x", Name{}, "must be name, user/<user>/name"},
		{"user only", "user/bob", Name{}, "must be name, user/<user>/name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseName(tc.in)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("ParseName(%q) = %v, want valid", tc.in, err)
				}
				if got != tc.want {
					t.Fatalf("ParseName(%q) = %+v, want %+v", tc.in, got, tc.want)
				}
				if got.String() != tc.in {
					t.Fatalf("String() = %q, want %q", got.String(), tc.in)
				}
				return
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ParseName(%q) error = %v, want ErrInvalidName", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.rule) {
				t.Fatalf("ParseName(%q) error = %q, want it to name the rule %q", tc.in, err, tc.rule)
			}
		})
	}
}

func TestParseScope(t *testing.T) {
	tests := []struct {
		in   string
		want Name
		bad  bool
	}{
		{"", Name{}, false},
		{"user/bob", Name{User: "bob"}, false},
		{"node/n1", Name{Node: "n1"}, false},
		{"user/bob/node/n1", Name{User: "bob", Node: "n1"}, false},
		{"user", Name{}, true},
		{"user/bob/", Name{}, true},
		{"user/..", Name{}, true},
		{"db", Name{}, true},
		{"openhorizon/user/bob", Name{}, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			got, err := ParseScope(tc.in)
			if tc.bad {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("ParseScope(%q) error = %v, want ErrInvalidName", tc.in, err)
				}
				return
			}
			if err != nil || got != tc.want || got.Scope() != tc.in {
				t.Fatalf("ParseScope(%q) = %+v (scope %q), %v; want %+v", tc.in, got, got.Scope(), err, tc.want)
			}
		})
	}
}

func TestValidateOrg(t *testing.T) {
	for _, org := range []string{"myorg", "e2edev@somecomp.com", "IBM", "a_b-c.d", "a+b"} {
		if err := ValidateOrg(org); err != nil {
			t.Errorf("ValidateOrg(%q) = %v, want valid", org, err)
		}
	}
	for _, org := range []string{"", "..", ".hidden", "a/b", "a b", strings.Repeat("o", 256)} {
		err := ValidateOrg(org)
		if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), "secret manager org") {
			t.Errorf("ValidateOrg(%q) = %v, want an org ErrInvalidName", org, err)
		}
	}
}

func TestCheckSecret(t *testing.T) {
	if err := CheckSecret(Secret{Key: "k", Value: "héllo\n\x00"}); err != nil {
		t.Fatalf("CheckSecret(valid UTF-8) = %v", err)
	}
	for _, s := range []Secret{{Key: "\xff", Value: "v"}, {Key: "k", Value: "a\xc3"}} {
		if err := CheckSecret(s); !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("CheckSecret(%q) = %v, want ErrInvalidSecret", s.Key, err)
		}
	}
}

// A Secret printed or logged by mistake must not show its value.
func TestSecretRedacted(t *testing.T) {
	const canary = "CANARY-redact-7f3a"
	s := Secret{Key: "k", Value: canary}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("oops", "secret", s)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("oops", "secret", s)
	for _, out := range []string{
		fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, s, s, s), fmt.Sprint(&s), buf.String(),
		fmt.Errorf("wrapped %v", s).Error(),
	} {
		if strings.Contains(out, canary) {
			t.Fatalf("value leaked into %q", out)
		}
		if !strings.Contains(out, "k") {
			t.Fatalf("output %q lost the key", out)
		}
	}
}

// ParseName accepts exactly what protocol.ParseManagerName (the binding rule) accepts, except
// the names this package refuses on top: a leading "openhorizon/" and over MaxNameLen bytes.
func FuzzParseNameAgreesWithProtocol(f *testing.F) {
	for _, s := range []string{"db", "user/bob/db", "node/n/db", "user/u/node/n/db", "user/../x",
		"a//b", "openhorizon/user/u/x", "a b", "user/u", ".", "x/", "u@x+y", "node/n/.x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseName(s)
		want, perr := protocol.ParseManagerName(s)
		extra := strings.HasPrefix(s, mountPrefix) || len(s) > MaxNameLen
		switch {
		case err == nil && perr != nil:
			t.Fatalf("ParseName(%q) accepted what protocol refuses: %v", s, perr)
		case err != nil && perr == nil && !extra:
			t.Fatalf("ParseName(%q) = %v, but protocol accepts it", s, err)
		case err != nil && !errors.Is(err, ErrInvalidName):
			t.Fatalf("ParseName(%q) error %v does not wrap ErrInvalidName", s, err)
		case err == nil && (got.User != want.User || got.Node != want.Node || got.Secret != want.Name || got.String() != s):
			t.Fatalf("ParseName(%q) = %+v, protocol = %+v", s, got, want)
		}
	})
}

func TestProtocolRuleIsWrapped(t *testing.T) {
	_, err := ParseName("user/bob/a:b")
	if !errors.Is(err, ErrInvalidName) || !errors.Is(err, protocol.ErrInvalid) {
		t.Fatalf("ParseName error = %v, want both ErrInvalidName and protocol.ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), `secret manager name "user/bob/a:b": name segment byte 1`) {
		t.Fatalf("error %q does not name the input and the rule", err)
	}
}
