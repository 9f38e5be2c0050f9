package hzn

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Command is one node of the command tree: a group (Subs) or a leaf (Run).
type Command struct {
	Name    string
	Aliases []string
	Args    string // usage of the positional arguments, e.g. "NAME"
	Short   string // one line for the parent's help
	Long    string // extra help text
	// Flags declares the leaf's flags on fs; Run gets the positional arguments.
	Flags func(fs *flag.FlagSet)
	Run   func(c *Context, args []string) error
	Subs  []*Command
}

// Context is what a command runs with.
type Context struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Flags          *flag.FlagSet
}

// ErrUsage marks a command-line mistake (exit code 2).
var ErrUsage = errors.New("usage")

var root = &Command{Name: "hzn", Short: "Open Horizon style CLI for the agbot and the agent"}

// Register adds cmd under the group at path (e.g. nil for top level, {"exchange"}),
// creating missing groups. Files of this package call it from init.
func Register(path []string, cmd *Command) {
	parent := root
	for _, p := range path {
		var next *Command
		for _, s := range parent.Subs {
			if s.Name == p {
				next = s
			}
		}
		if next == nil {
			next = &Command{Name: p}
			parent.Subs = append(parent.Subs, next)
		}
		parent = next
	}
	parent.Subs = append(parent.Subs, cmd)
}

func (c *Command) find(name string) *Command {
	for _, s := range c.Subs {
		if s.Name == name {
			return s
		}
		for _, a := range s.Aliases {
			if a == name {
				return s
			}
		}
	}
	return nil
}

// Main runs the CLI and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = os.Getenv
	}
	cmd, path := root, []string{"hzn"}
	for len(args) > 0 && cmd.Run == nil {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			help(stdout, cmd, path)
			return 0
		}
		next := cmd.find(args[0])
		if next == nil {
			fmt.Fprintf(stderr, "hzn: unknown command %q after %q\n\n", args[0], strings.Join(path, " "))
			help(stderr, cmd, path)
			return 2
		}
		cmd, path, args = next, append(path, next.Name), args[1:]
	}
	if cmd.Run == nil {
		help(stderr, cmd, path)
		return 2
	}
	fs := flag.NewFlagSet(strings.Join(path, " "), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		leafHelp(stdout, cmd, path, fs)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "hzn: %v\n\n", err)
		leafHelp(stderr, cmd, path, fs)
		return 2
	}
	ctx := &Context{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv, Flags: fs}
	if err := cmd.Run(ctx, pos); err != nil {
		fmt.Fprintf(stderr, "hzn: %v\n", err)
		if errors.Is(err, ErrUsage) {
			fmt.Fprintln(stderr)
			leafHelp(stderr, cmd, path, fs)
			return 2
		}
		return 1
	}
	return 0
}

// parseInterleaved lets flags come before, between or after positional arguments; "--"
// ends flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

func help(w io.Writer, c *Command, path []string) {
	fmt.Fprintf(w, "%s: %s\n\nusage: %s <command> [flags] [args]\n\ncommands:\n", strings.Join(path, " "), c.Short, strings.Join(path, " "))
	subs := append([]*Command(nil), c.Subs...)
	sort.Slice(subs, func(i, j int) bool { return subs[i].Name < subs[j].Name })
	for _, s := range subs {
		name := s.Name
		if len(s.Aliases) > 0 {
			name += " (" + strings.Join(s.Aliases, ", ") + ")"
		}
		short := s.Short
		if short == "" {
			short = "commands: " + names(s)
		}
		fmt.Fprintf(w, "  %-28s %s\n", name, short)
	}
	if len(path) == 1 {
		fmt.Fprint(w, envHelp)
	}
	fmt.Fprintf(w, "\nRun '%s <command> --help' for more.\n", strings.Join(path, " "))
}

func names(c *Command) string {
	var out []string
	for _, s := range c.Subs {
		out = append(out, s.Name)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

const envHelp = `
environment:
  HZN_AGBOT_URL           agbot URL, e.g. https://127.0.0.1:3090
  HZN_AGBOT_CA            PEM certificate to trust (the agbot's DIR/tls/cert.pem)
  HZN_ORG_ID              organisation
  HZN_EXCHANGE_USER_AUTH  user:password (or org/user:password)
`

func leafHelp(w io.Writer, c *Command, path []string, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s [flags] %s\n\n%s\n", strings.Join(path, " "), c.Args, c.Short)
	if c.Long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Long))
	}
	has := false
	fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// printJSON writes v indented, as hzn does for list and read.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
