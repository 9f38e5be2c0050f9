package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Service is what a proposal asks the node to run.
type Service struct {
	Org        string     `json:"org"`
	URL        string     `json:"url"`
	Version    string     `json:"version"`
	Arch       string     `json:"arch"`
	Deployment Deployment `json:"deployment"`
}

// Deployment is the anax deployment string, reduced to what the agent runs: containers keyed
// by name.
type Deployment struct {
	Services map[string]Container `json:"services"`
}

// Container is one container of a service.
type Container struct {
	Image string `json:"image"`
	// Command replaces the image's command when set. Never a secret: argv is visible.
	Command []string `json:"command,omitempty"`
	// Environment holds "NAME=value" entries from user input. Never a secret: env is
	// visible in `docker inspect`.
	Environment []string `json:"environment,omitempty"`
	// User overrides the image's user: "uid", "uid:gid", "name" or "name:group".
	User string `json:"user,omitempty"`
	// Secrets declared by this container, by service secret name (design §3): each is
	// mounted read-only at /<name>.
	Secrets map[string]SecretDecl `json:"secrets,omitempty"`
	// CapAdd lists the Linux capabilities the container needs ("NET_BIND_SERVICE" or
	// "CAP_NET_BIND_SERVICE"); the agent drops every other one. "ALL" is refused.
	CapAdd []string `json:"cap_add,omitempty"`
	// MaxMemoryMB limits the container's memory (and memory plus swap) in MiB; 0 is no limit.
	MaxMemoryMB int64 `json:"max_memory_mb,omitempty"`
}

// SecretDecl is a service's declaration of one secret it needs.
type SecretDecl struct {
	Description string `json:"description,omitempty"`
	// Format of the file: "" or "json" (default) gives {"key": K, "value": V};
	// "value_only" gives the raw value.
	Format string `json:"format,omitempty"`
	// OnUpdate says what the agent does after swapping the file: "" or "none" (default),
	// "signal:SIGHUP" (or another allowed signal, see ParseOnUpdate), "restart".
	OnUpdate string `json:"onUpdate,omitempty"`
}

// Secret file formats.
const (
	FormatJSON      = "json"
	FormatValueOnly = "value_only"
)

// FileFormat returns the effective format: FormatJSON or FormatValueOnly.
func (d SecretDecl) FileFormat() string {
	if d.Format == FormatValueOnly {
		return FormatValueOnly
	}
	return FormatJSON
}

// OnUpdateKind is what to do with a running container after its secret changed.
type OnUpdateKind int

const (
	OnUpdateNone    OnUpdateKind = iota // swap the file, nothing else
	OnUpdateSignal                      // swap, then send Signal to the container
	OnUpdateRestart                     // swap, then restart the container
)

// OnUpdate is a parsed SecretDecl.OnUpdate.
type OnUpdate struct {
	Kind   OnUpdateKind
	Signal string // e.g. "SIGHUP", only for OnUpdateSignal
}

// allowedSignals are the signals a service may ask for. SIGKILL and SIGSTOP are not among
// them: they are not a reload.
var allowedSignals = map[string]bool{
	"SIGHUP": true, "SIGUSR1": true, "SIGUSR2": true, "SIGINT": true, "SIGTERM": true,
	"SIGQUIT": true, "SIGWINCH": true,
}

// ParseOnUpdate parses "", "none", "restart" or "signal:SIG<NAME>" (SIGHUP, SIGUSR1,
// SIGUSR2, SIGINT, SIGTERM, SIGQUIT, SIGWINCH).
func ParseOnUpdate(s string) (OnUpdate, error) {
	switch s {
	case "", "none":
		return OnUpdate{Kind: OnUpdateNone}, nil
	case "restart":
		return OnUpdate{Kind: OnUpdateRestart}, nil
	}
	if sig, ok := strings.CutPrefix(s, "signal:"); ok && allowedSignals[sig] {
		return OnUpdate{Kind: OnUpdateSignal, Signal: sig}, nil
	}
	return OnUpdate{}, invalid("", "must be none, restart or signal:<SIGHUP|SIGUSR1|SIGUSR2|SIGINT|SIGTERM|SIGQUIT|SIGWINCH>, got %s", quote(s))
}

// SecretValue is a resolved secret as anax stores it: a key and a value. The file content
// in FormatJSON is exactly this object.
//
// It formats and logs redacted: fmt (%v, %+v, %s, %#v) and log/slog show the key and the
// value's length, never the value. Only json.Marshal writes the value, for the wire and
// the secret file.
type SecretValue struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// String redacts the value.
func (s SecretValue) String() string {
	return fmt.Sprintf("{key:%q value:<redacted %d bytes>}", s.Key, len(s.Value))
}

// GoString redacts the value for %#v.
func (s SecretValue) GoString() string { return "protocol.SecretValue" + s.String() }

// Format redacts the value under every fmt verb (%d or %x would otherwise print it).
func (s SecretValue) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprint(f, s.String())
}

// Size is the value's length in bytes: what logs and status show instead of the value.
func (s SecretValue) Size() int { return len(s.Value) }

// LogValue redacts the value for log/slog.
func (s SecretValue) LogValue() slog.Value {
	return slog.GroupValue(slog.String("key", s.Key), slog.Int("bytes", s.Size()))
}

// Digest is an HMAC-SHA256 of key and value under a caller's secret digest key, hex: what
// the agent keeps in its state DB and logs instead of the value (a plain hash of a short
// password could be guessed offline). hmacKey must be secret and at least 32 bytes.
func (s SecretValue) Digest(hmacKey []byte) string {
	m := hmac.New(sha256.New, hmacKey)
	// Length-prefix the key so ("ab","c") and ("a","bc") differ.
	fmt.Fprintf(m, "%d:", len(s.Key))
	m.Write([]byte(s.Key))
	m.Write([]byte(s.Value))
	return hex.EncodeToString(m.Sum(nil))
}

// FileContent is what the agent writes to the secret's file, anax compatible: for
// FormatJSON the object {"key":K,"value":V} (as encoding/json writes it), for
// FormatValueOnly the raw value.
func (s SecretValue) FileContent(d SecretDecl) []byte {
	if d.FileFormat() == FormatValueOnly {
		return []byte(s.Value)
	}
	b, err := json.Marshal(s)
	if err != nil {
		// A struct of two strings always marshals.
		panic(err)
	}
	return b
}

// ParseFileContent reads what FileContent wrote for a secret declared as d.
func ParseFileContent(content []byte, d SecretDecl) (SecretValue, error) {
	if d.FileFormat() == FormatValueOnly {
		return SecretValue{Value: string(content)}, nil
	}
	var v SecretValue
	if err := json.Unmarshal(content, &v); err != nil {
		return SecretValue{}, errors.New(`secret file: not {"key","value"} JSON`)
	}
	return v, nil
}
