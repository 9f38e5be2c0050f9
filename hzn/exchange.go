package hzn

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

func init() {
	Register([]string{"exchange"}, &Command{Name: "user", Short: "manage users: create"})
	root.find("exchange").Short = "users, nodes, services, deployment policies and patterns kept by the agbot"
	Register([]string{"exchange", "user"}, &Command{
		Name: "create", Args: "USER PASSWORD", Short: "create a user in HZN_ORG_ID (org admins only)",
		Long: "PASSWORD - reads it from the first line of stdin; --password-file FILE reads it from FILE\n(then give USER only). Both keep it out of the process list and the shell history.",
		Flags: func(fs *flag.FlagSet) {
			fs.Bool("admin", false, "make the user an org admin")
			fs.String("password-file", "", "file holding the password (instead of PASSWORD)")
		},
		Run: userCreate,
	})
	Register([]string{"exchange"}, &Command{Name: "node", Short: "manage nodes: create"})
	Register([]string{"exchange", "node"}, &Command{
		Name: "create", Short: "create a node you own, with the token it will register with",
		Long: "-n NODE:- reads the token from the first line of stdin; -n NODE --token-file FILE reads it\nfrom FILE. Both keep it out of the process list and the shell history.",
		Flags: func(fs *flag.FlagSet) {
			fs.String("n", "", "NODE:TOKEN, NODE:- (token from stdin) or NODE with --token-file")
			fs.String("token-file", "", "file holding the node token")
		},
		Run: nodeCreate,
	})
	Register([]string{"exchange"}, &Command{Name: "service", Short: "manage services: publish"})
	Register([]string{"exchange", "service"}, &Command{
		Name: "publish", Short: "publish a service definition (JSON, anax shape)",
		Flags: func(fs *flag.FlagSet) { fs.String("f", "", "service definition file") },
		Run:   servicePublish,
	})
	Register([]string{"exchange"}, &Command{Name: "deployment", Aliases: []string{"dep"}, Short: "manage deployment policies: addpolicy, removepolicy, listpolicy"})
	Register([]string{"exchange", "deployment"}, &Command{
		Name: "addpolicy", Args: "NAME", Short: "add or replace a deployment policy",
		Flags: func(fs *flag.FlagSet) { fs.String("f", "", "deployment policy file (JSON)") },
		Run:   addPolicy,
	})
	Register([]string{"exchange", "deployment"}, &Command{Name: "removepolicy", Args: "NAME", Short: "remove a deployment policy (its agreements are cancelled)", Run: removePolicy})
	Register([]string{"exchange", "deployment"}, &Command{Name: "listpolicy", Args: "[NAME]", Short: "list deployment policies as JSON", Run: listPolicy})
	Register([]string{"exchange"}, &Command{Name: "pattern", Short: "manage patterns: publish"})
	Register([]string{"exchange", "pattern"}, &Command{
		Name: "publish", Short: "publish a pattern",
		Flags: func(fs *flag.FlagSet) {
			fs.String("f", "", "pattern file (JSON)")
			fs.String("p", "", "pattern name")
		},
		Run: patternPublish,
	})
}

func flagStr(c *Context, name string) string { return c.Flags.Lookup(name).Value.String() }
func flagBool(c *Context, name string) bool  { return c.Flags.Lookup(name).Value.String() == "true" }

func userCreate(c *Context, args []string) error {
	file := flagStr(c, "password-file")
	if len(args) != 2 && !(len(args) == 1 && file != "") {
		return fmt.Errorf("%w: want USER PASSWORD, USER - (password from stdin) or USER --password-file FILE", ErrUsage)
	}
	var pw string
	if len(args) == 2 {
		pw = args[1]
	}
	pw, err := credential(c, "password", pw, file)
	if err != nil {
		return err
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	admin := flagBool(c, "admin")
	if err := cl.Do("POST", cl.Path("users", args[0]), map[string]any{"password": pw, "admin": admin}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "user %s/%s created (admin: %v)\n", cl.Org, args[0], admin)
	return nil
}

func nodeCreate(c *Context, args []string) error {
	node, token, err := nodeToken(c)
	if err != nil || len(args) != 0 {
		return errors.Join(err, fmt.Errorf("%w: want -n NODE:TOKEN, -n NODE:- or -n NODE --token-file FILE", ErrUsage))
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	var out struct {
		Owner string `json:"owner"`
	}
	if err := cl.Do("PUT", cl.Path("nodes", node), map[string]any{"token": token}, &out); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "node %s/%s created (owner %s)\n", cl.Org, node, out.Owner)
	return nil
}

// nodeToken reads -n NODE:TOKEN, NODE:- (stdin) or NODE with --token-file FILE.
func nodeToken(c *Context) (node, token string, err error) {
	node, token, _ = strings.Cut(flagStr(c, "n"), ":")
	if node == "" {
		return "", "", fmt.Errorf("%w: -n NODE is required", ErrUsage)
	}
	file := flagStr(c, "token-file")
	if token == "" && file == "" {
		return "", "", fmt.Errorf("%w: -n NODE needs :TOKEN, :- or --token-file FILE", ErrUsage)
	}
	token, err = credential(c, "node token", token, file)
	return node, token, err
}

// readDoc reads a JSON file (or - for stdin) as raw JSON.
func readDoc(c *Context, path string) (json.RawMessage, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: -f FILE is required", ErrUsage)
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = readAllLimit(c.Stdin, 1<<20)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s is not valid JSON", path)
	}
	return b, nil
}

type published struct {
	ID       string   `json:"id"`
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
}

func report(c *Context, p published) {
	for _, n := range p.Notes {
		fmt.Fprintf(c.Stderr, "note: %s\n", n)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(c.Stderr, "warning: %s\n", w)
	}
}

// publishDoc sends the -f document with method to the org path, prints the agbot's notes and
// warnings, then one line "<what> <id> <done>".
func publishDoc(c *Context, method, what, done string, path ...string) error {
	doc, err := readDoc(c, flagStr(c, "f"))
	if err != nil {
		return err
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	var out published
	if err := cl.Do(method, cl.Path(path...), doc, &out); err != nil {
		return err
	}
	report(c, out)
	fmt.Fprintf(c.Stdout, "%s %s %s\n", what, out.ID, done)
	return nil
}

func servicePublish(c *Context, args []string) error {
	return publishDoc(c, "POST", "service", "published", "services")
}

func addPolicy(c *Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: want NAME", ErrUsage)
	}
	return publishDoc(c, "PUT", "deployment policy", "added", "business/policies", args[0])
}

func removePolicy(c *Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: want NAME", ErrUsage)
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	if err := cl.Do("DELETE", cl.Path("business/policies", args[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "deployment policy %s/%s removed\n", cl.Org, args[0])
	return nil
}

func listPolicy(c *Context, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: want at most one NAME", ErrUsage)
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	var out any
	p := cl.Path("business/policies")
	if len(args) == 1 {
		p = cl.Path("business/policies", args[0])
	}
	if err := cl.Do("GET", p, nil, &out); err != nil {
		return err
	}
	return printJSON(c.Stdout, out)
}

func patternPublish(c *Context, args []string) error {
	name := flagStr(c, "p")
	if name == "" || len(args) != 0 {
		return fmt.Errorf("%w: want -f FILE -p NAME", ErrUsage)
	}
	return publishDoc(c, "PUT", "pattern", "published", "patterns", name)
}
