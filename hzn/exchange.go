package hzn

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/alecthomas/kingpin/v2"
)

// exchange holds the flags the exchange commands share.
type exchange struct {
	c           *cli
	org, userPw *string
}

func (c *cli) addExchange() {
	ex := c.app.Command("exchange", "List and manage Horizon Exchange resources kept by the agbot: users, nodes, services, deployment policies and patterns.").Alias("ex")
	e := &exchange{c: c,
		org:    ex.Flag("org", "The Horizon exchange organization ID. If not specified, HZN_ORG_ID will be used as a default.").Short('o').String(),
		userPw: ex.Flag("user-pw", "Horizon Exchange user credentials to query and create exchange resources. If not specified, HZN_EXCHANGE_USER_AUTH will be used as a default. If you don't prepend it with the user's org, it will automatically be prepended with the -o value. A password of - is read from stdin.").Short('u').PlaceHolder("USER:PW").String(),
	}
	c.on(ex.Command("version", "Display the version of the Horizon Exchange (this agbot)."), func() error { return e.admin("version") })
	c.on(ex.Command("status", "Display the status of the Horizon Exchange (this agbot)."), func() error { return e.admin("status") })
	e.addUser(ex)
	e.addNode(ex)
	e.addService(ex)
	e.addDeployment(ex)
	e.addPattern(ex)
}

func (e *exchange) client() (*Client, error) { return e.c.client(e.org, e.userPw) }

// admin prints GET /v1/admin/version (text) or /v1/admin/status (JSON).
func (e *exchange) admin(what string) error {
	base := e.c.agbotURL()
	if base == "" {
		return fail(ExitHTTP, "HZN_AGBOT_URL is not defined")
	}
	hc, err := e.c.httpClient(0)
	if err != nil {
		return err
	}
	resp, err := hc.Get(base + "/v1/admin/" + what)
	if err != nil {
		return fail(ExitHTTP, "Can't connect to the Horizon Exchange at %s: %v", base, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return badCode("GET", base+"/v1/admin/"+what, resp.StatusCode, raw)
	}
	if what == "status" {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(ExitJSON, "failed to unmarshal exchange status: %v", err)
		}
		return printJSON(e.c.env.Stdout, v)
	}
	fmt.Fprintln(e.c.env.Stdout, strings.TrimSpace(string(raw)))
	return nil
}

// list prints GET path as anax's list commands do: one named record as {"org/name": ...},
// else the sorted names (or, with long, every record).
func (e *exchange) list(path, one string, long bool) error {
	cl, err := e.client()
	if err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := cl.Do("GET", cl.Path(path), nil, &all); err != nil {
		return err
	}
	key := func(k string) string {
		if strings.Contains(k, "/") {
			return k
		}
		return cl.Org + "/" + k
	}
	out := map[string]json.RawMessage{}
	names := []string{}
	for k, v := range all {
		out[key(k)] = v
		names = append(names, key(k))
	}
	sort.Strings(names)
	if one != "" {
		v, ok := out[key(one)]
		if !ok {
			return fail(ExitNotFound, "'%s' not found in org %s", one, cl.Org)
		}
		return printJSON(e.c.env.Stdout, map[string]json.RawMessage{key(one): v})
	}
	if long {
		return printJSON(e.c.env.Stdout, out)
	}
	return printJSON(e.c.env.Stdout, names)
}

// remove asks (unless force), DELETEs path and prints done.
func (e *exchange) remove(force bool, question, path, done string) error {
	if !force {
		if ok, err := e.c.confirm(question); !ok || err != nil {
			return err
		}
	}
	cl, err := e.client()
	if err != nil {
		return err
	}
	if err := cl.Do("DELETE", cl.Path(path), nil, nil); err != nil {
		return err
	}
	if done != "" {
		fmt.Fprintln(e.c.env.Stdout, done)
	}
	return nil
}

