package agbot

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
)

// TestVaultTokenFileAndCA: serve refuses a Vault token file that group or others may read
// (or a symlink), and hands --vault-ca to the Vault client (issue 12, item 6).
func TestVaultTokenFileAndCA(t *testing.T) {
	errOpened := errors.New("opener called")
	for _, tc := range []struct {
		name    string
		mode    os.FileMode
		symlink bool
		refused string
	}{
		{"owner only", 0o600, false, ""},
		{"owner read only", 0o400, false, ""},
		{"group readable", 0o640, false, "mode 0640"},
		{"world readable", 0o604, false, "mode 0604"},
		{"group writable", 0o620, false, "mode 0620"},
		{"symlink", 0o600, true, "symbolic link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tok := filepath.Join(dir, "token")
			if err := os.WriteFile(tok, []byte("s.canary-vault-token\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tok, tc.mode); err != nil {
				t.Fatal(err)
			}
			if tc.symlink {
				link := filepath.Join(dir, "link")
				if err := os.Symlink(tok, link); err != nil {
					t.Fatal(err)
				}
				tok = link
			}
			var got VaultOptions
			opener := func(o VaultOptions, _ *slog.Logger) (secrets.Manager, error) { got = o; return nil, errOpened }
			var log strings.Builder
			err := runServe([]string{"--data-dir", dir, "--secrets-manager", "vault", "--vault-addr", "https://127.0.0.1:1",
				"--vault-token-file", tok, "--vault-ca", "/etc/vault-ca.pem"}, &log, opener)
			if tc.refused == "" {
				if !errors.Is(err, errOpened) || got.Token != "s.canary-vault-token" || got.CACert != "/etc/vault-ca.pem" {
					t.Fatalf("err %v, opener got CA %q, token ok %v", err, got.CACert, got.Token == "s.canary-vault-token")
				}
				return
			}
			if err == nil || errors.Is(err, errOpened) || !strings.Contains(err.Error(), "--vault-token-file") ||
				!strings.Contains(strings.ToLower(err.Error()), tc.refused) && !(tc.symlink && strings.Contains(err.Error(), "too many levels")) {
				t.Fatalf("err = %v, want the token file refused naming %q", err, tc.refused)
			}
			if strings.Contains(err.Error(), "canary") || strings.Contains(log.String(), "canary") {
				t.Fatal("the refusal repeats the token")
			}
		})
	}
}

// TestSecretsKeyApart: the embedded manager's key may live outside the data dir (a file or
// the environment); the data dir alone then opens nothing (issue 12, item 6).
func TestSecretsKeyApart(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(InitOptions{DataDir: dir, Org: "myorg", Admin: "admin", Password: "pw", Hash: access.CheapParams}); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "agbot-secrets.key")
	put := func(o Options) error {
		s, err := Open(o)
		if err != nil {
			return err
		}
		defer s.Shutdown(t.Context())
		_, err = s.sm.Put(t.Context(), "myorg", "db", secrets.Secret{Key: "k", Value: "canary-apart"})
		return err
	}
	if err := put(Options{DataDir: dir, SecretsKeyFile: keyFile}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, embedded.KeyFile)); err == nil {
		t.Fatal("a key file was written into the data dir")
	}
	t.Run("data dir alone", func(t *testing.T) {
		copyDir := t.TempDir()
		for _, f := range []string{StateFile, KeysFile, embedded.DBFile} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(copyDir, f), b, 0o600)
		}
		if _, err := Open(Options{DataDir: copyDir}); !errors.Is(err, embedded.ErrKeyFile) {
			t.Fatalf("opening a copy of the data dir without the key: %v, want %v", err, embedded.ErrKeyFile)
		}
	})
	t.Run("key from the environment", func(t *testing.T) {
		raw, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvSecretsKey, base64.StdEncoding.EncodeToString(raw))
		key, err := keyFromEnv()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := os.LookupEnv(EnvSecretsKey); ok {
			t.Error("the key is still in the environment")
		}
		s, err := Open(Options{DataDir: dir, SecretsKey: key})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Shutdown(t.Context())
		if v, _, err := s.sm.Get(t.Context(), "myorg", "db"); err != nil || v.Value != "canary-apart" {
			t.Fatalf("read with the key from the environment: %v", err)
		}
	})
	t.Run("bad key in the environment", func(t *testing.T) {
		for _, v := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
			t.Setenv(EnvSecretsKey, v)
			if _, err := keyFromEnv(); err == nil || !strings.Contains(err.Error(), EnvSecretsKey) || strings.Contains(err.Error(), v) {
				t.Errorf("%q: err %v, want a refusal naming the variable, not the value", v, err)
			}
		}
	})
}
