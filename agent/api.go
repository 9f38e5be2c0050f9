package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	linuxp "github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// The local API, served on --api-socket (mode 0600, root only) for hzn. Answers are JSON;
// errors are {"error": "..."} with a status code. Nothing it returns holds a secret value or
// the node token.
//
//	GET    /status           Status
//	GET    /node             NodeInfo (404 when not registered)
//	POST   /node             RegisterRequest -> 201 NodeInfo
//	DELETE /node             -> 200 UnregisterResult
//	GET    /agreement        [agreement.Info]
//	GET    /agreement/{id}   agreement.Info

// Status is GET /status (`hzn agent status`).
type Status struct {
	Version    string          `json:"version"`
	AgentID    string          `json:"agentId"`
	StartedAt  time.Time       `json:"startedAt"`
	Registered bool            `json:"registered"`
	Node       string          `json:"node,omitempty"`
	Agbot      *LinkInfo       `json:"agbot,omitempty"`
	Secretfs   SecretfsStatus  `json:"secretfs"`
	Agreements AgreementCounts `json:"agreements"`
	// LastUpdate is when a secret or container change was last applied on the node.
	LastUpdate *time.Time `json:"lastUpdate,omitempty"`
	// CoreDumps is false when the agent turned core dumps off (PR_SET_DUMPABLE 0).
	CoreDumps  bool   `json:"coreDumps"`
	LogLevel   string `json:"logLevel"`
	PollWait   string `json:"pollWait"`
	BackoffMax string `json:"backoffMax"`
}

// LinkInfo is the agbot as the node sees it.
type LinkInfo struct {
	URL         string `json:"url"`
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
	linkStatus
}

// SecretfsStatus is how secrets reach containers on this node.
type SecretfsStatus struct {
	Root     string        `json:"root"`
	Mode     secretfs.Mode `json:"mode"`
	Features Features      `json:"features"`
	Stores   int           `json:"stores"`
	// MountDepth is the deepest mount stack at any publish point (2 in mount-swap mode).
	MountDepth int `json:"mountDepth"`
}

// Features are the kernel features and privileges secretfs found at start-up.
type Features struct {
	Kernel            string `json:"kernel"`
	NewMountAPI       bool   `json:"newMountApi"`
	MoveMountBeneath  bool   `json:"moveMountBeneath"`
	MoveMountSetGroup bool   `json:"moveMountSetGroup"`
	TmpfsNoswap       bool   `json:"tmpfsNoswap"`
	MountPrivilege    bool   `json:"mountPrivilege"`
	SharedRoot        bool   `json:"sharedRoot"`
}

// AgreementCounts counts agreements by phase.
type AgreementCounts struct {
	Total   int                     `json:"total"`
	ByPhase map[agreement.Phase]int `json:"byPhase"`
}

// Status describes the agent.
func (a *Agent) Status() Status {
	a.mu.Lock()
	reg, link, last := a.reg, a.link, a.last
	deepest := 0
	for _, d := range a.depth {
		deepest = max(deepest, d)
	}
	a.mu.Unlock()
	st := Status{Version: Version, AgentID: a.agentID, StartedAt: a.started.UTC(), Registered: reg != nil,
		LogLevel: a.level.Level().String(), PollWait: time.Duration(a.pollWait.Load()).String(),
		BackoffMax: time.Duration(a.backoffMax.Load()).String()}
	if reg != nil {
		st.Node = reg.ID()
		st.Agbot = &LinkInfo{URL: reg.AgbotURL, ID: reg.AgbotID, Fingerprint: reg.AgbotFingerprint, linkStatus: link}
	}
	if !last.IsZero() {
		t := last.UTC()
		st.LastUpdate = &t
	}
	f := a.fs.Features()
	st.Secretfs = SecretfsStatus{Root: a.cfg.SecretsRoot, Mode: a.fs.Mode(), MountDepth: deepest, Features: Features{
		Kernel: f.Kernel, NewMountAPI: f.NewMountAPI, MoveMountBeneath: f.MoveMountBeneath, MoveMountSetGroup: f.MoveMountSetGroup,
		TmpfsNoswap: f.TmpfsNoswap, MountPrivilege: f.MountPrivilege, SharedRoot: f.SharedRoot}}
	if stores, err := a.fs.Stores(); err == nil {
		st.Secretfs.Stores = len(stores)
	}
	st.Agreements.ByPhase = map[agreement.Phase]int{}
	if list, err := a.mgr.Agreements(); err == nil {
		st.Agreements.Total = len(list)
		for _, in := range list {
			st.Agreements.ByPhase[in.Phase]++
			if st.LastUpdate == nil || in.UpdatedAt.After(*st.LastUpdate) {
				t := in.UpdatedAt.UTC()
				st.LastUpdate = &t
			}
		}
	}
	if d, err := linuxp.Dumpable(); err == nil {
		st.CoreDumps = d
	}
	return st
}

// statusLine is the one line systemd shows.
func (a *Agent) statusLine() string {
	n := -1
	if list, err := a.mgr.Agreements(); err == nil {
		n = len(list)
	}
	return a.statusLineN(n)
}