func (e *exchange) addUser(ex *kingpin.CmdClause) {
	user := ex.Command("user", "List and manage users in the Horizon Exchange.")
	create := user.Command("create", "Create the user resource in the Horizon Exchange.").Alias("cr")
	name := create.Arg("user", "Your username for this user account when creating it in the Horizon exchange.").Required().String()
	pw := create.Arg("pw", "The password (- reads it from stdin; or use --password-file).").String()
	email := create.Arg("email", "Email address (optional).").String()
	admin := create.Flag("admin", "This user should be an administrator, capable of managing all resources in this org of the Exchange.").Short('A').Bool()
	hub := create.Flag("hubadmin", "This user should be a hub administrator (not supported by this agbot: the hub admin is made by agbot init).").Short('H').Bool()
	pwFile := create.Flag("password-file", "Read the password from this file instead of the pw argument.").String()
	e.c.on(create, func() error {
		if *hub {
			return fail(ExitGeneral, "hub admins are made by 'agbot init', not by hzn")
		}
		if *pw == "" && *pwFile == "" {
			return fail(ExitInput, "give the password as the pw argument, - for stdin, or --password-file")
		}
		p, err := e.c.credential("password", *pw, *pwFile)
		if err != nil {
			return err
		}
		cl, err := e.client()
		if err != nil {
			return err
		}
		return cl.Do("POST", cl.Path("users", *name), map[string]any{"password": p, "admin": *admin, "email": *email}, nil)
	})
	list := user.Command("list", "Display the user resource from the Horizon Exchange.").Alias("ls")
	one := list.Arg("user", "List this one user. Default is your own user.").String()
	all := list.Flag("all", "List all users in the org (admins only).").Short('a').Bool()
	namesOnly := list.Flag("names", "When listing all of the users, show only the usernames.").Short('N').Bool()
	e.c.on(list, func() error {
		if *all {
			return e.list("users", "", !*namesOnly)
		}
		cl, err := e.client()
		if err != nil {
			return err
		}
		u := *one
		if u == "" {
			u, _, _ = strings.Cut(cl.User, ":")
			u = u[strings.Index(u, "/")+1:]
		}
		var v json.RawMessage
		if err := cl.Do("GET", cl.Path("users", u), nil, &v); err != nil {
			return err
		}
		return printJSON(e.c.env.Stdout, map[string]json.RawMessage{cl.Org + "/" + u: v})
	})
	rm := user.Command("remove", "Remove a user resource from the Horizon Exchange.").Alias("rm")
	rmName := rm.Arg("user", "The user to remove.").Required().String()
	rmForce := rm.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	e.c.on(rm, func() error {
		return e.remove(*rmForce, fmt.Sprintf("Warning: this will also delete all Exchange resources owned by this user (nodes, services, patterns, etc). Are you sure you want to remove user %v/%v from the Horizon Exchange?", e.c.orEnv(e.org, "HZN_ORG_ID"), *rmName),
			"users/"+*rmName, "")
	})
}

func (e *exchange) addNode(ex *kingpin.CmdClause) {
	node := ex.Command("node", "List and manage nodes in the Horizon Exchange")
	create := node.Command("create", "Create the node resource in the Horizon Exchange.").Alias("cr")
	idTok := create.Flag("node-id-tok", "The Horizon Exchange node ID and token to be created; node:- reads the token from stdin.").Short('n').PlaceHolder("ID:TOK").String()
	tokFile := create.Flag("token-file", "Read the node token from this file.").String()
	arch := create.Flag("arch", "Your node architecture.").Short('a').String()
	create.Flag("name", "The name of your node (ignored: the node id is its name).").Short('m').String()
	nodeType := create.Flag("node-type", "The type of your node: device (cluster is not supported).").Short('T').Default("device").String()
	argNode := create.Arg("node", "The node to be created.").String()
	argTok := create.Arg("token", "The token the new node should have.").String()
	e.c.on(create, func() error {
		id, tok, err := e.nodeIDToken(*idTok, *argNode, *argTok, *tokFile)
		if err != nil {
			return err
		}
		if *nodeType != "device" {
			return fail(ExitInput, "Wrong node type specified: %v. This agbot serves device nodes only.", *nodeType)
		}
		cl, err := e.client()
		if err != nil {
			return err
		}
		if err := cl.Do("PUT", cl.Path("nodes", id), map[string]any{"token": tok, "arch": *arch}, nil); err != nil {
			return err
		}
		fmt.Fprintf(e.c.env.Stdout, "Node %v created.\n", cl.Org+"/"+id)
		return nil
	})
	list := node.Command("list", "Display the node resources from the Horizon Exchange.").Alias("ls")
	one := list.Arg("node", "List just this one node.").String()
	long := list.Flag("long", "Show the entire resource of each node.").Short('l').Bool()
	e.c.on(list, func() error { return e.list("nodes", *one, *long) })
	rm := node.Command("remove", "Remove a node resource from the Horizon Exchange. Do NOT do this when an edge node is registered with this node id.").Alias("rm")
	rmNode := rm.Arg("node", "The node to remove.").Required().String()
	rmForce := rm.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	e.c.on(rm, func() error {
		return e.remove(*rmForce, fmt.Sprintf("Are you sure you want to remove node %v/%v from the Horizon Exchange?", e.c.orEnv(e.org, "HZN_ORG_ID"), *rmNode), "nodes/"+*rmNode, "")
	})
}

