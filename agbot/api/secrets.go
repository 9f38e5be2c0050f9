package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/engine"
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

// secretReq is one request on the secrets API: who asks, for what, and how to answer.
type secretReq struct {
	a         *API
	w         http.ResponseWriter
	r         *http.Request
	c         access.Caller
	org, path string
}

func (q *secretReq) audit(op, name string, code int, why string) {
	q.a.log.Info("audit", "op", "secret "+op, "org", q.org, "secret", name, "caller", q.c.String(), "result", code, "why", why)
}

// refuse answers err in anax's shape (a JSON string) and audits it.
func (q *secretReq) refuse(op string, err error) {
	code := status(err)
	q.audit(op, q.path, code, err.Error())
	if code == http.StatusInternalServerError {
		q.a.log.Error("internal error", "err", err)
	}
	writeJSON(q.w, code, anaxMessage(q.c, op, q.org, q.path, code, err))
}

// secretRequest checks what every secrets call shares: the org, and anax's refusals of a name
// that is only a scope keyword or a scope where a secret is meant. ok false: answered.
func (a *API) secretRequest(w http.ResponseWriter, r *http.Request) (*secretReq, bool) {
	q := &secretReq{a: a, w: w, r: r, c: callerOf(r), org: r.PathValue("org"), path: r.PathValue("name")}
	op := strings.ToLower(r.Method)
	if err := secrets.ValidateOrg(q.org); err != nil {
		q.refuse(op, err)
		return nil, false
	}
	switch {
	case q.path == "user" || q.path == "node":
		q.refuse(op, fmt.Errorf("%w: %s must be specified in the API path", errBadRequest, strings.ToUpper(q.path[:1])+q.path[1:]))
		return nil, false
	case isScope(q.path) && r.Method != "LIST":
		q.refuse(op, fmt.Errorf("%w: Incorrect secret name provided: %q cannot refer to a secret in the secrets manager (it is a collection: LIST it)", errBadRequest, q.path))
		return nil, false
	case q.collection() && r.Method != http.MethodGet && r.Method != "LIST":
		q.refuse(op, fmt.Errorf("%w: %s on a collection of secrets: use GET or LIST", errBadRequest, r.Method))
		return nil, false
	}
	return q, true
}

func (q *secretReq) collection() bool { return q.path == "" || isScope(q.path) }

// allowed parses the secret name and checks the caller may act on it. ok false: answered.
func (q *secretReq) allowed(op access.Action) bool {
	n, err := secrets.ParseName(q.path)
	if err != nil {
		q.refuse(string(op), err)
		return false
	}
	t := access.Target{Org: q.org, User: n.User, Node: n.Node, Name: n.Secret}
	if err := access.Secret(q.c, op, t, q.a.nodeOwner); err != nil {
		q.refuse(string(op), err)
		return false
	}
	return true
}

// listSecrets serves LIST and GET on a collection (the names in a scope), and LIST of one name
// (anax's {"exists": bool}).
func (a *API) listSecrets(w http.ResponseWriter, r *http.Request) {
	q, ok := a.secretRequest(w, r)
	if !ok {
		return
	}
	if !q.collection() {
		q.exists()
		return
	}
	scope, err := secrets.ParseScope(q.path)
	if err != nil {
		q.refuse("list", err)
		return
	}
	t := access.Target{Org: q.org, User: scope.User, Node: scope.Node}
	if err := access.Secret(q.c, access.List, t, a.nodeOwner); err != nil {
		q.refuse("list", err)
		return
	}
	names, err := a.sm.List(r.Context(), q.org, q.path)
	if err != nil {
		q.refuse("list", err)
		return
	}
	if names == nil {
		names = []string{}
	}
	q.audit("list", q.path, http.StatusOK, "")
	writeJSON(w, http.StatusOK, names)
}

// exists answers LIST of one name: {"exists": true|false}, as anax.
func (q *secretReq) exists() {
	if !q.allowed(access.List) {
		return
	}
	_, _, err := q.a.sm.Get(q.r.Context(), q.org, q.path)
	switch {
	case err == nil:
		q.audit("list", q.path, http.StatusOK, "exists")
		writeJSON(q.w, http.StatusOK, map[string]bool{"exists": true})
	case errors.Is(err, secrets.ErrNotFound):
		q.audit("list", q.path, http.StatusOK, "absent")
		writeJSON(q.w, http.StatusOK, map[string]bool{"exists": false})
	default:
		q.refuse("list", err)
	}
}

