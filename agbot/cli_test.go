package agbot

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/store"
)

// TestInitAdminPasswordForms: agbot init takes the admin's password on argv (--admin
// USER:PASSWORD), from stdin (USER:-) or from --admin-password-file; the stored hash is of
// that password. Conflicting or empty forms are refused.
func TestInitAdminPasswordForms(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("pw-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, stdin string
		args        []string
		want        string // the password that must verify; "" with wantErr
		wantErr     string
	}{
		{"argv", "", []string{"--admin", "root:pw-argv"}, "pw-argv", ""},
		{"stdin", "pw-stdin\nmore\n", []string{"--admin", "root:-"}, "pw-stdin", ""},
		{"file", "", []string{"--admin", "root", "--admin-password-file", pwFile}, "pw-file", ""},
		{"argv and file", "", []string{"--admin", "root:x", "--admin-password-file", pwFile}, "", "not both"},
		{"empty stdin", "", []string{"--admin", "root:-"}, "", "one non-empty line"},
		{"no password", "", []string{"--admin", "root"}, "", "--admin USER:PASSWORD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"--data-dir", dir, "--org", "o"}, tc.args...)
			err := runInit(args, strings.NewReader(tc.stdin), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("init %q: %v, want an error naming %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("init %q: %v", tc.args, err)
			}
			st, err := store.Open(filepath.Join(dir, StateFile))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			u, err := st.Users.Get("o", "root")
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := access.Verify(u.PasswordHash, tc.want); !ok || err != nil {
				t.Errorf("stored hash does not verify %q: %v", tc.want, err)
			}
		})
	}
}
