package hzn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// Exit codes, as anax's cli/cliutils: kingpin's own usage errors exit 1 too.
const (
	ExitInput    = 1  // CLI_INPUT_ERROR: a command-line mistake
	ExitJSON     = 3  // JSON_PARSING_ERROR
	ExitFile     = 4  // FILE_IO_ERROR
	ExitHTTP     = 5  // HTTP_ERROR: no answer, or an HTTP code the command does not expect
	ExitGeneral  = 7  // CLI_GENERAL_ERROR: the agbot or agent refused
	ExitNotFound = 8  // NOT_FOUND
	ExitInternal = 99 // INTERNAL_ERROR
)

// errSilent ends a command with its exit code and nothing more on stderr (what it had to
// say is on stdout, as {"exists": false}).
var errSilent = errors.New("")

// ErrUsage marks a command-line mistake (exit code ExitInput).
var ErrUsage = errors.New("usage")

// ExitError carries the exit code of a failed command; Main prints "Error: <Err>" as anax.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// fail builds an ExitError with a formatted message.
func fail(code int, format string, args ...any) error {
	return &ExitError{Code: code, Err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, ErrUsage):
		return ExitInput
	}
	return ExitGeneral
}

// Env is what hzn runs with: its standard streams, the process environment and the
// configuration files read as anax reads them (DefaultConfigFiles).
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// ConfigFiles are read lowest priority first; the process environment beats them all.
	// A name ending in ".json" is hzn.json ({"HZN_ORG_ID": ...}); any other is
	// /etc/default/horizon style KEY=VALUE lines with # comments.
	ConfigFiles []string
}

// DefaultConfigFiles are anax's: /etc/horizon/hzn.json, /etc/default/horizon, ~/.hzn/hzn.json.
func DefaultConfigFiles(getenv func(string) string) []string {
	files := []string{"/etc/horizon/hzn.json", "/etc/default/horizon"}
	if home := getenv("HOME"); home != "" {
		files = append(files, filepath.Join(home, ".hzn", "hzn.json"))
	}
	return files
}

// Main runs the CLI with the default configuration files and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	return Run(args, Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv, ConfigFiles: DefaultConfigFiles(getenv)})
}

// cli is one run: the parsed command tree and what its commands share.
type cli struct {
	env     Env
	vars    map[string]string // from the configuration files
	stdin   *bufio.Reader
	stdinBy string // what already consumed stdin ("" if nothing)
	app     *kingpin.Application
	runs    map[string]func() error
	verbose *bool
}

// terminated is kingpin's exit (after --help) turned into a panic that Run recovers.
type terminated int

// Run parses args with anax's command tree and runs the selected command.
func Run(args []string, env Env) (code int) {
	c := &cli{env: env, stdin: bufio.NewReader(env.Stdin), runs: map[string]func() error{}}
	vars, err := loadConfig(env.ConfigFiles)
	if err != nil {
		fmt.Fprintf(env.Stderr, "Error: %v\n", err)
		return ExitGeneral
	}
	c.vars = vars
	c.app = kingpin.New("hzn", "Command line interface for this project's agbot (secrets manager, exchange) and node agent, in Open Horizon's syntax.\n"+envHelp)
	c.app.Writer(env.Stdout).UsageWriter(env.Stdout).ErrorWriter(env.Stderr)
	c.app.Terminate(func(code int) { panic(terminated(code)) })
	c.app.HelpFlag.Short('h')
	c.app.UsageTemplate(kingpin.CompactUsageTemplate)
	c.verbose = c.app.Flag("verbose", "Verbose output.").Short('v').Bool()
	c.addSecretsManager()
	c.addExchange()
	c.addAgent()
	c.addServiceLog()

	defer func() {
		if r := recover(); r != nil {
			t, ok := r.(terminated)
			if !ok {
				panic(r)
			}
			code = int(t)
		}
	}()
	cmd, err := c.app.Parse(joinDash(args))
	if err != nil {
		fmt.Fprintf(env.Stderr, "hzn: error: %v, try --help\n", err)
		return ExitInput
	}
	run := c.runs[cmd]
	if run == nil {
		c.app.Usage(args)
		return ExitInput
	}
	if err := run(); err != nil {
		if !errors.Is(err, errSilent) {
			fmt.Fprintf(env.Stderr, "Error: %v\n", err)
		}
		return exitCode(err)
	}
	return 0
}

// joinDash turns "-f -" into "-f-" and "--secretFile -" into "--secretFile=-": kingpin
// reads a lone "-" as an empty argument, while anax documents "-f-" and users write both.
// A lone "-" argument (user create USER -) gets a "--" before it when only arguments
// follow, so that kingpin keeps it.
func joinDash(args []string) []string {
	out := make([]string, 0, len(args)+1)
	dashdash := false
	for i, a := range args {
		if a == "--" {
			dashdash = true
		}
		if n := len(out); a == "-" && !dashdash && n > 0 && strings.HasPrefix(out[n-1], "-") && out[n-1] != "--" && !strings.Contains(out[n-1], "=") {
			if strings.HasPrefix(out[n-1], "--") {
				out[n-1] += "="
			}
			out[n-1] += "-"
			continue
		}
		if a == "-" && !dashdash && onlyArgs(args[i+1:]) {
			out = append(out, "--")
			dashdash = true
		}
		out = append(out, a)
	}
	return out
}

// onlyArgs tells that no flag is among args.
func onlyArgs(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "-") && a != "-" {
			return false
		}
	}
	return true
}