// statusLineN is statusLine for a node holding n agreements.
func (a *Agent) statusLineN(n int) string {
	reg := a.registration()
	if reg == nil {
		return "not registered; waiting for hzn register"
	}
	link := "agbot connected"
	if !a.linkState().Connected {
		link = "agbot not reachable"
	}
	return fmt.Sprintf("node %s: %d agreements, %s, secretfs %s", reg.ID(), n, link, a.fs.Mode())
}

func (a *Agent) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, a.Status()) })
	mux.HandleFunc("GET /node", func(w http.ResponseWriter, r *http.Request) {
		reg := a.registration()
		if reg == nil {
			writeError(w, ErrNotRegistered)
			return
		}
		writeJSON(w, 200, reg.Info())
	})
	mux.HandleFunc("GET /node/policy", func(w http.ResponseWriter, r *http.Request) {
		reg := a.registration()
		if reg == nil {
			writeError(w, ErrNotRegistered)
			return
		}
		writeJSON(w, 200, reg.Policy.withBuiltins(reg.Arch, a.facts))
	})
	mux.HandleFunc("GET /node/userinput", func(w http.ResponseWriter, r *http.Request) {
		reg := a.registration()
		if reg == nil {
			writeError(w, ErrNotRegistered)
			return
		}
		in := reg.UserInput
		if in == nil {
			in = []protocol.InputBlock{}
		}
		writeJSON(w, 200, in)
	})
	mux.HandleFunc("POST /node", func(w http.ResponseWriter, r *http.Request) {
		var req RegisterRequest
		if err := readJSON(r, &req); err != nil {
			writeError(w, err)
			return
		}
		info, err := a.Register(r.Context(), req)
		if err != nil {
			a.log.Warn("registration refused", "node", req.Node, "err", err)
			writeError(w, err)
			return
		}
		writeJSON(w, 201, info)
	})
	mux.HandleFunc("DELETE /node", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.Unregister(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, 200, res)
	})
	mux.HandleFunc("GET /agreement", func(w http.ResponseWriter, r *http.Request) {
		list, err := a.mgr.Agreements()
		if err != nil {
			writeError(w, err)
			return
		}
		if list == nil {
			list = []agreement.Info{}
		}
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		writeJSON(w, 200, list)
	})
	mux.HandleFunc("GET /agreement/{id}", func(w http.ResponseWriter, r *http.Request) {
		in, err := a.mgr.Agreement(r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, 200, in)
	})
	mux.HandleFunc("GET /service/log", a.serviceLog)
	return requirePeer(mux)
}

// serviceLog streams the output of a running service's container (hzn service log [-f]):
// ?service=[ORG/]URL, &container=NAME when it has several, &follow=true to keep streaming.
// It is the service's own output; the agent only relays it.
func (a *Agent) serviceLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	org, url, ok := strings.Cut(q.Get("service"), "/")
	if !ok {
		org, url = "", q.Get("service")
	}
	if url == "" {
		writeError(w, fmt.Errorf("%w: service: required, [ORG/]URL", ErrInvalidRequest))
		return
	}
	list, err := a.mgr.Agreements()
	if err != nil {
		writeError(w, err)
		return
	}
	id := ""
	for _, in := range list {
		if in.Service.URL != url || (org != "" && in.Service.Org != org) {
			continue
		}
		for _, c := range in.Containers {
			if name := q.Get("container"); (name == "" || c.Name == name) && c.ContainerID != "" {
				id = c.ContainerID
			}
		}
	}
	if id == "" {
		writeError(w, fmt.Errorf("%w: service %s: no running container of it on this node", agreement.ErrNotFound, q.Get("service")))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w, rc: http.NewResponseController(w)}
	if err := a.worker.Logs(r.Context(), id, q.Get("follow") == "true", fw); err != nil {
		a.log.Warn("service log", "container", id, "err", err)
	}
}

// flushWriter sends each write to the client at once (a followed log).
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// readJSON decodes a request body strictly (unknown fields refused, 1 MiB at most).
func readJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return fmt.Errorf("%w: body: %v", ErrInvalidRequest, err)
	}
	if len(b) > 1<<20 {
		return fmt.Errorf("%w: body: larger than 1 MiB", ErrInvalidRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrInvalidRequest, err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError turns an error into its HTTP code at the edge.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalidRequest), errors.Is(err, ErrConfig):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotRegistered), errors.Is(err, agreement.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrRegistered):
		code = http.StatusConflict
	case errors.Is(err, ErrAgbotKey), errors.Is(err, ErrAgbot):
		code = http.StatusBadGateway
	case errors.Is(err, agreement.ErrClosed):
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// listenUnix listens on the API socket, mode 0600. A stale socket (no one answers) is
// replaced; a live one means another agent uses this path, which is refused.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("api socket %s: another agent is serving it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api socket: remove stale %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
	}
	return ln, nil
}

// trimErr shortens an error for a status line.
func trimErr(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
