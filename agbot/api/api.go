package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Config wires the API.
type Config struct {
	Store    *store.Store
	Secrets  secrets.Manager
	Engine   *engine.Engine
	Log      *slog.Logger
	Hash     access.HashParams // for new passwords and tokens
	MaxValue int               // bytes of one secret value; default protocol.DefaultMaxValue
}

// API serves HTTP.
type API struct {
	cfg Config
	st  *store.Store
	sm  secrets.Manager
	eng *engine.Engine
	log *slog.Logger
	ver *access.Verifier
	mux *http.ServeMux
}

// New builds the handler.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = protocol.DefaultMaxValue
	}
	if cfg.Hash.Time == 0 {
		cfg.Hash = access.DefaultParams
	}
	a := &API{cfg: cfg, st: cfg.Store, sm: cfg.Secrets, eng: cfg.Engine, log: cfg.Log, ver: access.NewVerifier(), mux: http.NewServeMux()}
	a.routes()
	return a
}

// ServeHTTP implements http.Handler.
// Secret names with empty, "." or ".." segments are refused here with the rule: the mux
// would otherwise clean the path and redirect to another name.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, rest, ok := strings.Cut(r.URL.Path, "/secrets/"); ok && strings.HasPrefix(r.URL.Path, "/org/") {
		for _, seg := range strings.Split(rest, "/") {
			if seg == "" || seg == "." || seg == ".." {
				a.log.Info("audit", "op", "secret "+strings.ToLower(r.Method), "secret", rest, "caller", "-", "result", 400)
				writeJSON(w, http.StatusBadRequest, fmt.Sprintf("secret manager name %q: must not have empty, '.' or '..' segments", rest))
				return
			}
		}
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) routes() {
	m := a.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	m.HandleFunc("GET /agbot", a.agbotInfo)
	// The Exchange's version and status, under /v1 as anax's hzn asks HZN_EXCHANGE_URL.
	m.HandleFunc("GET /v1/admin/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, ExchangeVersion)
	})
	m.HandleFunc("GET /v1/admin/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"msg": "Exchange server operating normally", "dbSchemaVersion": 0})
	})

	// Secure secrets API (anax routes).
	// Refusals are JSON strings there, as anax's (anaxErrors).
	for _, method := range []string{"GET", "LIST", "PUT", "POST", "DELETE"} {
		m.HandleFunc(method+" /org/{org}/secrets", anaxErrors(a.auth(a.secrets)))
		m.HandleFunc(method+" /org/{org}/secrets/{name...}", anaxErrors(a.auth(a.secrets)))
	}
	m.HandleFunc("LIST /org/{org}/allsecrets", anaxErrors(a.auth(a.allSecrets)))

	// Exchange.
	m.HandleFunc("GET /org/{org}/users", a.auth(a.listUsers))
	m.HandleFunc("GET /org/{org}/users/{user}", a.auth(a.getUser))
	m.HandleFunc("POST /org/{org}/users/{user}", a.auth(a.putUser))
	m.HandleFunc("PUT /org/{org}/users/{user}", a.auth(a.putUser))
	m.HandleFunc("DELETE /org/{org}/users/{user}", a.auth(a.deleteUser))

	m.HandleFunc("GET /org/{org}/nodes", a.auth(a.listNodes))
	m.HandleFunc("GET /org/{org}/nodes/{node}", a.auth(a.getNode))
	m.HandleFunc("PUT /org/{org}/nodes/{node}", a.auth(a.putNode))
	m.HandleFunc("DELETE /org/{org}/nodes/{node}", a.auth(a.deleteNode))
	m.HandleFunc("GET /org/{org}/nodes/{node}/agreements", a.auth(a.nodeAgreements))
	m.HandleFunc("PUT /org/{org}/nodes/{node}/registration", a.auth(a.register))
	m.HandleFunc("GET /org/{org}/nodes/{node}/msgs", a.auth(a.poll))
	m.HandleFunc("POST /org/{org}/nodes/{node}/msgs", a.auth(a.reply))

	m.HandleFunc("GET /org/{org}/services", a.auth(a.listServices))
	m.HandleFunc("POST /org/{org}/services", a.auth(a.putService))
	m.HandleFunc("GET /org/{org}/services/{id}", a.auth(a.getService))
	m.HandleFunc("PUT /org/{org}/services/{id}", a.auth(a.putService))
	m.HandleFunc("DELETE /org/{org}/services/{id}", a.auth(a.deleteService))

	m.HandleFunc("GET /org/{org}/business/policies", a.auth(listOrg(a, a.st.Policies, func(p exchange.Policy) string { return p.Name })))
	m.HandleFunc("GET /org/{org}/business/policies/{name}", a.auth(getOrg(a, a.st.Policies)))
	m.HandleFunc("POST /org/{org}/business/policies/{name}", a.auth(a.putPolicy))
	m.HandleFunc("PUT /org/{org}/business/policies/{name}", a.auth(a.putPolicy))
	m.HandleFunc("DELETE /org/{org}/business/policies/{name}", a.auth(deleteOwned(a, "policy", a.st.Policies, func(p exchange.Policy) string { return p.Owner },
		func(ctx context.Context, org string) {
			if err := a.eng.Reconcile(ctx, org); err != nil {
				a.log.Warn("reconcile after policy delete", "err", err)
			}
		})))

	m.HandleFunc("GET /org/{org}/patterns", a.auth(listOrg(a, a.st.Patterns, func(p exchange.Pattern) string { return p.Name })))
	m.HandleFunc("GET /org/{org}/patterns/{name}", a.auth(getOrg(a, a.st.Patterns)))
	m.HandleFunc("POST /org/{org}/patterns/{name}", a.auth(a.putPattern))
	m.HandleFunc("PUT /org/{org}/patterns/{name}", a.auth(a.putPattern))
	m.HandleFunc("DELETE /org/{org}/patterns/{name}", a.auth(deleteOwned(a, "pattern", a.st.Patterns, func(p exchange.Pattern) string { return p.Owner },
		// A pattern may serve nodes of other orgs: re-match them all.
		func(ctx context.Context, _ string) { a.eng.ReconcileAll(ctx) })))

	m.HandleFunc("GET /org/{org}/agreements", a.auth(a.listAgreements))
	a.v1Routes()
}

