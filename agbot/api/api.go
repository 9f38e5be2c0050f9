package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/park"
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
	// Verifier bounds concurrent argon2id runs (zero: GOMAXPROCS slots, a queue of 32 each).
	Verifier access.VerifierConfig
	// AddressLimit and IdentityLimit throttle failed logins (zero: DefaultAddressLimit,
	// DefaultIdentityLimit).
	AddressLimit, IdentityLimit access.LimitPolicy
	// Lot, when set, parks long-polls with nothing to answer yet (package park): the server
	// must serve Lot's listener. Parked polls are answered (empty) when Context ends.
	Lot     *park.Lot
	Context context.Context
}

// API serves HTTP.
type API struct {
	cfg Config
	st  *store.Store
	sm  secrets.Manager
	eng *engine.Engine
	log *slog.Logger
	ver *access.Verifier
	grd *guard
	mux *http.ServeMux
	// epoch counts identity changes (users, nodes, keys): a connection's cached login holds
	// only while it is unchanged (connauth.go).
	epoch atomic.Uint64
}

// New builds the handler.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxValue <= 0 {
		cfg.MaxValue = protocol.DefaultMaxValue
	}
	if cfg.Context == nil {
		cfg.Context = context.Background()
	}
	if cfg.Hash.Time == 0 {
		cfg.Hash = access.DefaultParams
	}
	cfg.Verifier.Params = cfg.Hash
	a := &API{cfg: cfg, st: cfg.Store, sm: cfg.Secrets, eng: cfg.Engine, log: cfg.Log, ver: access.NewVerifier(cfg.Verifier),
		grd: newGuard(cfg.AddressLimit, cfg.IdentityLimit), mux: http.NewServeMux()}
	a.routes()
	return a
}

// ArgonRuns is how many argon2id verifications the API has run (a test and metrics hook).
func (a *API) ArgonRuns() uint64 { return a.ver.Runs() }

// Per-request deadlines. The server has no WriteTimeout (it would cut the node long-poll);
// each request gets requestTimeout to be answered, a long-poll its wait plus pollSlack.
const (
	requestTimeout = time.Minute
	pollSlack      = 30 * time.Second
)

// setDeadlines bounds how long reading the rest of the request and writing the answer may
// take, from now. Writers without deadlines (tests' recorders) are left as they are.
func setDeadlines(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	t := time.Now().Add(d)
	_ = rc.SetReadDeadline(t)
	_ = rc.SetWriteDeadline(t)
}

