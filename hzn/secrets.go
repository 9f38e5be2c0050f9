package hzn

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

const secretNames = `NAME is org level ("db_password", nested "test/db_password"), user level
("user/USER/db_password"), node specific ("node/NODE/db_password") or both
("user/USER/node/NODE/db_password"). -n NODE turns NAME into its node-specific form.`

// maxSecretValue bounds a value read from a file or stdin (the agbot has its own limit).
const maxSecretValue = 1 << 20

func (c *cli) addSecretsManager() {
	sm := c.app.Command("secretsmanager", "List and manage secrets in the secrets manager. NOTE: You must authenticate as an administrator to list secrets available to the entire organization.").Alias("sm").Alias("secretmanager")
	org := sm.Flag("org", "The Horizon organization ID. If not specified, HZN_ORG_ID will be used as a default.").Short('o').String()
	userPw := sm.Flag("user-pw", "Horizon Exchange credentials to query secrets manager resources. The default is HZN_EXCHANGE_USER_AUTH environment variable. If you don't prepend it with the user's org, it will automatically be prepended with the value of the HZN_ORG_ID environment variable. A password of - is read from stdin.").Short('u').PlaceHolder("USER:PW").String()
	secret := sm.Command("secret", "List and manage secrets in the secrets manager.")

	list := secret.Command("list", "Display the names of the secrets in the secrets manager. "+secretNames).Alias("ls")
	listAll := list.Flag("listAll", "List all secrets in the given org in the secrets manager.").Short('a').Bool()
	listNode := list.Flag("nodeId", "The node id of the node secret to list. Include only if this secret is specific to a single node.").Short('n').String()
	listName := list.Arg("secretName", "List just this one secret. Returns a boolean indicating the existence of the secret. If the secret does not exist, returns with exit code 1.").String()
	c.on(list, func() error { return c.smList(org, userPw, *listName, *listNode, *listAll) })

	add := secret.Command("add", "Add a secret to the secrets manager. "+secretNames)
	addName := add.Arg("secretName", "The name of the secret. It must be unique within your organization.").Required().String()
	addNode := add.Flag("nodeId", "The id of the node to apply this secret to. Include only if this secret is specific to a single node.").Short('n').String()
	addFile := add.Flag("secretFile", "Filepath to a file containing the secret details. Mutually exclusive with --secretDetail. Specify -f- to read from stdin.").Short('f').String()
	addKey := add.Flag("secretKey", "A key for the secret.").Required().String()
	addDetail := add.Flag("secretDetail", "The secret details as a string (visible in the process list: prefer -f). Mutually exclusive with --secretFile.").Short('d').String()
	addOverwrite := add.Flag("overwrite", "Overwrite the existing secret if it exists in the secrets manager. It will skip the 'do you want to overwrite' prompt.").Short('O').Bool()
	c.on(add, func() error {
		return c.smAdd(org, userPw, secretName(*addName, *addNode), *addFile, *addKey, *addDetail, *addOverwrite)
	})

	remove := secret.Command("remove", "Remove a secret in the secrets manager. Removing a secret that agreements use with nothing to fall back to is refused, naming the agreements, unless --cancel-agreements.").Alias("rm")
	rmNode := remove.Flag("nodeId", "The node id of the secret to be removed. Include only if this secret is specific to a single node.").Short('n').String()
	rmForce := remove.Flag("force", "Skip the 'are you sure?' prompt.").Short('f').Bool()
	rmCancel := remove.Flag("cancel-agreements", "Remove the secret even if agreements use it with no fallback: those agreements are cancelled.").Bool()
	rmName := remove.Arg("secretName", "The name of the secret to be removed from the secrets manager.").Required().String()
	c.on(remove, func() error { return c.smRemove(org, userPw, secretName(*rmName, *rmNode), *rmForce, *rmCancel) })

	read := secret.Command("read", "Read the details of a secret stored in the secrets manager. This consists of the key and value pair provided on secret creation.")
	readNode := read.Flag("nodeId", "The node id of the node secret to read. Include only if this secret is specific to a single node.").Short('n').String()
	readName := read.Arg("secretName", "The name of the secret to read in the secrets manager.").Required().String()
	c.on(read, func() error { return c.smRead(org, userPw, secretName(*readName, *readNode)) })

	status := secret.Command("status", "Show a secret's rollout: which version each node's agreements hold (acknowledged, sent, offline since when, failed and why). Authorised like read, without reading the value. This project's; anax has no such command.")
	stNode := status.Flag("nodeId", "Show the agreements of this node only, one line each.").Short('n').String()
	// --output only: -o is the org on every sm command, as in anax.
	stOut := status.Flag("output", "json: the agbot's answer as it is.").Enum("json", "text")
	stName := status.Arg("secretName", "The secret manager name (org, user/U/... or node/N/...).").Required().String()
	c.on(status, func() error { return c.smStatus(org, userPw, *stName, *stNode, *stOut == "json") })
}

