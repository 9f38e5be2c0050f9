package ess

import (
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/edge-secrets/anax-agent/protocol"
)

func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{s.ca.cert}}
}

// quietLog sends the HTTP server's own complaints (TLS handshakes a client aborted, ...) to the
// debug level: they carry addresses, never a body.
func quietLog(l *slog.Logger) *log.Logger {
	return slog.NewLogLogger(l.Handler(), slog.LevelDebug)
}

const (
	listPath   = "/api/v1/secrets"
	secretPath = "/api/v1/secrets/{name...}"
)

// handler serves the API of the store whose socket a request arrived on; every request must
// carry that store's credentials.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+listPath, func(w http.ResponseWriter, r *http.Request) { s.handleList(w, instanceOf(r)) })
	mux.HandleFunc("GET "+secretPath, func(w http.ResponseWriter, r *http.Request) { s.handleGet(w, r, instanceOf(r)) })
	mux.HandleFunc("POST "+secretPath, func(w http.ResponseWriter, r *http.Request) { s.handleAck(w, r, instanceOf(r)) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<10)
		inst := instanceOf(r)
		if inst == nil || !inst.authorized(r) {
			s.count(opOf(r), strconv.Itoa(http.StatusUnauthorized))
			w.Header().Set("WWW-Authenticate", `Basic realm="ess"`)
			writeText(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorized checks basic auth against the store's credentials in constant time.
func (inst *instance) authorized(r *http.Request) bool {
	id, token, ok := r.BasicAuth()
	if !ok {
		return false
	}
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(inst.creds.ID))
	tokOK := subtle.ConstantTimeCompare([]byte(token), []byte(inst.creds.Token))
	return idOK&tokOK == 1
}

func opOf(r *http.Request) string {
	switch {
	case r.URL.Path == listPath:
		return "list"
	case r.Method == http.MethodPost:
		return "ack"
	default:
		return "get"
	}
}

// handleList: the names updated and not yet acknowledged; 404 when there are none (anax).
func (s *Server) handleList(w http.ResponseWriter, inst *instance) {
	names := inst.list()
	if len(names) == 0 {
		s.count("list", strconv.Itoa(http.StatusNotFound))
		w.WriteHeader(http.StatusNotFound)
		return
	}
	s.count("list", strconv.Itoa(http.StatusOK))
	writeJSON(w, names)
}

// handleGet: the current key and value of a secret of this store.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, inst *instance) {
	name := r.PathValue("name")
	if err := protocol.ValidateSecretName(name); err != nil {
		s.count("get", strconv.Itoa(http.StatusBadRequest))
		writeText(w, http.StatusBadRequest, "Secret name not valid: "+err.Error())
		return
	}
	v, err := s.read(inst.id, name)
	switch {
	case errors.Is(err, ErrNotFound):
		s.count("get", strconv.Itoa(http.StatusNotFound))
		writeText(w, http.StatusNotFound, "Secret not found.")
		return
	case err != nil:
		s.log.Warn("ess: read a secret for a container", "store", inst.id, "secret", name, "err", err)
		s.count("get", strconv.Itoa(http.StatusInternalServerError))
		writeText(w, http.StatusInternalServerError, "Failed to find secret.")
		return
	}
	s.count("get", strconv.Itoa(http.StatusOK))
	writeJSON(w, struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}{v.Key, v.Value})
}

// handleAck: POST /api/v1/secrets/{name}?received=true marks an update received (201).
func (s *Server) handleAck(w http.ResponseWriter, r *http.Request, inst *instance) {
	name := r.PathValue("name")
	if err := protocol.ValidateSecretName(name); err != nil {
		s.count("ack", strconv.Itoa(http.StatusBadRequest))
		writeText(w, http.StatusBadRequest, "Secret name not valid: "+err.Error())
		return
	}
	if received, err := strconv.ParseBool(r.URL.Query().Get("received")); err != nil || !received {
		s.count("ack", strconv.Itoa(http.StatusBadRequest))
		writeText(w, http.StatusBadRequest, "received=true is required")
		return
	}
	found, err := inst.ack(name)
	switch {
	case err != nil:
		s.log.Warn("ess: record an acknowledgement", "store", inst.id, "secret", name, "err", err)
		s.count("ack", strconv.Itoa(http.StatusInternalServerError))
		writeText(w, http.StatusInternalServerError, "Failed to mark secret received.")
	case !found:
		s.count("ack", strconv.Itoa(http.StatusNotFound))
		w.WriteHeader(http.StatusNotFound)
	default:
		s.count("ack", strconv.Itoa(http.StatusCreated))
		w.WriteHeader(http.StatusCreated)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeText(w, http.StatusInternalServerError, "Failed to marshal the response.")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// writeText answers with a plain-text line, as anax's returnErrorResponse does.
func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}