// ServeHTTP implements http.Handler.
// Secret names with empty, "." or ".." segments are refused here with the rule: the mux
// would otherwise clean the path and redirect to another name.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setDeadlines(w, requestTimeout)
	if rest, ok := secretPath(r.URL.Path); ok {
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

// secretPath returns the secret name of a path that names one (secrets, rollouts, pages).
func secretPath(p string) (string, bool) {
	p = strings.TrimPrefix(p, "/ui")
	if !strings.HasPrefix(p, "/org/") {
		return "", false
	}
	for _, sep := range []string{"/secrets/", "/rollouts/"} {
		if _, rest, ok := strings.Cut(p, sep); ok {
			return rest, true
		}
	}
	return "", false
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
	for method, h := range map[string]http.HandlerFunc{
		"LIST": a.listSecrets, http.MethodGet: a.getSecret, http.MethodPut: a.putSecret,
		http.MethodPost: a.putSecret, http.MethodDelete: a.deleteSecret,
	} {
		m.HandleFunc(method+" /org/{org}/secrets", anaxErrors(a.auth(h)))
		m.HandleFunc(method+" /org/{org}/secrets/{name...}", anaxErrors(a.auth(h)))
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
	m.HandleFunc("DELETE /org/{org}/nodes/{node}/registration", a.auth(a.releaseKeys))
	m.HandleFunc("GET /org/{org}/nodes/{node}/msgs", a.auth(a.poll))
	m.HandleFunc("POST /org/{org}/nodes/{node}/msgs", a.auth(a.reply))

	m.HandleFunc("GET /org/{org}/services", a.auth(listOrg(a, a.st.Services, func(s exchange.Service) string { return s.ID() })))
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
	m.HandleFunc("GET /org/{org}/rollouts/{name...}", a.auth(a.rollout))
	m.HandleFunc("GET /ui/org/{org}/rollouts/{name...}", a.auth(a.rolloutPage))
	m.HandleFunc("GET /ui/org/{org}/nodes", a.auth(a.nodesPage))
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

// jsonHeader is the header of every JSON answer.
func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	maps.Copy(w.Header(), jsonHeader())
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
	case errors.Is(err, secrets.ErrExists), errors.Is(err, store.ErrExists), errors.Is(err, engine.ErrNothingOutstanding):
		return http.StatusConflict
	case errors.Is(err, secrets.ErrInvalidName), errors.Is(err, secrets.ErrInvalidSecret), errors.Is(err, protocol.ErrInvalid),
		errors.Is(err, protocol.ErrMalformed), errors.Is(err, errBadRequest), errors.Is(err, engine.ErrBadMessage):
		return http.StatusBadRequest
	case errors.Is(err, errTooLarge), errors.Is(err, protocol.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errThrottled):
		return http.StatusTooManyRequests
	case errors.Is(err, secrets.ErrUnavailable), errors.Is(err, access.ErrBusy):
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
	errThrottled  = errors.New("too many failed logins")
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
	// An unknown field is named by its path (and a misspelt flag by its right name).
	if err := exchange.CheckFields(body, v); err != nil {
		return fmt.Errorf("%w: %w", errBadRequest, err)
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
// Refusals: 401 (wrong or missing credentials), 429 with Retry-After (too many failed logins
// for the identity or from the address), 503 with Retry-After (password checks saturated).
func (a *API) auth(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, retry, err := a.authenticate(r)
		if err != nil {
			code := status(err)
			if code == http.StatusInternalServerError {
				code = http.StatusUnauthorized
			}
			if retry > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
			}
			a.log.Info("audit", "op", r.Method+" "+r.URL.Path, "caller", "?", "result", code)
			writeErr(w, code, "%s", err.Error())
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	}
}

// authenticate checks the credentials, within the login throttles; retry is how long the
// caller should wait when the refusal is 429 or 503. Every attempt past the throttle costs
// one argon2id run or more, whether or not the identity exists, unless it presents exactly
// the credential that last logged that identity in.
func (a *API) authenticate(r *http.Request) (access.Caller, time.Duration, error) {
	u, pw, ok := r.BasicAuth()
	if !ok {
		return access.Caller{}, 0, fmt.Errorf("%w: Basic auth org/user:password (or org/node:token) required", access.ErrUnauthenticated)
	}
	org, id, ok := strings.Cut(u, "/")
	if !ok || org == "" || id == "" {
		return access.Caller{}, 0, fmt.Errorf("%w: the Basic auth user must be org/user or org/node", access.ErrUnauthenticated)
	}
	slot, digest, epoch, c, ok := a.cachedLogin(r, u, pw)
	if ok {
		return c, 0, nil
	}
	at, d, which := a.grd.begin(u, clientAddr(r))
	if d > 0 {
		return access.Caller{}, d, fmt.Errorf("%w %s: retry after %v", errThrottled, which, d.Round(time.Second))
	}
	c, err := a.check(r.Context(), org, id, pw)
	switch {
	case err == nil:
		at.succeeded()
		slot.remember(digest, c, epoch)
		return c, 0, nil
	case errors.Is(err, access.ErrUnauthenticated):
		if at.failed() {
			a.log.Warn("login throttled", "identity", u, "addr", at.addr)
		}
		return access.Caller{}, 0, fmt.Errorf("%w for %q", err, u)
	}
	at.abandoned()
	if errors.Is(err, access.ErrBusy) {
		return access.Caller{}, time.Second, err
	}
	return access.Caller{}, 0, err
}

// check verifies pw as user org/id, then as node org/id; an id that is neither is checked
// against a dummy hash, so it costs what a known one does.
func (a *API) check(ctx context.Context, org, id, pw string) (access.Caller, error) {
	tried := false
	if user, err := a.st.Users.Get(org, id); err == nil {
		tried = true
		if ok, err := a.ver.Check(ctx, "user\x00"+org+"/"+id, user.PasswordHash, pw); err != nil {
			return access.Caller{}, err
		} else if ok {
			return access.Caller{Org: org, ID: id, Admin: user.Admin}, nil
		}
	}
	if node, err := a.st.Nodes.Get(org, id); err == nil {
		tried = true
		if ok, err := a.ver.Check(ctx, "node\x00"+org+"/"+id, node.TokenHash, pw); err != nil {
			return access.Caller{}, err
		} else if ok {
			return access.Caller{Org: org, ID: id, Node: true}, nil
		}
	}
	if !tried {
		if _, err := a.ver.Check(ctx, "", "", pw); err != nil {
			return access.Caller{}, err
		}
	}
	return access.Caller{}, fmt.Errorf("%w: wrong credentials", access.ErrUnauthenticated)
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
type AgbotInfo = protocol.AgbotInfo