// secretName trims slashes and applies -n NODE as anax does: name -> node/NODE/name,
// user/U -> user/U/node/NODE, user/U/name -> user/U/node/NODE/name, "" -> node/NODE. A
// name that already holds "node/" is left alone.
func secretName(name, node string) string {
	name = strings.Trim(strings.TrimSpace(name), "/")
	if node == "" || strings.Contains(name, "node/") {
		return name
	}
	parts := strings.Split(name, "/")
	switch {
	case name == "":
		return "node/" + node
	case parts[0] == "user" && len(parts) == 2:
		return name + "/node/" + node
	case parts[0] == "user" && len(parts) >= 3:
		return "user/" + parts[1] + "/node/" + node + "/" + strings.Join(parts[2:], "/")
	}
	return "node/" + node + "/" + name
}

// isSecretDirectory tells a collection (org, user/U, node/N, user/U/node/N) from a name.
func isSecretDirectory(name string) bool {
	if name == "" {
		return true
	}
	p := strings.Split(name, "/")
	return p[0] == "user" && (len(p) == 2 || len(p) == 4 && p[2] == "node") || p[0] == "node" && len(p) == 2
}

// refused is the agbot's message as anax prints it (exit ExitGeneral).
func refused(raw []byte) error { return fail(ExitGeneral, "%s", apiMessage(raw)) }

func (c *cli) smList(org, userPw *string, name, node string, all bool) error {
	name = secretName(name, node)
	cl, err := c.client(org, userPw)
	if err != nil {
		return err
	}
	path := cl.Path("secrets", name)
	if name == "" {
		path = cl.Path("secrets")
	}
	if all {
		path = cl.Path("allsecrets")
	}
	code, raw, err := cl.retry503("LIST", path, nil)
	if err != nil {
		return err
	}
	switch {
	case code == 400 || code == 401 || code == 403 || code == 503 || code == 504:
		return refused(raw)
	case all || isSecretDirectory(name):
		if code == 404 || strings.TrimSpace(string(raw)) == "null" {
			fmt.Fprintln(c.env.Stdout, "[]")
			return nil
		}
		if code != 200 {
			return badCode("LIST", cl.Base+path, code, raw)
		}
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return fail(ExitJSON, "failed to unmarshal REST API response: %v", err)
		}
		if names == nil {
			names = []string{}
		}
		return printJSON(c.env.Stdout, names)
	}
	var out struct {
		Exists bool `json:"exists"`
	}
	switch code {
	case 200:
		if err := json.Unmarshal(raw, &out); err != nil {
			return fail(ExitJSON, "failed to unmarshal REST API response: %v", err)
		}
	case 404:
	default:
		return badCode("LIST", cl.Base+path, code, raw)
	}
	if err := printJSON(c.env.Stdout, out); err != nil {
		return err
	}
	if !out.Exists {
		return &ExitError{Code: 1, Err: errSilent}
	}
	return nil
}

func (c *cli) smAdd(org, userPw *string, name, file, key, detail string, overwrite bool) error {
	if file != "" && detail != "" {
		return fail(ExitInput, "-f is mutually exclusive with --secretDetail.")
	}
	if file == "" && detail == "" {
		return fail(ExitInput, "Must specify either -f or --secretDetail.")
	}
	if file == "-" {
		if err := c.claimStdin("the secret detail"); err != nil {
			return err
		}
	}
	cl, err := c.client(org, userPw)
	if err != nil {
		return err
	}
	path := cl.Path("secrets", name)
	exists := false
	// Without -O, ask whether it exists (to prompt) as anax does; with -O the PUT alone
	// gives the same answers, one round trip sooner.
	code, raw := 404, []byte(nil)
	if !overwrite {
		if code, raw, err = cl.retry503("LIST", path, nil); err != nil {
			return err
		}
	}
	switch code {
	case 400, 401, 403, 503:
		return fail(ExitGeneral, "%s", strings.Replace(apiMessage(raw), " list ", " add ", 1))
	case 200:
		var out struct {
			Exists *bool `json:"exists"`
		}
		if json.Unmarshal(raw, &out) != nil || out.Exists == nil {
			return fail(ExitInput, "Incorrect secret name given: %v", name)
		}
		exists = *out.Exists
	case 404:
	default:
		return badCode("LIST", cl.Base+path, code, raw)
	}
	value := detail
	if file != "" {
		var b []byte
		if file == "-" {
			b, err = c.readStdinAll("the secret detail", maxSecretValue)
		} else {
			b, err = os.ReadFile(file)
			if err != nil {
				err = fail(ExitFile, "reading %s failed: %v", file, err)
			}
		}
		if err != nil {
			return err
		}
		value = string(b)
	}
	if exists && !overwrite {
		ok, err := c.confirm(fmt.Sprintf("Secret \"%s\" already exists in the secrets manager. Do you want to overwrite?", name))
		if !ok || err != nil {
			return err
		}
	}
	code, raw, err = cl.retry503(http.MethodPut, path, map[string]string{"key": key, "value": value})
	if err != nil {
		return err
	}
	switch code {
	case 200, 201:
		fmt.Fprintf(c.env.Stdout, "Secret \"%s\" successfully added to the secrets manager.\n", name)
		return nil
	case 400, 401, 403, 503:
		return refused(raw)
	}
	return badCode("PUT", cl.Base+path, code, raw)
}