// getSecret serves GET of one name (GET of a collection lists it).
func (a *API) getSecret(w http.ResponseWriter, r *http.Request) {
	q, ok := a.secretRequest(w, r)
	if !ok {
		return
	}
	if q.collection() {
		a.listSecrets(w, r)
		return
	}
	if !q.allowed(access.Read) {
		return
	}
	s, _, err := a.sm.Get(r.Context(), q.org, q.path)
	if err != nil {
		q.refuse("read", err)
		return
	}
	q.audit("read", q.path, http.StatusOK, "")
	writeJSON(w, http.StatusOK, SecretBody{Key: s.Key, Value: s.Value})
}

// putSecret serves PUT (create or replace) and POST (create only): 201, as anax.
func (a *API) putSecret(w http.ResponseWriter, r *http.Request) {
	q, ok := a.secretRequest(w, r)
	if !ok || !q.allowed(access.Write) {
		return
	}
	var body SecretBody
	if err := readJSON(r, int64(a.cfg.MaxValue)+4096, &body); err != nil {
		q.refuse("write", err)
		return
	}
	if len(body.Value) > a.cfg.MaxValue {
		q.refuse("write", fmt.Errorf("%w: value is %d bytes, the limit is %d", errTooLarge, len(body.Value), a.cfg.MaxValue))
		return
	}
	if body.Key == "" {
		q.refuse("write", fmt.Errorf("%w: field key: must not be empty", errBadRequest))
		return
	}
	sec := secrets.Secret{Key: body.Key, Value: body.Value}
	var ver int64
	var err error
	if r.Method == http.MethodPost {
		ver, err = a.sm.Create(r.Context(), q.org, q.path, sec)
	} else {
		ver, err = a.sm.Put(r.Context(), q.org, q.path, sec)
	}
	if err != nil {
		q.refuse("write", err)
		return
	}
	q.audit("write", q.path, http.StatusCreated, fmt.Sprintf("version %d", ver))
	writeJSON(w, http.StatusCreated, map[string]any{"name": q.path, "version": ver})
}

// deleteSecret serves DELETE: 409 naming the agreements that would lose the secret with no
// fallback, unless force=true, which cancels them; 204 (anax) with the count in a header.
func (a *API) deleteSecret(w http.ResponseWriter, r *http.Request) {
	q, ok := a.secretRequest(w, r)
	if !ok || !q.allowed(access.Delete) {
		return
	}
	ctx := r.Context()
	force := r.URL.Query().Get("force") == "true"
	uses, err := a.eng.Users(ctx, q.org, q.path)
	if err != nil {
		q.refuse("delete", err)
		return
	}
	if len(uses) > 0 && !force {
		q.conflict(uses)
		return
	}
	if err := a.sm.Delete(ctx, q.org, q.path); err != nil {
		q.refuse("delete", err)
		return
	}
	if len(uses) > 0 {
		q.cancelUsers(uses)
	}
	q.audit("delete", q.path, http.StatusNoContent, fmt.Sprintf("force=%v cancelled=%d", force, len(uses)))
	w.Header().Set(CancelledHeader, strconv.Itoa(len(uses)))
	w.WriteHeader(http.StatusNoContent) // anax: 204, no body
}

// conflict answers 409 with the agreements a delete would leave with no value.
func (q *secretReq) conflict(uses []engine.Use) {
	body := Conflict{Code: http.StatusConflict, Users: make([]SecretUser, 0, len(uses))}
	var who []string
	for _, u := range uses {
		body.Users = append(body.Users, SecretUser(u))
		who = append(who, fmt.Sprintf("node %s (owner %s, %s, agreement %s)", u.Node, u.Owner, u.Source, u.Agreement))
	}
	body.Error = fmt.Sprintf("secret %q is used with no fallback by %d agreement(s): %s; delete with force=true to cancel them", q.path, len(uses), strings.Join(who, ", "))
	q.audit("delete", q.path, http.StatusConflict, body.Error)
	writeJSON(q.w, http.StatusConflict, body)
}

// cancelUsers ends the agreements a forced delete left with no value, and holds new ones for
// those nodes until the secret is back.
func (q *secretReq) cancelUsers(uses []engine.Use) {
	ids := make([]string, 0, len(uses))
	for _, u := range uses {
		ids = append(ids, u.Agreement)
	}
	if err := q.a.eng.CancelAgreements(ids, fmt.Sprintf("secret %q deleted with force", q.path)); err != nil {
		q.a.log.Error("cancel after forced delete", "secret", q.path, "err", err)
	}
	if err := q.a.eng.Reconcile(q.r.Context(), q.org); err != nil {
		q.a.log.Warn("reconcile after forced delete", "org", q.org, "err", err)
	}
}

func (a *API) nodeOwner(org, node string) string {
	n, err := a.st.Nodes.Get(org, node)
	if err != nil {
		return ""
	}
	return n.Owner
}

