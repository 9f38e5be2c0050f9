package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// ErrConfig is wrapped by every configuration refusal.
var ErrConfig = errors.New("invalid configuration")

// Config is the agent's configuration: a JSON file (--config) whose every field is also a flag.
// A flag given on the command line wins over the file, and the file over the default.
type Config struct {
	AgbotURL         string `json:"agbot_url"`
	AgbotCA          string `json:"agbot_ca"`
	AgbotFingerprint string `json:"agbot_fingerprint"`
	Org              string `json:"org"`
	StateDir         string `json:"state_dir"`
	SecretsRoot      string `json:"secrets_root"`
	// ESSRoot holds the ESS secrets API's sockets and credentials (a tmpfs). Default: "ess"
	// beside the secrets root (/run/anax-agent/ess).
	ESSRoot       string `json:"ess_root,omitempty"`
	APISocket     string `json:"api_socket"`
	MetricsListen string `json:"metrics_listen"`
	LogLevel      string `json:"log_level"`
	// Container rules (read at start): host uids a container may share with a host account
	// ("1000,1001"; default none: such a proposal is declined), capabilities beyond Docker's
	// default set a service may add ("SYS_TIME,NET_ADMIN"; default none), and whether every
	// image must be pinned by digest (name@sha256:...).
	AllowHostUIDs      string `json:"allow_host_uids,omitempty"`
	AllowCapabilities  string `json:"allow_capabilities,omitempty"`
	RequireImageDigest bool   `json:"require_image_digest,omitempty"`
	// DebugPprof serves Go's profiles (/debug/pprof/) on the metrics listener, for measuring
	// where an agent spends its time. Off by default; read at start.
	DebugPprof bool `json:"debug_pprof,omitempty"`
	// Reloadable without a restart: how long one long-poll waits, and the reconnect backoff cap.
	PollWait   Duration `json:"poll_wait"`
	BackoffMax Duration `json:"backoff_max"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ESSDir is where the ESS secrets API keeps its files: ESSRoot, or "ess" beside SecretsRoot.
func (c Config) ESSDir() string {
	if c.ESSRoot != "" {
		return c.ESSRoot
	}
	return filepath.Join(filepath.Dir(filepath.Clean(c.SecretsRoot)), "ess")
}

// Defaults returns the configuration of a node that was given nothing.
func Defaults() Config {
	return Config{
		StateDir:      "/var/lib/anax-agent",
		SecretsRoot:   "/run/anax-agent/secrets",
		APISocket:     "/run/anax-agent/api.sock",
		MetricsListen: "127.0.0.1:9410",
		LogLevel:      "info",
		PollWait:      Duration(30 * time.Second),
		BackoffMax:    Duration(30 * time.Second),
	}
}

// flagSpec binds one flag to one Config field.
type flagSpec struct {
	name, usage string
	field       func(*Config) *string
}

var flagSpecs = []flagSpec{
	{"agbot-url", "agbot base URL, e.g. https://agbot.example:3090", func(c *Config) *string { return &c.AgbotURL }},
	{"agbot-ca", "PEM file with the CA that signed the agbot's TLS certificate", func(c *Config) *string { return &c.AgbotCA }},
	{"agbot-fingerprint", "expected agbot signing-key fingerprint (optional; without it the key is pinned at registration)", func(c *Config) *string { return &c.AgbotFingerprint }},
	{"org", "organization this node belongs to", func(c *Config) *string { return &c.Org }},
	{"state-dir", "directory for the agent's state (mode 0700)", func(c *Config) *string { return &c.StateDir }},
	{"secrets-root", "root of the per-service secret tmpfs stores", func(c *Config) *string { return &c.SecretsRoot }},
	{"ess-root", "directory of the ESS secrets API's sockets and credentials, a tmpfs (default: ess beside --secrets-root)", func(c *Config) *string { return &c.ESSRoot }},
	{"api-socket", "unix socket of the local API that hzn uses (mode 0600)", func(c *Config) *string { return &c.APISocket }},
	{"metrics-listen", "address for Prometheus metrics (empty: off)", func(c *Config) *string { return &c.MetricsListen }},
	{"log-level", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }},
	{"allow-capabilities", "comma-separated capabilities beyond Docker's default set a service may add with cap_add (default none)", func(c *Config) *string { return &c.AllowCapabilities }},
	{"allow-host-uids", "comma-separated host uids a service container may run as although a host account has them (default none)", func(c *Config) *string { return &c.AllowHostUIDs }},
}

// boolFlagSpecs bind boolean flags to Config fields.
var boolFlagSpecs = []struct {
	name, usage string
	field       func(*Config) *bool
}{
	{"require-image-digest", "decline proposals whose images are not pinned by digest (name@sha256:...)", func(c *Config) *bool { return &c.RequireImageDigest }},
	{"debug-pprof", "serve Go's CPU, heap and block profiles at /debug/pprof/ on --metrics-listen", func(c *Config) *bool { return &c.DebugPprof }},
}

// ParseFlags reads args (without the program name): --config FILE, then every field as a flag.
// Precedence: flags given > file > defaults. out receives --help and usage errors.
func ParseFlags(args []string, out io.Writer) (Config, string, error) {
	fs := flag.NewFlagSet("anax-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	configFile := fs.String("config", "", "JSON configuration file; every field is also a flag, and a flag wins")
	var fromFlags Config
	for _, s := range flagSpecs {
		fs.StringVar(s.field(&fromFlags), s.name, "", s.usage)
	}
	for _, s := range boolFlagSpecs {
		fs.BoolVar(s.field(&fromFlags), s.name, false, s.usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "usage: anax-agent [--config FILE] [flags]\n\n"+
			"The node daemon: registers with an agbot (hzn register), accepts its proposals, writes\n"+
			"each service's secrets to a per-service tmpfs and keeps them current in running containers.\n\nFlags:\n")
		fs.PrintDefaults()
		d := Defaults()
		fmt.Fprintf(out, "\nDefaults: --state-dir %s --secrets-root %s --api-socket %s --metrics-listen %s --log-level %s\n",
			d.StateDir, d.SecretsRoot, d.APISocket, d.MetricsListen, d.LogLevel)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, "", err
	}
	if fs.NArg() > 0 {
		return Config{}, "", fmt.Errorf("%w: unexpected argument %q (every setting is a --flag)", ErrConfig, fs.Arg(0))
	}
	cfg := Defaults()
	if *configFile != "" {
		var err error
		if cfg, err = LoadFile(*configFile); err != nil {
			return Config{}, "", err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, s := range flagSpecs {
		if set[s.name] {
			*s.field(&cfg) = *s.field(&fromFlags)
		}
	}
	for _, s := range boolFlagSpecs {
		if set[s.name] {
			*s.field(&cfg) = *s.field(&fromFlags)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, "", err
	}
	return cfg, *configFile, nil
}

// LoadFile reads a JSON configuration over the defaults. Unknown fields are refused, so a typo
// is an error rather than a silently ignored setting.
func LoadFile(path string) (Config, error) {
	cfg := Defaults()
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	return cfg, nil
}

// Validate checks the fields that can be checked without touching the machine.
func (c Config) Validate() error {
	bad := func(field, rule string) error { return fmt.Errorf("%w: %s: %s", ErrConfig, field, rule) }
	if c.AgbotURL != "" {
		u, err := url.Parse(c.AgbotURL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return bad("agbot_url", "must be an absolute https URL such as https://agbot.example:3090")
		case u.Scheme != "https":
			// The node token and every reply travel on this link: never in clear.
			return bad("agbot_url", "must use https, not "+u.Scheme+" (the node token would travel in clear)")
		}
	}
	for field, p := range map[string]string{"state_dir": c.StateDir, "secrets_root": c.SecretsRoot, "api_socket": c.APISocket} {
		if p == "" || !strings.HasPrefix(p, "/") {
			return bad(field, "must be an absolute path")
		}
	}
	if c.ESSRoot != "" && !strings.HasPrefix(c.ESSRoot, "/") {
		return bad("ess_root", "must be an absolute path")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return bad("log_level", err.Error())
	}
	if c.PollWait < Duration(time.Second) || c.PollWait > Duration(60*time.Second) {
		return bad("poll_wait", "must be between 1s and 60s (the agbot holds a poll at most 60s)")
	}
	if c.BackoffMax < Duration(100*time.Millisecond) {
		return bad("backoff_max", "must be at least 100ms")
	}
	if _, err := c.HostUIDs(); err != nil {
		return bad("allow_host_uids", err.Error())
	}
	if _, err := c.Capabilities(); err != nil {
		return bad("allow_capabilities", err.Error())
	}
	return nil
}

// Capabilities parses AllowCapabilities: comma-separated Linux capability names, "ALL" refused.
func (c Config) Capabilities() ([]string, error) {
	if strings.TrimSpace(c.AllowCapabilities) == "" {
		return nil, nil
	}
	var caps []string
	for _, part := range strings.Split(c.AllowCapabilities, ",") {
		name, err := protocol.CanonicalCapability(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		caps = append(caps, name)
	}
	return caps, nil
}

// HostUIDs parses AllowHostUIDs: comma-separated decimal uids, 1..2147483647 (root needs no
// allowing).
func (c Config) HostUIDs() ([]int, error) {
	if strings.TrimSpace(c.AllowHostUIDs) == "" {
		return nil, nil
	}
	var uids []int
	for i, part := range strings.Split(c.AllowHostUIDs, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(part), 10, 64)
		if err != nil || n < 1 || n > 1<<31-1 {
			return nil, fmt.Errorf("entry %d %q must be a uid in 1..2147483647 (comma-separated)", i, part)
		}
		uids = append(uids, int(n))
	}
	return uids, nil
}

// ParseLevel turns a log level name into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
	}
	return l, nil
}
