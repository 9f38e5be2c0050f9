package packaging

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agent"
	"github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/test/e2e"
	"github.com/edge-secrets/anax-agent/test/testenv"
)

var arches = []string{"amd64", "arm64", "armhf"}

// TestPackages builds every package as `make package` does and checks what dpkg-deb reads in
// the .debs: names, architectures, the Docker dependency, every file with its owner and mode,
// the unit byte for byte, a default configuration the agent accepts and that enables nothing,
// binaries for the right machine, and the maintainer scripts.
func TestPackages(t *testing.T) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		testenv.Skip(t, "needs dpkg-deb (Debian's dpkg)")
	}
	root, err := e2e.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	paths, err := Build(ctx, root, dir, arches, []string{"deb", "rpm"})
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armhf": elf.EM_ARM}
	for _, arch := range arches {
		t.Run("anax-agent_"+arch, func(t *testing.T) {
			deb, err := Find(paths, "anax-agent", arch, "deb")
			if err != nil {
				t.Fatal(err)
			}
			checkControl(t, ctx, deb, map[string]string{"Package": "anax-agent", "Architecture": arch,
				"Depends": "docker.io | docker-ce | docker-engine"})
			checkContents(t, ctx, deb, map[string]Entry{
				"/usr/local/bin/anax-agent":                  {"-rwxr-xr-x", "root/root", ""},
				"/usr/bin/hzn":                               {"-rwxr-xr-x", "root/root", ""},
				"/usr/lib/systemd/system/anax-agent.service": {"-rw-r--r--", "root/root", ""},
				"/usr/lib/tmpfiles.d/anax-agent.conf":        {"-rw-r--r--", "root/root", ""},
				"/etc/anax-agent/config.json":                {"-rw-------", "root/root", ""},
				"/var/lib/anax-agent/":                       {"drwx------", "root/root", ""},
			})
			x := filepath.Join(t.TempDir(), "x")
			if err := Extract(ctx, deb, x); err != nil {
				t.Fatal(err)
			}
			unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/anax-agent.service"))
			if err != nil || string(unit) != linux.UnitFile {
				t.Errorf("the packaged unit differs from platform/linux/anax-agent.service (%v)", err)
			}
			checkConfig(t, filepath.Join(x, "etc/anax-agent/config.json"))
			if b, err := os.ReadFile(filepath.Join(x, "DEBIAN/conffiles")); err != nil || string(b) != "/etc/anax-agent/config.json\n" {
				t.Errorf("conffiles %q (%v): want only /etc/anax-agent/config.json, kept on upgrade", b, err)
			}
			for _, script := range []string{"postinst", "prerm", "postrm"} {
				if fi, err := os.Stat(filepath.Join(x, "DEBIAN", script)); err != nil || fi.Mode().Perm()&0o111 == 0 {
					t.Errorf("maintainer script %s missing or not executable (%v)", script, err)
				}
			}
			post, _ := os.ReadFile(filepath.Join(x, "DEBIAN/postinst"))
			if !bytes.Contains(post, []byte(`"agbot_url"`)) {
				t.Errorf("postinst does not look at agbot_url before enabling the service:\n%s", post)
			}
			for _, bin := range []string{"usr/local/bin/anax-agent", "usr/bin/hzn"} {
				checkMachine(t, filepath.Join(x, bin), machines[arch])
			}
		})
		t.Run("anax-agbot_"+arch, func(t *testing.T) {
			deb, err := Find(paths, "anax-agbot", arch, "deb")
			if err != nil {
				t.Fatal(err)
			}
			checkControl(t, ctx, deb, map[string]string{"Package": "anax-agbot", "Architecture": arch})
			checkContents(t, ctx, deb, map[string]Entry{
				"/usr/bin/agbot":       {"-rwxr-xr-x", "root/root", ""},
				"/var/lib/anax-agbot/": {"drwx------", "root/root", ""},
			})
			x := filepath.Join(t.TempDir(), "x")
			if err := Extract(ctx, deb, x); err != nil {
				t.Fatal(err)
			}
			checkMachine(t, filepath.Join(x, "usr/bin/agbot"), machines[arch])
		})
		t.Run("rpm_"+arch, func(t *testing.T) {
			// No rpm tool on a Debian CI machine: only that nfpm wrote both, non-empty.
			for _, name := range []string{"anax-agent", "anax-agbot"} {
				p, err := Find(paths, name, arch, "rpm")
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(p); err != nil || fi.Size() < 1<<20 {
					t.Errorf("%s: %v, want a package of several MB", p, err)
				}
			}
		})
	}
}

func checkControl(t *testing.T, ctx context.Context, deb string, want map[string]string) {
	t.Helper()
	got, err := Control(ctx, deb)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("control field %s = %q, want %q", k, got[k], v)
		}
	}
}

// checkContents wants exactly the files in want (directories that only hold them aside).
func checkContents(t *testing.T, ctx context.Context, deb string, want map[string]Entry) {
	t.Helper()
	got, err := Contents(ctx, deb)
	if err != nil {
		t.Fatal(err)
	}
	for path, w := range want {
		g, ok := got[path]
		if !ok {
			t.Errorf("%s is not in the package", path)
			continue
		}
		if g.Mode != w.Mode || g.Owner != w.Owner {
			t.Errorf("%s: %s %s, want %s %s", path, g.Mode, g.Owner, w.Mode, w.Owner)
		}
	}
	for path, g := range got {
		if _, ok := want[path]; !ok && g.Mode[0] != 'd' {
			t.Errorf("unexpected file %s in the package", path)
		}
	}
}

// checkConfig: the default configuration is one the agent accepts, with no agbot (so the
// postinst enables nothing) and the unit's directories.
func checkConfig(t *testing.T, path string) {
	t.Helper()
	cfg, _, err := agent.ParseFlags([]string{"--config", path}, new(bytes.Buffer))
	if err != nil {
		t.Fatalf("the agent refuses the packaged config: %v", err)
	}
	if cfg.AgbotURL != "" {
		t.Errorf("the packaged config names an agbot (%q): the service would start unconfigured", cfg.AgbotURL)
	}
	d := agent.Defaults()
	if cfg.StateDir != d.StateDir || cfg.SecretsRoot != d.SecretsRoot || cfg.APISocket != d.APISocket {
		t.Errorf("packaged config dirs %s %s %s, want the unit's %s %s %s",
			cfg.StateDir, cfg.SecretsRoot, cfg.APISocket, d.StateDir, d.SecretsRoot, d.APISocket)
	}
}

func checkMachine(t *testing.T, path string, want elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != want {
		t.Errorf("%s is built for %v, want %v", path, f.Machine, want)
	}
}