// ExchangeVersion is the Open Horizon Exchange version this agbot answers at
// /v1/admin/version: the one anax's hzn prefers, so that its version checks pass for the
// routes served here.
const ExchangeVersion = "2.126.1"

// Error is the body of every refusal.
type Error struct {
	Code  int    `json:"code"`
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, format string, args ...any) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="agbot"`)
	}
	writeJSON(w, code, Error{Code: code, Error: fmt.Sprintf(format, args...)})
}

// status maps the sentinels of every agbot package to an HTTP code.
func status(err error) int {
	switch {
	case errors.Is(err, access.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, access.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, secrets.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, engine.ErrUnknown):
		return http.StatusNotFound
	case errors.Is(err, secrets.ErrExists), errors.Is(err, store.ErrExists):
		return http.StatusConflict
	case errors.Is(err, secrets.ErrInvalidName), errors.Is(err, secrets.ErrInvalidSecret), errors.Is(err, protocol.ErrInvalid),
		errors.Is(err, protocol.ErrMalformed), errors.Is(err, errBadRequest), errors.Is(err, engine.ErrBadMessage):
		return http.StatusBadRequest
	case errors.Is(err, errTooLarge), errors.Is(err, protocol.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, secrets.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (a *API) fail(w http.ResponseWriter, err error) {
	code := status(err)
	if code == http.StatusInternalServerError {
		a.log.Error("internal error", "err", err)
	}
	writeErr(w, code, "%s", err.Error())
}

var (
	errBadRequest = errors.New("bad request")
	errTooLarge   = errors.New("request body too large")
)

// readJSON decodes a request body strictly (unknown fields refused), at most max bytes.
func readJSON(r *http.Request, max int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", errBadRequest, err)
	}
	if int64(len(body)) > max {
		return fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD: the value stored would not be
	// the one sent.
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8", errBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body is not the expected JSON: %s", errBadRequest, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: body holds more than one JSON value", errBadRequest)
	}
	return nil
}

// jsonProblem describes a decode error without echoing input (which may be a secret).
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return err.Error()
	case errors.Is(err, io.EOF):
		return "empty body"
	}
	return "wrong shape"
}

func now() string { return time.Now().UTC().Format(time.RFC3339) }

type ctxKey struct{}

func callerOf(r *http.Request) access.Caller { return r.Context().Value(ctxKey{}).(access.Caller) }

// auth authenticates Basic `org/id:password`: a user first, then a node of that org.
func (a *API) auth(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := a.authenticate(r)
		if err != nil {
			a.log.Info("audit", "op", r.Method+" "+r.URL.Path, "caller", "?", "result", 401)
			writeErr(w, http.StatusUnauthorized, "%s", err.Error())
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	}
}

func (a *API) authenticate(r *http.Request) (access.Caller, error) {
	u, pw, ok := r.BasicAuth()
	if !ok {
		return access.Caller{}, fmt.Errorf("%w: Basic auth org/user:password (or org/node:token) required", access.ErrUnauthenticated)
	}
	org, id, ok := strings.Cut(u, "/")
	if !ok || org == "" || id == "" {
		return access.Caller{}, fmt.Errorf("%w: the Basic auth user must be org/user or org/node", access.ErrUnauthenticated)
	}
	if user, err := a.st.Users.Get(org, id); err == nil && a.ver.Check("user\x00"+org+"/"+id, user.PasswordHash, pw) {
		return access.Caller{Org: org, ID: id, Admin: user.Admin}, nil
	}
	if node, err := a.st.Nodes.Get(org, id); err == nil && a.ver.Check("node\x00"+org+"/"+id, node.TokenHash, pw) {
		return access.Caller{Org: org, ID: id, Node: true}, nil
	}
	return access.Caller{}, fmt.Errorf("%w: wrong credentials for %q", access.ErrUnauthenticated, u)
}

// sameOrgUser refuses nodes and callers of another org (403).
func sameOrgUser(c access.Caller, org string) error {
	if c.Node {
		return fmt.Errorf("%w: node credentials (%s/%s) can not use this route", access.ErrForbidden, c.Org, c.ID)
	}
	if c.Org != org {
		return fmt.Errorf("%w: %s can not act in org %q", access.ErrForbidden, c, org)
	}
	return nil
}

func adminOf(c access.Caller, org string) error {
	if err := sameOrgUser(c, org); err != nil {
		return err
	}
	if !c.Admin {
		return fmt.Errorf("%w: %s is not an admin of org %q", access.ErrForbidden, c, org)
	}
	return nil
}

// validSegment checks a user, node, policy or pattern name from a path.
func validSegment(field, v string) error {
	if err := protocol.ValidateID(field, v); err != nil {
		return err
	}
	if strings.ContainsAny(v, "/:") {
		return &protocol.ValidationError{Field: field, Rule: "must not contain '/' or ':'"}
	}
	return nil
}

func (a *API) agbotInfo(w http.ResponseWriter, r *http.Request) {
	pub := a.eng.PublicKeys()
	writeJSON(w, 200, AgbotInfo{ID: a.eng.ID(), PublicKeys: pub, Fingerprint: pub.Fingerprint()})
}

// AgbotInfo is GET /agbot and the registration response.
type AgbotInfo struct {
	ID          string               `json:"agbotId"`
	PublicKeys  *protocol.PublicKeys `json:"publicKeys"`
	Fingerprint string               `json:"fingerprint"`
}