// CancelledHeader on a 204 answer to DELETE ?force=true counts the agreements cancelled.
const CancelledHeader = "X-Agreements-Cancelled"

// anaxMessage is the secure API's error body: a JSON string, worded as anax's where hzn
// scripts look for the words ("Permission denied", "No secret(s) found"), followed by this
// agbot's rule.
func anaxMessage(c access.Caller, op, org, name string, code int, err error) string {
	verb := map[string]string{"write": "create", "post": "create", "put": "create", "get": "read"}[op]
	if verb == "" {
		verb = op
	}
	switch code {
	case http.StatusForbidden:
		if name == "" {
			return fmt.Sprintf("Permission denied, user %q cannot %s secrets in organization %q: %v", c.Org+"/"+c.ID, verb, org, err)
		}
		return fmt.Sprintf("Permission denied, user %q cannot %s secret %q in organization %q: %v", c.Org+"/"+c.ID, verb, name, org, err)
	case http.StatusNotFound:
		return fmt.Sprintf("No secret(s) found under secret name %q", name)
	}
	return strings.TrimPrefix(err.Error(), errBadRequest.Error()+": ")
}

// anaxErrors makes every refusal on the secure secrets API a JSON string, as anax's agbot
// answers and its hzn expects, whoever wrote it (authentication, limits, the handler).
func anaxErrors(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ew := &errorWriter{ResponseWriter: w}
		h.ServeHTTP(ew, r)
		ew.flush()
	}
}

// errorWriter holds back the body of an answer of 400 or more to rewrite it.
type errorWriter struct {
	http.ResponseWriter
	code int
	buf  bytes.Buffer
}

func (e *errorWriter) WriteHeader(code int) {
	e.code = code
	if code < 400 {
		e.ResponseWriter.WriteHeader(code)
	}
}

func (e *errorWriter) Write(b []byte) (int, error) {
	if e.code == 0 {
		e.WriteHeader(http.StatusOK)
	}
	if e.code < 400 {
		return e.ResponseWriter.Write(b)
	}
	return e.buf.Write(b)
}

func (e *errorWriter) flush() {
	if e.code < 400 {
		return
	}
	msg := ErrorMessage(e.buf.Bytes())
	if e.code == http.StatusUnauthorized {
		msg = "Failed to authenticate the user with the Exchange. " + msg
	}
	w := e.ResponseWriter
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(e.code)
	_ = json.NewEncoder(w).Encode(msg)
}

// ErrorMessage reads a refusal of this agbot: a JSON string (the secure secrets API, as
// anax) or an Error object (the other routes).
func ErrorMessage(raw []byte) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var e Error
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return e.Error
	}
	return strings.TrimSpace(string(raw))
}

// allSecrets is anax's LIST /org/{org}/allsecrets: every name the caller may list in the
// org, across scopes. An org admin gets the org, node and every user's scopes; a user gets
// the org-level names and their own user/<me>/... names.
func (a *API) allSecrets(w http.ResponseWriter, r *http.Request) {
	c, org := callerOf(r), r.PathValue("org")
	fail := func(err error) {
		code := status(err)
		a.log.Info("audit", "op", "secret list", "org", org, "secret", "*", "caller", c.String(), "result", code, "why", err.Error())
		writeJSON(w, code, anaxMessage(c, "list", org, "", code, err))
	}
	if err := secrets.ValidateOrg(org); err != nil {
		fail(err)
		return
	}
	if err := access.Secret(c, access.List, access.Target{Org: org}, a.nodeOwner); err != nil {
		fail(err)
		return
	}
	scopes := []string{""}
	nodes, err := a.st.Nodes.List(org)
	if err != nil {
		fail(err)
		return
	}
	users := []string{c.ID}
	if c.Admin {
		users = nil
		all, err := a.st.Users.List(org)
		if err != nil {
			fail(err)
			return
		}
		for _, u := range all {
			users = append(users, u.Name)
		}
		for _, n := range nodes {
			scopes = append(scopes, "node/"+n.ID)
		}
	}
	for _, u := range users {
		scopes = append(scopes, "user/"+u)
		for _, n := range nodes {
			if n.Owner == u {
				scopes = append(scopes, "user/"+u+"/node/"+n.ID)
			}
		}
	}
	names := []string{}
	for _, s := range scopes {
		if _, err := secrets.ParseScope(s); err != nil {
			continue // a user or node id no secret name can hold
		}
		got, err := a.sm.List(r.Context(), org, s)
		if err != nil {
			fail(err)
			return
		}
		names = append(names, got...)
	}
	a.log.Info("audit", "op", "secret list", "org", org, "secret", "*", "caller", c.String(), "result", 200)
	writeJSON(w, 200, names)
}
