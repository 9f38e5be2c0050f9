package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseFlagsPrecedence(t *testing.T) {
	file := writeFile(t, `{"org":"fileorg","log_level":"debug","agbot_url":"https://a:1","poll_wait":"10s"}`)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c Config)
	}{
		{"defaults", nil, func(t *testing.T, c Config) {
			if c != Defaults() {
				t.Errorf("got %+v, want defaults %+v", c, Defaults())
			}
		}},
		{"file over defaults", []string{"--config", file}, func(t *testing.T, c Config) {
			if c.Org != "fileorg" || c.LogLevel != "debug" || c.PollWait != Duration(10*time.Second) {
				t.Errorf("got org=%q level=%q poll=%v, want the file's", c.Org, c.LogLevel, c.PollWait)
			}
			if c.StateDir != "/var/lib/anax-agent" {
				t.Errorf("state dir %q, want default", c.StateDir)
			}
		}},
		{"container rules", []string{"--config", writeFile(t, `{"allow_host_uids":"1000, 1001","allow_capabilities":"sys_time"}`), "--require-image-digest"}, func(t *testing.T, c Config) {
			uids, err := c.HostUIDs()
			if err != nil || len(uids) != 2 || uids[0] != 1000 || uids[1] != 1001 || !c.RequireImageDigest {
				t.Errorf("got uids %v (%v), require digest %v; want [1000 1001], true", uids, err, c.RequireImageDigest)
			}
			if caps, err := c.Capabilities(); err != nil || len(caps) != 1 || caps[0] != "CAP_SYS_TIME" {
				t.Errorf("got capabilities %v (%v), want [CAP_SYS_TIME]", caps, err)
			}
		}},
		{"flag over file", []string{"--config", file, "--org", "flagorg", "--state-dir", "/tmp/s"}, func(t *testing.T, c Config) {
			if c.Org != "flagorg" || c.StateDir != "/tmp/s" || c.LogLevel != "debug" {
				t.Errorf("got org=%q state=%q level=%q, want flagorg, /tmp/s, debug", c.Org, c.StateDir, c.LogLevel)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := ParseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatalf("ParseFlags(%q): %v", tc.args, err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseFlagsRefusals(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		file    string
		wantErr string
	}{
		{"unknown file field", nil, `{"orgg":"x"}`, `unknown field "orgg"`},
		{"relative state dir", []string{"--state-dir", "var/lib"}, "", "state_dir: must be an absolute path"},
		{"bad url", []string{"--agbot-url", "ftp://x"}, "", "agbot_url: must be an absolute https URL"},
		{"http url flag", []string{"--agbot-url", "http://agbot.example:3090"}, "", "agbot_url: must use https, not http"},
		{"http url file", nil, `{"agbot_url":"http://agbot.example:3090"}`, "agbot_url: must use https, not http"},
		{"http url upper case", []string{"--agbot-url", "HTTP://agbot.example:3090"}, "", "agbot_url: must use https, not http"},
		{"bad level", []string{"--log-level", "loud"}, "", `log_level: "loud" is not one of`},
		{"poll too long", nil, `{"poll_wait":"2m"}`, "poll_wait: must be between 1s and 60s"},
		{"bad duration", nil, `{"poll_wait":5}`, "a duration is a string"},
		{"host uid not a number", nil, `{"allow_host_uids":"1000,bob"}`, `allow_host_uids: entry 1 "bob" must be a uid`},
		{"host uid root", []string{"--allow-host-uids", "0"}, "", `allow_host_uids: entry 0 "0" must be a uid in 1..2147483647`},
		{"capability ALL", []string{"--allow-capabilities", "NET_ADMIN,ALL"}, "", `allow_capabilities: capability "ALL": ALL is refused`},
		{"capability unknown", nil, `{"allow_capabilities":"ROOT"}`, `allow_capabilities: capability "ROOT": not a Linux capability`},
		{"require digest not a bool", nil, `{"require_image_digest":"yes"}`, "require_image_digest"},
		{"stray argument", []string{"run"}, "", `unexpected argument "run"`},
		{"missing file", []string{"--config", "/nonexistent/anax.json"}, "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeFile(t, tc.file)}, args...)
			}
			_, _, err := ParseFlags(args, io.Discard)
			if err == nil {
				t.Fatalf("ParseFlags(%q) = nil error, want %q", args, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out strings.Builder
	ParseFlags([]string{"--help"}, &out)
	for _, name := range []string{"config", "agbot-url", "agbot-ca", "agbot-fingerprint", "org", "state-dir",
		"secrets-root", "api-socket", "metrics-listen", "log-level", "allow-host-uids", "allow-capabilities", "require-image-digest"} {
		if !strings.Contains(out.String(), "-"+name) {
			t.Errorf("--help does not mention --%s:\n%s", name, out.String())
		}
	}
}