func (c *cli) smRemove(org, userPw *string, name string, force, cancel bool) error {
	if !force {
		ok, err := c.confirm(fmt.Sprintf("Are you sure you want to remove secret %s from the secrets manager?", name))
		if !ok || err != nil {
			return err
		}
	}
	cl, err := c.client(org, userPw)
	if err != nil {
		return err
	}
	path := cl.Path("secrets", name)
	if cancel {
		path += "?force=true"
	}
	code, raw, err := cl.retry503(http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	why := apiMessage(raw)
	switch code {
	case 200, 204:
		fmt.Fprintf(c.env.Stdout, "Secret \"%v\" successfully deleted from the secrets manager.\n", name)
		return nil
	case 400:
		return fail(ExitInput, "Bad request, secret name \"%s\" invalid.\n%s", name, why)
	case 401, 403:
		if strings.HasPrefix(why, "Permission denied") || strings.HasPrefix(why, "Failed to authenticate") {
			return fail(ExitGeneral, "%s", why) // this agbot already words it as anax's hzn does
		}
		user, _, _ := strings.Cut(c.orEnv(userPw, "HZN_EXCHANGE_USER_AUTH"), ":")
		return fail(ExitGeneral, "Permission denied, user \"%s\" cannot access \"%s\".\n%s", user, name, why)
	case 404:
		return fail(ExitGeneral, "Secret \"%s\" not found in the secrets manager, nothing to remove.", name)
	case 409:
		return fail(ExitGeneral, "%s\nUse --cancel-agreements to remove it and cancel those agreements.", why)
	case 503:
		return fail(ExitGeneral, "Vault component not found in the management hub.")
	}
	return badCode("DELETE", cl.Base+path, code, raw)
}

func (c *cli) smRead(org, userPw *string, name string) error {
	cl, err := c.client(org, userPw)
	if err != nil {
		return err
	}
	path := cl.Path("secrets", name)
	code, raw, err := cl.retry503(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	switch code {
	case 200:
		var s struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			return fail(ExitJSON, "failed to unmarshal REST API response: %v", err)
		}
		return printJSON(c.env.Stdout, s)
	case 400, 401, 403, 404, 503:
		return refused(raw)
	}
	return badCode("GET", cl.Base+path, code, raw)
}

// rollout is the agbot's answer to GET /org/{org}/rollouts/{name} (the fields hzn prints).
type rollout struct {
	Summary string `json:"summary"`
	Nodes   []struct {
		Node         string `json:"node"`
		Agreement    string `json:"agreementId"`
		State        string `json:"state"`
		Version      int64  `json:"version"`
		Acknowledged int64  `json:"acknowledgedVersion"`
		LastPoll     string `json:"lastPoll,omitempty"`
		Reason       string `json:"reason,omitempty"`
	} `json:"nodes"`
}

// smStatus prints a secret's rollout: the summary, or with -n the node's agreements, or with
// -o json the whole answer.
func (c *cli) smStatus(org, userPw *string, name, node string, asJSON bool) error {
	cl, err := c.client(org, userPw)
	if err != nil {
		return err
	}
	path := "/org/" + url.PathEscape(cl.Org) + "/rollouts/" + strings.Trim(name, "/")
	if node != "" {
		path += "?node=" + url.QueryEscape(node)
	}
	code, raw, err := cl.retry503(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		if code == 400 || code == 401 || code == 403 || code == 404 || code == 429 || code == 503 {
			return refused(raw)
		}
		return badCode("GET", cl.Base+path, code, raw)
	}
	if asJSON {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(ExitJSON, "failed to unmarshal REST API response: %v", err)
		}
		return printJSON(c.env.Stdout, v)
	}
	var r rollout
	if err := json.Unmarshal(raw, &r); err != nil {
		return fail(ExitJSON, "failed to unmarshal REST API response: %v", err)
	}
	fmt.Fprintln(c.env.Stdout, r.Summary)
	if node != "" {
		for _, n := range r.Nodes {
			line := fmt.Sprintf("%s agreement %s: %s, version %d (acknowledged %d)", n.Node, n.Agreement, n.State, n.Version, n.Acknowledged)
			if n.Reason != "" {
				line += ": " + n.Reason
			}
			fmt.Fprintln(c.env.Stdout, line)
		}
	}
	return nil
}
