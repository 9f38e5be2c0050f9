package api

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// rolloutOf authorises and builds a secret's rollout: the caller must be allowed to read the
// secret (its owner; org admins for org and node secrets), but the value is never read.
func (a *API) rolloutOf(r *http.Request) (engine.Rollout, error) {
	c := callerOf(r)
	org, path, node := r.PathValue("org"), r.PathValue("name"), r.URL.Query().Get("node")
	if err := secrets.ValidateOrg(org); err != nil {
		return engine.Rollout{}, err
	}
	n, err := secrets.ParseName(path)
	if err != nil {
		return engine.Rollout{}, err
	}
	if node != "" {
		if err := validSegment("node", node); err != nil {
			return engine.Rollout{}, err
		}
	}
	t := access.Target{Org: org, User: n.User, Node: n.Node, Name: n.Secret}
	if err := access.Secret(c, access.Read, t, a.nodeOwner); err != nil {
		return engine.Rollout{}, err
	}
	return a.eng.Rollout(org, path, node), nil
}

// rollout is GET /org/{org}/rollouts/{name...}[?node=N]: which agreements hold which
// version of the secret (engine.Rollout).
func (a *API) rollout(w http.ResponseWriter, r *http.Request) {
	ro, err := a.rolloutOf(r)
	code := 200
	if err != nil {
		code = status(err)
	}
	a.log.Info("audit", "op", "secret status", "org", r.PathValue("org"), "secret", r.PathValue("name"),
		"caller", callerOf(r).String(), "result", code, "why", errText(err))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeRollout(w, ro)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// nodesField is how the rollout's node list starts in its JSON: Rollout's field order puts it
// after the versions and before the total.
var nodesField = []byte(`"nodes":[`)

// writeRollout writes ro as writeJSON(w, 200, ro) does, byte for byte, but a node at a time.
// A fleet's rollout lists every agreement (some 250 bytes each, 2.5 MB at 10,000), and
// encoding/json keeps the buffer of the largest value it encoded in its pool past the next
// collection, which an idle agbot does not run soon: after the fan-outs at 10,000 nodes it
// held 8 MB of it. Each node is encoded on its own, the rest once with an empty list.
func writeRollout(w http.ResponseWriter, ro engine.Rollout) {
	nodes := ro.Nodes
	if nodes == nil { // null, as writeJSON writes it
		writeJSON(w, 200, ro)
		return
	}
	ro.Nodes = []engine.RolloutNode{}
	frame, err := json.Marshal(ro)
	at := bytes.LastIndex(frame, nodesField)
	if err != nil || at < 0 {
		ro.Nodes = nodes
		writeJSON(w, 200, ro)
		return
	}
	at += len(nodesField)
	maps.Copy(w.Header(), jsonHeader())
	w.WriteHeader(200)
	if _, err := w.Write(frame[:at]); err != nil {
		return // the client is gone
	}
	for i := range nodes {
		b, err := json.Marshal(&nodes[i])
		if err != nil {
			return // a RolloutNode always encodes; were it not, the answer ends short
		}
		if i > 0 {
			w.Write([]byte{','}) // an error here comes back from the next write
		}
		if _, err := w.Write(b); err != nil {
			return
		}
	}
	w.Write(append(frame[at:], '\n'))
}
