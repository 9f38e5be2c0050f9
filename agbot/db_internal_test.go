package agbot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/store"
)

func TestDBFlags(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "pw")
	os.WriteFile(private, []byte("s3cret\n"), 0o600)
	open := filepath.Join(dir, "pw-open")
	os.WriteFile(open, []byte("s3cret\n"), 0o644)
	tests := []struct {
		name    string
		f       dbFlags
		env     string // PGPASSWORD, when not empty
		want    DBOptions
		wantErr string
	}{
		{"bbolt default", dbFlags{}, "", DBOptions{}, ""},
		{"password file", dbFlags{url: "postgres://agbot@db/agbot", passwordFile: private}, "", DBOptions{URL: "postgres://agbot@db/agbot", Password: "s3cret"}, ""},
		{"environment", dbFlags{url: "postgres://agbot@db/agbot"}, "from-env", DBOptions{URL: "postgres://agbot@db/agbot", Password: "from-env"}, ""},
		{"password in URL", dbFlags{url: "postgres://agbot:s3cret@db/agbot"}, "", DBOptions{}, "--db: the database URL carries a password"},
		{"password in query", dbFlags{url: "postgres://agbot@db/agbot?password=s3cret"}, "", DBOptions{}, "--db: the database URL carries a password"},
		{"not postgres", dbFlags{url: "mysql://agbot@db/agbot"}, "", DBOptions{}, "--db: bad database URL"},
		{"file readable by others", dbFlags{url: "postgres://agbot@db/agbot", passwordFile: open}, "", DBOptions{}, "--db-password-file: " + open + " has mode 0644"},
		{"file without --db", dbFlags{passwordFile: private}, "", DBOptions{}, "--db-password-file: only with --db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("PGPASSWORD", tc.env)
			}
			got, err := tc.f.options()
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q...", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("options = %+v, %v; want %+v", got, err, tc.want)
			}
			if _, set := os.LookupEnv("PGPASSWORD"); set && tc.env != "" {
				t.Fatal("PGPASSWORD is still in the environment")
			}
		})
	}
	if !errors.Is(store.CheckURL("postgres://a:b@c/d"), store.ErrPasswordInURL) {
		t.Fatal("CheckURL accepted a password")
	}
}
