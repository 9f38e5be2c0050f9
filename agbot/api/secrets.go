package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// SecretBody is the body of PUT/POST and of GET on a secret (anax: {"key","value"}).
type SecretBody struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Conflict is the 409 body of a refused delete: the agreements that would lose the secret.
type Conflict struct {
	Code  int          `json:"code"`
	Error string       `json:"error"`
	Users []SecretUser `json:"users"`
}

// SecretUser is one agreement that uses a secret with no fallback.
type SecretUser struct {
	Agreement string `json:"agreementId"`
	Node      string `json:"node"`
	Owner     string `json:"owner"`
	Source    string `json:"source"`
	Service   string `json:"service"`
}

// isScope tells a collection path (user/U, node/N, user/U/node/N) from a secret name.
func isScope(p string) bool {
	s := strings.Split(p, "/")
	switch len(s) {
	case 2:
		return s[0] == "user" || s[0] == "node"
	case 4:
		return s[0] == "user" && s[2] == "node"
	}
	return false
}

func (a *API) secrets(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	org, path := r.PathValue("org"), r.PathValue("name")
	audit := func(op, name string, code int, why string) {
		a.log.Info("audit", "op", "secret "+op, "org", org, "secret", name, "caller", c.String(), "result", code, "why", why)
	}
	refuse := func(op, name string, err error) {
		code := status(err)
		audit(op, name, code, err.Error())
		a.fail(w, err)
	}
	if err := secrets.ValidateOrg(org); err != nil {
		refuse(strings.ToLower(r.Method), path, err)
		return
	}

	// Collections: list.
	if path == "" || isScope(path) {
		if r.Method != "GET" && r.Method != "LIST" {
			refuse(strings.ToLower(r.Method), path, fmt.Errorf("%w: %s on a collection of secrets: use GET or LIST", errBadRequest, r.Method))
			return
		}
		scope, err := secrets.ParseScope(path)
		if err != nil {
			refuse("list", path, err)
			return
		}
		t := access.Target{Org: org, User: scope.User, Node: scope.Node}
		if err := access.Secret(c, access.List, t, a.nodeOwner); err != nil {
			refuse("list", path, err)
			return
		}
		names, err := a.sm.List(r.Context(), org, path)
		if err != nil {
			refuse("list", path, err)
			return
		}
		if names == nil {
			names = []string{}
		}
		audit("list", path, 200, "")
		writeJSON(w, 200, names)
		return
	}

	op := map[string]access.Action{"GET": access.Read, "LIST": access.List, "PUT": access.Write, "POST": access.Write, "DELETE": access.Delete}[r.Method]
	n, err := secrets.ParseName(path)
	if err != nil {
		refuse(string(op), path, err)
		return
	}
	t := access.Target{Org: org, User: n.User, Node: n.Node, Name: n.Secret}
	if err := access.Secret(c, op, t, a.nodeOwner); err != nil {
		refuse(string(op), path, err)
		return
	}
	ctx := r.Context()
	switch r.Method {
	case "LIST":
		_, _, err := a.sm.Get(ctx, org, path)
		switch {
		case err == nil:
			audit("list", path, 200, "exists")
			writeJSON(w, 200, map[string]bool{"exists": true})
		case errors.Is(err, secrets.ErrNotFound):
			audit("list", path, 200, "absent")
			writeJSON(w, 200, map[string]bool{"exists": false})
		default:
			refuse("list", path, err)
		}
	case "GET":
		s, _, err := a.sm.Get(ctx, org, path)
		if err != nil {
			refuse("read", path, err)
			return
		}
		audit("read", path, 200, "")
		writeJSON(w, 200, SecretBody{Key: s.Key, Value: s.Value})
	case "PUT", "POST":
		var body SecretBody
		if err := readJSON(r, int64(a.cfg.MaxValue)+4096, &body); err != nil {
			refuse("write", path, err)
			return
		}
		if len(body.Value) > a.cfg.MaxValue {
			refuse("write", path, fmt.Errorf("%w: value is %d bytes, the limit is %d", errTooLarge, len(body.Value), a.cfg.MaxValue))
			return
		}
		if body.Key == "" {
			refuse("write", path, fmt.Errorf("%w: field key: must not be empty", errBadRequest))
			return
		}
		sec := secrets.Secret{Key: body.Key, Value: body.Value}
		var ver int64
		code := 200
		if r.Method == "POST" {
			ver, err = a.sm.Create(ctx, org, path, sec)
			code = 201
		} else {
			ver, err = a.sm.Put(ctx, org, path, sec)
		}
		if err != nil {
			refuse("write", path, err)
			return
		}
		audit("write", path, code, fmt.Sprintf("version %d", ver))
		writeJSON(w, code, map[string]any{"name": path, "version": ver})
	case "DELETE":
		force := r.URL.Query().Get("force") == "true"
		uses, err := a.eng.Users(ctx, org, path)
		if err != nil {
			refuse("delete", path, err)
			return
		}
		if len(uses) > 0 && !force {
			body := Conflict{Code: 409, Users: make([]SecretUser, 0, len(uses))}
			var who []string
			for _, u := range uses {
				body.Users = append(body.Users, SecretUser(u))
				who = append(who, fmt.Sprintf("node %s (owner %s, %s, agreement %s)", u.Node, u.Owner, u.Source, u.Agreement))
			}
			body.Error = fmt.Sprintf("secret %q is used with no fallback by %d agreement(s): %s; delete with force=true to cancel them", path, len(uses), strings.Join(who, ", "))
			audit("delete", path, 409, body.Error)
			writeJSON(w, 409, body)
			return
		}
		if err := a.sm.Delete(ctx, org, path); err != nil {
			refuse("delete", path, err)
			return
		}
		if len(uses) > 0 {
			ids := make([]string, 0, len(uses))
			for _, u := range uses {
				ids = append(ids, u.Agreement)
			}
			if err := a.eng.CancelAgreements(ids, fmt.Sprintf("secret %q deleted with force", path)); err != nil {
				a.log.Error("cancel after forced delete", "secret", path, "err", err)
			}
			// Hold new agreements for those nodes until the secret is back.
			if err := a.eng.Reconcile(ctx, org); err != nil {
				a.log.Warn("reconcile after forced delete", "org", org, "err", err)
			}
		}
		audit("delete", path, 200, fmt.Sprintf("force=%v cancelled=%d", force, len(uses)))
		writeJSON(w, 200, map[string]any{"name": path, "deleted": true, "cancelledAgreements": len(uses)})
	}
}

func (a *API) nodeOwner(org, node string) string {
	n, err := a.st.Nodes.Get(org, node)
	if err != nil {
		return ""
	}
	return n.Owner
}