// on registers the function that runs cmd.
func (c *cli) on(cmd *kingpin.CmdClause, run func() error) { c.runs[cmd.FullCommand()] = run }

// get returns an environment variable: the process environment first, then the
// configuration files.
func (c *cli) get(name string) string {
	if v := c.env.Getenv(name); v != "" {
		return v
	}
	return c.vars[name]
}

// orEnv returns *flag, or the variable name when the flag is empty.
func (c *cli) orEnv(flag *string, name string) string {
	if flag != nil && *flag != "" {
		return *flag
	}
	return c.get(name)
}

// verbosef prints a [verbose] line on stderr with -v. Never give it a secret.
func (c *cli) verbosef(format string, args ...any) {
	if c.verbose != nil && *c.verbose {
		fmt.Fprintf(c.env.Stderr, "[verbose] "+format+"\n", args...)
	}
}

// confirm asks question on stdout and reads the answer from stdin as anax does: only "y"
// goes on; anything else prints "Exiting." and ends the command successfully.
func (c *cli) confirm(question string) (bool, error) {
	fmt.Fprint(c.env.Stdout, question+" [y/N]: ")
	line, err := c.stdin.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return false, fail(ExitInput, "Error reading input, error %v", err)
	}
	if strings.ToLower(strings.TrimSpace(line)) != "y" {
		fmt.Fprintln(c.env.Stdout, "Exiting.")
		return false, nil
	}
	return true, nil
}

// claimStdin lets one consumer read stdin: a value and a token can not both come from it.
func (c *cli) claimStdin(what string) error {
	if c.stdinBy != "" && c.stdinBy != what {
		return fail(ExitInput, "%s and %s can not both be read from stdin", c.stdinBy, what)
	}
	c.stdinBy = what
	return nil
}

// readStdinAll reads all of stdin (at most max bytes) for what.
func (c *cli) readStdinAll(what string, max int64) ([]byte, error) {
	if err := c.claimStdin(what); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(c.stdin, max+1))
	if err != nil {
		return nil, fail(ExitFile, "reading %s from stdin failed: %v", what, err)
	}
	if int64(len(b)) > max {
		return nil, fail(ExitInput, "%s on stdin is more than %d bytes", what, max)
	}
	return b, nil
}

// maxCredential bounds a token or password read from stdin or a file.
const maxCredential = 4 << 10

// credential resolves a password or token given as "-" (the first line of stdin) or through
// a file flag, so that it need not appear in argv, which other local users see (ps,
// /proc/PID/cmdline) and shells keep in history. what names it in errors.
func (c *cli) credential(what, v, file string) (string, error) {
	var raw string
	switch {
	case file != "" && v != "" && v != "-":
		return "", fail(ExitInput, "give the %s on the command line or in a file, not both", what)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fail(ExitFile, "%s file: %v", what, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxCredential+1))
		if err != nil {
			return "", fail(ExitFile, "%s file: %v", what, err)
		}
		raw = string(b)
	case v == "-":
		if err := c.claimStdin(what); err != nil {
			return "", err
		}
		line, err := c.stdin.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fail(ExitFile, "reading the %s from stdin: %v", what, err)
		}
		raw = line
	default:
		return v, nil
	}
	if len(raw) > maxCredential {
		return "", fail(ExitInput, "the %s is more than %d bytes", what, maxCredential)
	}
	val := strings.TrimRight(raw, "\r\n")
	if val == "" || strings.ContainsAny(val, "\r\n") {
		return "", fail(ExitInput, "the %s must be one non-empty line", what)
	}
	return val, nil
}

// printJSON writes v indented with anax's JSON_INDENT (two spaces), HTML not escaped.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

const envHelp = `
Environment Variables (also read from /etc/horizon/hzn.json, /etc/default/horizon and
~/.hzn/hzn.json, as anax does; the process environment wins):
  HZN_AGBOT_URL           the agbot, e.g. https://127.0.0.1:3090
  HZN_MGMT_HUB_CERT_PATH  CA certificate (PEM) to trust for the agbot; HZN_AGBOT_CA is an alias
  HZN_ORG_ID              default for -o
  HZN_EXCHANGE_USER_AUTH  default for -u, [org/]user:password
  HZN_EXCHANGE_NODE_AUTH  default for register -n, node:token
  HZN_EXCHANGE_URL        the Exchange API; this agbot serves it at https://HOST:PORT/v1
  HZN_AGENT_SOCKET        the local agent's API socket (default /run/anax-agent/api.sock)
Passwords and tokens can be read from stdin instead of argv: -u user:- or -n node:-.`

// loadConfig reads the configuration files, later files overriding earlier ones. A missing
// file is skipped, as anax does.
func loadConfig(files []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading configuration file %s: %v", f, err)
		}
		if strings.HasSuffix(f, ".json") {
			if err := jsonVars(f, b, vars); err != nil {
				return nil, err
			}
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, _ := strings.Cut(line, "=")
			if k = strings.TrimSpace(k); k != "" {
				vars[k] = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
	}
	return vars, nil
}

// jsonVars reads an hzn.json: top-level string fields and its MetadataVars.
func jsonVars(file string, b []byte, vars map[string]string) error {
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		//lint:ignore ST1005 anax's own message, which scripts may match
		return fmt.Errorf("Unable to decode content of config file %s: %v", file, err)
	}
	for k, v := range doc {
		switch v := v.(type) {
		case string:
			vars[k] = v
		case map[string]any:
			if k == "MetadataVars" {
				for mk, mv := range v {
					if s, ok := mv.(string); ok {
						vars[mk] = s
					}
				}
			}
		}
	}
	return nil
}
