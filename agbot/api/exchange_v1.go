package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The Open Horizon Exchange's REST API for users and nodes, under /v1 (what anax's hzn calls
// at HZN_EXCHANGE_URL=https://HOST:PORT/v1): the same handlers, rights and audit as the
// /org/{org}/... routes, with the Exchange's paths, bodies, answers and codes.

// v1Routes adds the Exchange routes.
func (a *API) v1Routes() {
	m := a.mux
	m.HandleFunc("GET /v1/orgs/{org}/users", v1(a.auth(a.listUsers), v1List("users")))
	m.HandleFunc("GET /v1/orgs/{org}/users/{user}", v1(a.auth(a.getUser), v1One("users", "user")))
	m.HandleFunc("POST /v1/orgs/{org}/users/{user}", v1Body(v1(a.auth(a.putUser), v1Created("user", "user")), userFromExchange))
	m.HandleFunc("DELETE /v1/orgs/{org}/users/{user}", v1(a.auth(a.deleteUser), v1Deleted))
	m.HandleFunc("GET /v1/orgs/{org}/nodes", v1(a.auth(a.listNodes), v1List("nodes")))
	m.HandleFunc("GET /v1/orgs/{org}/nodes/{node}", v1(a.auth(a.getNode), v1One("nodes", "node")))
	m.HandleFunc("PUT /v1/orgs/{org}/nodes/{node}", v1Body(v1(a.auth(a.putNode), v1Created("node", "node")), nodeFromExchange))
	m.HandleFunc("DELETE /v1/orgs/{org}/nodes/{node}", v1(a.auth(a.deleteNode), v1Deleted))
}

// ExchangeError is the Exchange's refusal body.
type ExchangeError struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

// exchangeCode is the Exchange's word for an HTTP refusal.
func exchangeCode(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "invalid_credentials"
	case http.StatusForbidden:
		return "access_denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "already_exists"
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "invalid_input"
	}
	return "internal_error"
}

// v1Shape turns the inner handler's successful answer into the Exchange's.
type v1Shape func(w http.ResponseWriter, r *http.Request, code int, body []byte)

// v1 runs h with a recording writer and answers in the Exchange's shapes: refusals as
// ExchangeError, successes through shape.
func v1(h http.HandlerFunc, shape v1Shape) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{header: http.Header{}}
		h(rec, r)
		if v := rec.header.Get("WWW-Authenticate"); v != "" {
			w.Header().Set("WWW-Authenticate", v)
		}
		if rec.code >= 400 {
			writeJSON(w, rec.code, ExchangeError{Code: exchangeCode(rec.code), Msg: ErrorMessage(rec.body.Bytes())})
			return
		}
		shape(w, r, rec.code, rec.body.Bytes())
	}
}

// recorder keeps an inner answer (small JSON) to reshape it.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

// v1List answers {"<what>": {"org/id": record}, "lastIndex": 0} from a map keyed by id.
func v1List(what string) v1Shape {
	return func(w http.ResponseWriter, r *http.Request, code int, body []byte) {
		var in map[string]json.RawMessage
		if err := json.Unmarshal(body, &in); err != nil {
			writeJSON(w, 500, ExchangeError{Code: "internal_error", Msg: "listing " + what})
			return
		}
		org := r.PathValue("org")
		out := make(map[string]json.RawMessage, len(in))
		for k, v := range in {
			if !strings.Contains(k, "/") {
				k = org + "/" + k
			}
			out[k] = v
		}
		writeJSON(w, 200, map[string]any{what: out, "lastIndex": 0})
	}
}

// v1One answers one record in the list shape, keyed org/id.
func v1One(what, key string) v1Shape {
	return func(w http.ResponseWriter, r *http.Request, code int, body []byte) {
		id := r.PathValue("org") + "/" + r.PathValue(key)
		writeJSON(w, 200, map[string]any{what: map[string]json.RawMessage{id: body}, "lastIndex": 0})
	}
}

// v1Created answers the Exchange's 201 {"code":"ok","msg":...}.
func v1Created(kind, key string) v1Shape {
	return func(w http.ResponseWriter, r *http.Request, code int, body []byte) {
		writeJSON(w, 201, ExchangeError{Code: "ok", Msg: fmt.Sprintf("%s '%s/%s' created or updated", kind, r.PathValue("org"), r.PathValue(key))})
	}
}

// v1Deleted answers the Exchange's 204.
func v1Deleted(w http.ResponseWriter, r *http.Request, code int, body []byte) {
	w.WriteHeader(http.StatusNoContent)
}

// v1Body rewrites an Exchange request body into the inner route's; a refusal is the
// Exchange's 400.
func v1Body(h http.HandlerFunc, conv func(map[string]any) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil || len(raw) > 64<<10 {
			writeJSON(w, 400, ExchangeError{Code: "invalid_input", Msg: "request body: unreadable or more than 64 KiB"})
			return
		}
		var in map[string]any
		if err := json.Unmarshal(raw, &in); err != nil {
			writeJSON(w, 400, ExchangeError{Code: "invalid_input", Msg: "request body: " + jsonProblem(err)})
			return
		}
		out, err := conv(in)
		if err != nil {
			writeJSON(w, 400, ExchangeError{Code: "invalid_input", Msg: err.Error()})
			return
		}
		b, _ := json.Marshal(out)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		h(w, r)
	}
}

// str reads an optional string field of an Exchange body.
func str(in map[string]any, k string) (string, error) {
	switch v := in[k].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", fmt.Errorf("field %s: must be a string", k)
}

// userFromExchange: {"password","admin","hubAdmin","email"}; hub admins are made by agbot init.
func userFromExchange(in map[string]any) (any, error) {
	if hub, _ := in["hubAdmin"].(bool); hub {
		return nil, fmt.Errorf("field hubAdmin: hub admins are made by 'agbot init', not through the API")
	}
	pw, err := str(in, "password")
	if err != nil {
		return nil, err
	}
	email, err := str(in, "email")
	if err != nil {
		return nil, err
	}
	admin, _ := in["admin"].(bool)
	return UserBody{Password: pw, Admin: admin, Email: email}, nil
}

// nodeFromExchange keeps the token, pattern and arch of an Exchange node body; the rest
// (name, nodeType, publicKey, ...) this agbot takes at registration or does not keep.
func nodeFromExchange(in map[string]any) (any, error) {
	var out NodeBody
	var err error
	if out.Token, err = str(in, "token"); err != nil {
		return nil, err
	}
	if out.Pattern, err = str(in, "pattern"); err != nil {
		return nil, err
	}
	if out.Arch, err = str(in, "arch"); err != nil {
		return nil, err
	}
	if t, _ := str(in, "nodeType"); t != "" && t != "device" {
		return nil, fmt.Errorf("field nodeType: %q: this agbot serves device nodes only", t)
	}
	return out, nil
}
