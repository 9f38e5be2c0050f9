package hzn

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func init() {
	sm := &Command{Name: "secretsmanager", Aliases: []string{"sm"}, Short: "secrets kept by the agbot's secrets manager"}
	Register(nil, sm)
	Register([]string{"secretsmanager"}, &Command{Name: "secret", Short: "add, list, read, remove secrets"})
	names := `
NAME is org level ("db_password"), user level ("user/USER/db_password"), node specific
("node/NODE/db_password") or both ("user/USER/node/NODE/db_password"). -n NODE turns NAME
into its node-specific form. Org admins manage org and node secrets; users manage their
own user/USER/... secrets.`
	Register([]string{"secretsmanager", "secret"}, &Command{
		Name: "add", Args: "NAME", Short: "add a secret (refused if it exists, unless -O)",
		Long: `The value comes from --secretDetail, or safer from -f FILE or -f - (stdin), which keeps
it out of the process list and shell history.` + names,
		Flags: func(fs *flag.FlagSet) {
			fs.String("secretKey", "", "the secret's key (required)")
			fs.String("secretDetail", "", "the secret's value (visible in the process list; prefer -f)")
			fs.String("f", "", "read the value from FILE, or from stdin with -")
			fs.String("n", "", "make it node specific for NODE")
			fs.Bool("O", false, "overwrite an existing secret")
		},
		Run: smAdd,
	})
	Register([]string{"secretsmanager", "secret"}, &Command{
		Name: "list", Args: "[NAME]", Short: "list secret names as JSON (NAME: a scope such as user/U or node/N, or a secret to test)",
		Long: names, Run: smList,
	})
	Register([]string{"secretsmanager", "secret"}, &Command{
		Name: "read", Args: "NAME", Short: "print a secret as JSON {\"key\", \"value\"}", Long: names,
		Flags: func(fs *flag.FlagSet) { fs.String("n", "", "read the node-specific secret of NODE") },
		Run:   smRead,
	})
	Register([]string{"secretsmanager", "secret"}, &Command{
		Name: "remove", Args: "NAME", Short: "remove a secret", Long: `Removing a secret that an agreement uses with nothing to fall back to is refused,
naming the agreements, unless --force, which cancels them. A node-specific secret with an
org or user secret behind it falls back through an update.` + names,
		Flags: func(fs *flag.FlagSet) {
			fs.String("n", "", "remove the node-specific secret of NODE")
			fs.Bool("force", false, "remove even if agreements use it (they are cancelled)")
		},
		Run: smRemove,
	})
}

// nodeName applies -n NODE to NAME.
func nodeName(name, node string) (string, error) {
	if node == "" {
		return name, nil
	}
	parts := strings.Split(name, "/")
	switch {
	case len(parts) == 1:
		return "node/" + node + "/" + name, nil
	case len(parts) == 3 && parts[0] == "user":
		return "user/" + parts[1] + "/node/" + node + "/" + parts[2], nil
	}
	return "", fmt.Errorf("%w: with -n NODE, NAME must be NAME or user/USER/NAME, not %q", ErrUsage, name)
}

func oneName(args []string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", fmt.Errorf("%w: want exactly one NAME", ErrUsage)
	}
	return args[0], nil
}

func readAllLimit(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("value is more than %d bytes", max)
	}
	return b, nil
}

func smAdd(c *Context, args []string) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if name, err = nodeName(name, flagStr(c, "n")); err != nil {
		return err
	}
	key := flagStr(c, "secretKey")
	if key == "" {
		return fmt.Errorf("%w: --secretKey is required", ErrUsage)
	}
	var detail string
	detailSet := false
	c.Flags.Visit(func(f *flag.Flag) {
		if f.Name == "secretDetail" {
			detailSet = true
		}
	})
	file := flagStr(c, "f")
	switch {
	case detailSet && file != "":
		return fmt.Errorf("%w: give --secretDetail or -f, not both", ErrUsage)
	case detailSet:
		detail = flagStr(c, "secretDetail")
	case file == "-":
		b, err := readAllLimit(c.Stdin, 1<<20)
		if err != nil {
			return fmt.Errorf("reading the value from stdin: %w", err)
		}
		detail = strings.TrimSuffix(string(b), "\n")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("-f: %w", err)
		}
		detail = string(b)
	default:
		return fmt.Errorf("%w: give the value with --secretDetail V, -f FILE or -f -", ErrUsage)
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	method := "POST"
	if flagBool(c, "O") {
		method = "PUT"
	}
	var out struct {
		Version int64 `json:"version"`
	}
	err = cl.Do(method, cl.Path("secrets", name), map[string]string{"key": key, "value": detail}, &out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return fmt.Errorf("secret %q already exists in org %s: use -O to overwrite it", name, cl.Org)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "secret %q added to org %s (version %d)\n", name, cl.Org, out.Version)
	return nil
}

func isScope(p string) bool {
	s := strings.Split(p, "/")
	return len(s) == 2 && (s[0] == "user" || s[0] == "node") || len(s) == 4 && s[0] == "user" && s[2] == "node"
}

func smList(c *Context, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%w: want at most one NAME", ErrUsage)
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	path := cl.Path("secrets")
	if len(args) == 1 {
		path = cl.Path("secrets", args[0])
	}
	if len(args) == 1 && !isScope(args[0]) {
		var out struct {
			Exists bool `json:"exists"`
		}
		if err := cl.Do("LIST", path, nil, &out); err != nil {
			return err
		}
		if !out.Exists {
			return fmt.Errorf("secret %q not found in org %s", args[0], cl.Org)
		}
		return printJSON(c.Stdout, []string{args[0]})
	}
	var out []string
	if err := cl.Do("LIST", path, nil, &out); err != nil {
		return err
	}
	if out == nil {
		out = []string{}
	}
	return printJSON(c.Stdout, out)
}

func smRead(c *Context, args []string) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if name, err = nodeName(name, flagStr(c, "n")); err != nil {
		return err
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	var out struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	if err := cl.Do("GET", cl.Path("secrets", name), nil, &out); err != nil {
		return err
	}
	return printJSON(c.Stdout, out)
}

func smRemove(c *Context, args []string) error {
	name, err := oneName(args)
	if err != nil {
		return err
	}
	if name, err = nodeName(name, flagStr(c, "n")); err != nil {
		return err
	}
	cl, err := NewClient(c.Getenv)
	if err != nil {
		return err
	}
	path := cl.Path("secrets", name)
	if flagBool(c, "force") {
		path += "?force=true"
	}
	var out struct {
		Cancelled int `json:"cancelledAgreements"`
	}
	if err := cl.Do("DELETE", path, nil, &out); err != nil {
		return err
	}
	if out.Cancelled > 0 {
		fmt.Fprintf(c.Stdout, "secret %q removed from org %s (%d agreements cancelled)\n", name, cl.Org, out.Cancelled)
	} else {
		fmt.Fprintf(c.Stdout, "secret %q removed from org %s\n", name, cl.Org)
	}
	return nil
}
