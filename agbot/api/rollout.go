package api

import (
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
	writeJSON(w, 200, ro)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
