package agreement

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestStateDir(t *testing.T) {
	tests := []struct {
		name    string
		prep    func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "created 0700"},
		{name: "existing 0755 is tightened", prep: func(t *testing.T, dir string) { os.Mkdir(dir, 0o755) }},
		{name: "a file is refused", prep: func(t *testing.T, dir string) { os.WriteFile(dir, nil, 0o600) }, wantErr: "not a directory"},
		{
			name: "digest key readable by others is refused",
			prep: func(t *testing.T, dir string) {
				os.Mkdir(dir, 0o700)
				os.WriteFile(filepath.Join(dir, digestKeyFile), make([]byte, digestKeyLen), 0o644)
			},
			wantErr: "lets others read it; want 0600",
		},
		{
			name: "short digest key is refused",
			prep: func(t *testing.T, dir string) {
				os.Mkdir(dir, 0o700)
				os.WriteFile(filepath.Join(dir, digestKeyFile), make([]byte, 7), 0o600)
			},
			wantErr: "want exactly 32 bytes",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if tc.prep != nil {
				tc.prep(t, dir)
			}
			m, err := Open(Options{StateDir: dir, Stores: newFakeStores(t), Runner: newFakeRunner()})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer m.Shutdown(t.Context())
			for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, digestKeyFile): 0o600, filepath.Join(dir, dbFile): 0o600} {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := st.Mode().Perm(); got != want {
					t.Errorf("%s mode %04o, want %04o", path, got, want)
				}
			}
		})
	}
}

// The digest key survives a restart, so digests stay comparable; a second manager on the same
// state dir is refused.
func TestStateReopen(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	before := e.record("ag1").Digests
	if _, err := Open(e.opts); !errors.Is(err, ErrStateLocked) {
		t.Errorf("second Open = %v, want ErrStateLocked", err)
	}
	e.restart()
	if got := e.m.digest(protocol.SecretDecl{}, values("1")["api_token"]); got != before["api_token"] {
		t.Errorf("digest after restart %s, before %s", shortDigest(got), shortDigest(before["api_token"]))
	}
}

func TestQueries(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	e.now = e.now.Add(3 * time.Second)
	e.apply(e.update("ag1", 2, false, values("2", "tls_cert")))
	e.accept("ag2", "1")

	infos, err := e.m.Agreements()
	if err != nil || len(infos) != 2 {
		t.Fatalf("Agreements() = %d, %v", len(infos), err)
	}
	in, err := e.m.Agreement("ag1")
	if err != nil {
		t.Fatal(err)
	}
	if in.Phase != PhaseActive || in.Sequence != 2 || in.Mode != e.stores.mode || !in.UpdatedAt.Equal(e.now) ||
		in.Service != (Service{Org: "acme", URL: "svc.example", Version: "1.2.0", Arch: in.Service.Arch}) {
		t.Errorf("info = %+v", in)
	}
	if len(in.Containers) != 3 || in.Containers[0].Name != "sidecar" || in.Containers[1].Name != "web" ||
		strings.Join(in.Containers[1].Secrets, ",") != "api_token,db_password" || in.Containers[1].ContainerID == "" {
		t.Errorf("containers = %+v", in.Containers)
	}
	hex12 := regexp.MustCompile(`^[0-9a-f]{12}$`)
	var names []string
	for _, s := range in.Secrets {
		names = append(names, s.Name+":"+s.Format)
		if !hex12.MatchString(s.Digest) {
			t.Errorf("secret %s digest %q, want 12 hex digits", s.Name, s.Digest)
		}
	}
	if got := strings.Join(names, ","); got != "api_token:json,db_password:json,tls_cert:value_only" {
		t.Errorf("secrets = %s", got)
	}
	other, _ := e.m.Agreement("ag2")
	if in.Secrets[2].Digest == other.Secrets[2].Digest {
		t.Errorf("tls_cert digest did not change with its value")
	}
	if in.Secrets[0].Digest != other.Secrets[0].Digest {
		t.Errorf("api_token digest differs for the same value")
	}
	raw, _ := json.Marshal(infos)
	if strings.Contains(string(raw), canaryMark) {
		t.Errorf("a value is in the query answer")
	}
	if _, err := e.m.Agreement("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Agreement(nope) = %v, want ErrNotFound", err)
	}
}