// nodeIDToken takes -n ID:TOK or the node and token arguments, as anax; a token of "-"
// or --token-file keeps it out of argv.
func (e *exchange) nodeIDToken(idTok, node, token, file string) (string, string, error) {
	switch {
	case idTok != "" && (node != "" || token != ""):
		return "", "", fail(ExitInput, "do not specify both the -n flag and the node and token positional arguments. They mean the same thing.")
	case idTok != "":
		node, token, _ = strings.Cut(idTok, ":")
	case node == "":
		return "", "", fail(ExitInput, "either the node and token positional arguments, or the -n flag must be specified.")
	}
	if token == "" && file == "" {
		return "", "", fail(ExitInput, "if node or token are specified then they both must be specified")
	}
	tok, err := e.c.credential("node token", token, file)
	return node, tok, err
}

// readDoc reads a JSON file (or - for stdin).
func (c *cli) readDoc(path string) (json.RawMessage, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = c.readStdinAll("the JSON input", 1<<20)
	} else if b, err = os.ReadFile(path); err != nil {
		err = fail(ExitFile, "reading %s failed: %v", path, err)
	}
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fail(ExitJSON, "failed to unmarshal json input file %s: not valid JSON", path)
	}
	return b, nil
}

// Published is the agbot's answer to a publish: the id, notes and warnings.
type published struct {
	ID       string   `json:"id"`
	Notes    []string `json:"notes"`
	Warnings []string `json:"warnings"`
}

// publishDoc sends doc with method to the org path and prints the agbot's notes and
// warnings (stderr, as anax's) before returning the record's id.
func (e *exchange) publishDoc(doc json.RawMessage, method string, path ...string) (string, error) {
	cl, err := e.client()
	if err != nil {
		return "", err
	}
	var out published
	if err := cl.Do(method, cl.Path(path...), doc, &out); err != nil {
		return "", err
	}
	for _, n := range out.Notes {
		fmt.Fprintf(e.c.env.Stderr, "Note: %s\n", n)
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(e.c.env.Stderr, "Warning: %s\n", w)
	}
	return out.ID, nil
}

func (e *exchange) addService(ex *kingpin.CmdClause) {
	svc := ex.Command("service", "List and manage services in the Horizon Exchange").Alias("serv")
	pub := svc.Command("publish", "Create/update the service resource in the Horizon Exchange.").Alias("pub")
	file := pub.Flag("json-file", "The path of a JSON file containing the service definition. Specify -f- to read from stdin.").Short('f').Required().String()
	pub.Flag("overwrite", "Overwrite the existing version if the service exists (this agbot always replaces it).").Short('O').Bool()
	pub.Flag("dont-change-image-tag", "Accepted for compatibility: images are never re-tagged.").Short('I').Bool()
	pub.Flag("pull-image", "Accepted for compatibility: images are never pulled by hzn.").Short('P').Bool()
	public := pub.Flag("public", "Whether the service is visible to users outside of the organization.").String()
	e.c.on(pub, func() error {
		doc, err := e.c.readDoc(*file)
		if err != nil {
			return err
		}
		if *public != "" {
			if doc, err = setField(doc, "public", *public == "true"); err != nil {
				return err
			}
		}
		id, err := e.publishDoc(doc, "POST", "services")
		if err != nil {
			return err
		}
		fmt.Fprintf(e.c.env.Stdout, "Service %s published in the Horizon Exchange\n", id)
		return nil
	})
	list := svc.Command("list", "Display the service resources from the Horizon Exchange.").Alias("ls")
	one := list.Arg("service", "List just this one service.").String()
	long := list.Flag("long", "Show the entire service definition.").Short('l').Bool()
	e.c.on(list, func() error { return e.list("services", *one, *long) })
	rm := svc.Command("remove", "Remove a service resource from the Horizon Exchange.").Alias("rm")
	rmSvc := rm.Arg("service", "The service to remove.").Required().String()
	rmForce := rm.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	e.c.on(rm, func() error {
		id := (*rmSvc)[strings.Index(*rmSvc, "/")+1:]
		return e.remove(*rmForce, fmt.Sprintf("Are you sure you want to remove service %v/%v from the Horizon Exchange?", e.c.orEnv(e.org, "HZN_ORG_ID"), id), "services/"+id, "")
	})
}

// setField sets one top-level field of a JSON object.
func setField(doc json.RawMessage, k string, v any) (json.RawMessage, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, fail(ExitJSON, "the input is not a JSON object: %v", err)
	}
	m[k] = v
	b, err := json.Marshal(m)
	return b, err
}

func (e *exchange) addDeployment(ex *kingpin.CmdClause) {
	dep := ex.Command("deployment", "List and manage deployment policies in the Horizon Exchange.").Alias("dep").Alias("business")
	add := dep.Command("addpolicy", "Add or replace a deployment policy in the Horizon Exchange.").Alias("addp")
	name := add.Arg("policy", "The name of the deployment policy to add or overwrite.").Required().String()
	file := add.Flag("json-file", "The path of a JSON file containing the deployment policy. Specify -f- to read from stdin.").Short('f').Required().String()
	noConstraints := add.Flag("no-constraints", "Allow this deployment policy to be published even though it does not have any constraints.").Bool()
	e.c.on(add, func() error {
		doc, err := e.c.readDoc(*file)
		if err != nil {
			return err
		}
		var p struct {
			Constraints []string `json:"constraints"`
		}
		if err := json.Unmarshal(doc, &p); err != nil {
			return fail(ExitInput, "Incorrect deployment policy format in file %s: %v", *file, err)
		}
		if len(p.Constraints) == 0 && !*noConstraints {
			return fail(ExitInput, "The deployment policy has no constraints which might result in the service being deployed to all nodes. Please specify --no-constraints to confirm that this is acceptable.")
		}
		if _, err := e.publishDoc(doc, "PUT", "business/policies", *name); err != nil {
			return err
		}
		fmt.Fprintf(e.c.env.Stdout, "Deployment policy: %v/%v added in the Horizon Exchange\n", e.c.orEnv(e.org, "HZN_ORG_ID"), *name)
		return nil
	})
	list := dep.Command("listpolicy", "Display the deployment policies from the Horizon Exchange.").Alias("ls")
	one := list.Arg("policy", "List just this one deployment policy.").String()
	long := list.Flag("long", "Display detailed output about the deployment policies.").Short('l').Bool()
	e.c.on(list, func() error { return e.list("business/policies", *one, *long) })
	rm := dep.Command("removepolicy", "Remove the deployment policy in the Horizon Exchange (its agreements are cancelled).").Alias("rmp")
	rmName := rm.Arg("policy", "The name of the deployment policy to be removed.").Required().String()
	rmForce := rm.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	e.c.on(rm, func() error {
		org := e.c.orEnv(e.org, "HZN_ORG_ID")
		return e.remove(*rmForce, fmt.Sprintf("Are you sure you want to remove deployment policy %v for org %v from the Horizon Exchange?", *rmName, org),
			"business/policies/"+*rmName, fmt.Sprintf("Deployment policy %v/%v removed", org, *rmName))
	})
}

func (e *exchange) addPattern(ex *kingpin.CmdClause) {
	pat := ex.Command("pattern", "List and manage patterns in the Horizon Exchange").Alias("pat")
	pub := pat.Command("publish", "Create/update the pattern resource in the Horizon Exchange.").Alias("pub")
	file := pub.Flag("json-file", "The path of a JSON file containing the pattern. Specify -f- to read from stdin.").Short('f').Required().String()
	name := pub.Flag("pattern-name", "The name to use for this pattern in the Horizon exchange. If not specified, the file's \"name\", else the base name of the file.").Short('p').String()
	e.c.on(pub, func() error {
		doc, err := e.c.readDoc(*file)
		if err != nil {
			return err
		}
		n := *name
		if n == "" {
			var p struct {
				Name string `json:"name"`
			}
			_ = json.Unmarshal(doc, &p)
			n = p.Name
		}
		if n == "" && *file != "-" {
			n = strings.TrimSuffix(filepath.Base(*file), filepath.Ext(*file))
		}
		if n == "" {
			return fail(ExitInput, "give the pattern name with -p")
		}
		id, err := e.publishDoc(doc, "PUT", "patterns", n)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.c.env.Stdout, "Pattern %s published in the Horizon Exchange\n", id)
		return nil
	})
	list := pat.Command("list", "Display the pattern resources from the Horizon Exchange.").Alias("ls")
	one := list.Arg("pattern", "List just this one pattern.").String()
	long := list.Flag("long", "Show the entire resource of each pattern.").Short('l').Bool()
	e.c.on(list, func() error { return e.list("patterns", *one, *long) })
	rm := pat.Command("remove", "Remove a pattern resource from the Horizon Exchange (its agreements are cancelled).").Alias("rm")
	rmName := rm.Arg("pattern", "The pattern to remove.").Required().String()
	rmForce := rm.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	e.c.on(rm, func() error {
		return e.remove(*rmForce, fmt.Sprintf("Are you sure you want to remove pattern %v/%v from the Horizon Exchange?", e.c.orEnv(e.org, "HZN_ORG_ID"), *rmName), "patterns/"+*rmName, "")
	})
}
