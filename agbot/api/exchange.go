package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/park"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/protocol/constraint"
)

const maxDoc = 1 << 20 // service, policy and pattern files

// UserBody creates or changes a user.
type UserBody struct {
	Password string `json:"password"`
	Admin    bool   `json:"admin"`
	Email    string `json:"email,omitempty"`
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	if err := adminOf(callerOf(r), org); err != nil {
		a.fail(w, err)
		return
	}
	users, err := a.st.Users.List(org)
	if err != nil {
		a.fail(w, err)
		return
	}
	out := map[string]exchange.UserView{}
	for _, u := range users {
		out[u.Name] = u.View()
	}
	writeJSON(w, 200, out)
}

func (a *API) getUser(w http.ResponseWriter, r *http.Request) {
	org, name, c := r.PathValue("org"), r.PathValue("user"), callerOf(r)
	if err := sameOrgUser(c, org); err != nil {
		a.fail(w, err)
		return
	}
	if !c.Admin && c.ID != name {
		a.fail(w, fmt.Errorf("%w: %s may read only its own user", access.ErrForbidden, c))
		return
	}
	u, err := a.st.Users.Get(org, name)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, u.View())
}

func (a *API) putUser(w http.ResponseWriter, r *http.Request) {
	var body UserBody
	org, name, c, ok := a.writeRequest(w, r, "user", "user", 64<<10, &body)
	if !ok {
		return
	}
	if len(body.Password) < 1 {
		a.fail(w, fmt.Errorf("%w: field password: must not be empty", errBadRequest))
		return
	}
	old, err := a.st.Users.Get(org, name)
	exists := err == nil
	switch {
	case !c.Admin && !(exists && c.ID == name):
		a.fail(w, fmt.Errorf("%w: only an admin of org %q creates users", access.ErrForbidden, org))
		return
	case !c.Admin && body.Admin != old.Admin:
		a.fail(w, fmt.Errorf("%w: only an admin changes the admin flag", access.ErrForbidden))
		return
	case exists && r.Method == "POST":
		a.fail(w, fmt.Errorf("user %s/%s: %w", org, name, store.ErrExists))
		return
	}
	hash, err := access.Hash(body.Password, a.cfg.Hash)
	if err != nil {
		a.fail(w, err)
		return
	}
	u := exchange.User{Org: org, Name: name, Admin: body.Admin, PasswordHash: hash, LastUpdated: now()}
	err = a.st.Users.Put(org, name, u)
	a.identityChanged()
	if err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("audit", "op", "user "+r.Method, "org", org, "user", name, "admin", body.Admin, "caller", c.String(), "result", 201)
	if exists && old.Admin != body.Admin {
		a.rightsChanged(r.Context(), org)
	}
	writeJSON(w, 201, u.View())
}

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request) {
	org, name, c := r.PathValue("org"), r.PathValue("user"), callerOf(r)
	if err := adminOf(c, org); err != nil {
		a.fail(w, err)
		return
	}
	if err := a.st.Users.Delete(org, name); err != nil {
		a.fail(w, err)
		return
	}
	a.forget("user\x00" + org + "/" + name)
	a.rightsChanged(r.Context(), org)
	writeJSON(w, 200, map[string]any{"deleted": name})
}

// rightsChanged re-checks the org's agreements after a user lost or gained a right: the
// policies and patterns that user owns, and the nodes, deliver by their owner's rights now.
func (a *API) rightsChanged(ctx context.Context, org string) {
	if err := a.eng.Reconcile(ctx, org); err != nil {
		a.log.Warn("reconcile after a user change", "org", org, "err", err)
	}
}

// NodeBody creates a node (hzn exchange node create): its token and optionally pattern.
type NodeBody struct {
	Token   string `json:"token"`
	Pattern string `json:"pattern,omitempty"`
	Arch    string `json:"arch,omitempty"`
}

func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	_, nodes, ok := a.visibleNodes(w, r)
	if !ok {
		return
	}
	out := map[string]exchange.NodeView{}
	for _, n := range nodes {
		out[n.ID] = n.View()
	}
	writeJSON(w, 200, out)
}

// visibleNodes lists the nodes of the path's org the caller may see: an admin all, a user the
// ones they own. ok false: the refusal is answered.
func (a *API) visibleNodes(w http.ResponseWriter, r *http.Request) (string, []exchange.Node, bool) {
	org, c := r.PathValue("org"), callerOf(r)
	if err := sameOrgUser(c, org); err != nil {
		a.fail(w, err)
		return org, nil, false
	}
	nodes, err := a.st.Nodes.List(org)
	if err != nil {
		a.fail(w, err)
		return org, nil, false
	}
	out := nodes[:0]
	for _, n := range nodes {
		if c.Admin || n.Owner == c.ID {
			out = append(out, n)
		}
	}
	return org, out, true
}

// nodeAccess: the node itself, its owner or an org admin.
func nodeAccess(c access.Caller, org string, n exchange.Node) error {
	switch {
	case c.Org != org:
		return fmt.Errorf("%w: %s can not act in org %q", access.ErrForbidden, c, org)
	case c.Node && c.ID == n.ID, !c.Node && (c.Admin || c.ID == n.Owner):
		return nil
	}
	return fmt.Errorf("%w: node %q belongs to user %q, not %s", access.ErrForbidden, n.ID, n.Owner, c)
}

func (a *API) getNode(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	if c.Org != org {
		a.fail(w, fmt.Errorf("%w: %s can not act in org %q", access.ErrForbidden, c, org))
		return
	}
	n, err := a.st.Nodes.Get(org, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if err := nodeAccess(c, org, n); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, n.View())
}

func (a *API) putNode(w http.ResponseWriter, r *http.Request) {
	var body NodeBody
	org, id, c, ok := a.writeRequest(w, r, "node", "node", 64<<10, &body)
	if !ok {
		return
	}
	if body.Token == "" {
		a.fail(w, fmt.Errorf("%w: field token: must not be empty", errBadRequest))
		return
	}
	n, err := a.st.Nodes.Get(org, id)
	if err == nil {
		if err := nodeAccess(c, org, n); err != nil {
			a.fail(w, err)
			return
		}
	} else {
		n = exchange.Node{Org: org, ID: id, Owner: c.ID}
		if n.SecretsAtCreation, err = a.nodeSecretsNow(r.Context(), org, id); err != nil {
			a.fail(w, fmt.Errorf("node %s/%s not created: %w", org, id, err))
			return
		}
	}
	if n.TokenHash, err = access.Hash(body.Token, a.cfg.Hash); err != nil {
		a.fail(w, err)
		return
	}
	if body.Pattern != "" {
		n.Pattern = body.Pattern
	}
	if body.Arch != "" {
		n.Arch = body.Arch
	}
	n.LastUpdated = now()
	if err := a.st.Nodes.Put(org, id, n); err != nil {
		a.fail(w, err)
		return
	}
	a.forget("node\x00" + org + "/" + id)
	a.log.Info("audit", "op", "node put", "org", org, "node", id, "owner", n.Owner, "caller", c.String(), "result", 201)
	writeJSON(w, 201, n.View())
}

// nodeSecretsNow reads the versions of the org-level node-specific secrets (node/<id>/...)
// that exist before node id does: they were not written for it (access.Deliver).
func (a *API) nodeSecretsNow(ctx context.Context, org, id string) (map[string]int64, error) {
	names, err := a.sm.List(ctx, org, "node/"+id)
	if err != nil {
		return nil, err
	}
	var out map[string]int64
	for _, name := range names {
		_, ver, err := a.sm.Get(ctx, org, name)
		switch {
		case errors.Is(err, secrets.ErrNotFound):
			continue
		case err != nil:
			return nil, err
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[name] = ver
	}
	return out, nil
}

func (a *API) deleteNode(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	n, err := a.st.Nodes.Get(org, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if err := nodeAccess(c, org, n); err != nil || c.Node {
		if err == nil {
			err = fmt.Errorf("%w: a node can not delete itself", access.ErrForbidden)
		}
		a.fail(w, err)
		return
	}
	if err := a.st.Nodes.Delete(org, id); err != nil {
		a.fail(w, err)
		return
	}
	a.forget("node\x00" + org + "/" + id)
	if err := a.eng.NodeDeleted(org, id); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, map[string]any{"deleted": id})
}

func (a *API) nodeAgreements(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	n, err := a.st.Nodes.Get(org, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if err := nodeAccess(c, org, n); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, a.eng.Agreements(org, id))
}

func (a *API) listAgreements(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	if err := adminOf(callerOf(r), org); err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, a.eng.Agreements(org, ""))
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

// Messages is the long-poll response.
type Messages struct {
	Messages []Message `json:"messages"`
}

// Message is one sealed protocol message for the node.
type Message = protocol.PolledMessage

func (a *API) nodeOnly(r *http.Request) (string, string, error) {
	org, id, c := r.PathValue("org"), r.PathValue("node"), callerOf(r)
	if !c.Node || c.Org != org || c.ID != id {
		return "", "", fmt.Errorf("%w: only node %s/%s itself reads and answers its messages, with its token", access.ErrForbidden, org, id)
	}
	return org, id, nil
}

func (a *API) poll(w http.ResponseWriter, r *http.Request) {
	org, id, err := a.nodeOnly(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	q, err := parsePollQuery(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	a.answerPoll(w, r, org, id, q)
}

// pollQuery is a long-poll's wait and after (GET .../msgs, and a reply that is also the
// next poll).
type pollQuery struct {
	wait  time.Duration
	after uint64
	set   bool // wait or after was given
}

func parsePollQuery(r *http.Request) (pollQuery, error) {
	var p pollQuery
	q := r.URL.Query()
	if s := q.Get("wait"); s != "" {
		secs, err := strconv.Atoi(s)
		if err != nil || secs < 0 || secs > 60 {
			return p, fmt.Errorf("%w: wait: must be whole seconds from 0 to 60", errBadRequest)
		}
		p.wait, p.set = time.Duration(secs)*time.Second, true
	}
	if s := q.Get("after"); s != "" {
		after, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return p, fmt.Errorf("%w: after: must be a message id", errBadRequest)
		}
		p.after, p.set = after, true
	}
	return p, nil
}

// answerPoll answers with the node's messages past q.after, waiting up to q.wait for some.
func (a *API) answerPoll(w http.ResponseWriter, r *http.Request, org, id string, q pollQuery) {
	setDeadlines(w, q.wait+pollSlack) // the server-wide deadlines would end a long-poll
	if a.cfg.Lot != nil && q.wait > 0 && park.Parkable(r) {
		a.pollParked(w, r, org, id, q.after, q.wait)
		return
	}
	msgs, err := a.eng.Poll(r.Context(), org, id, q.after, q.wait)
	if err != nil && !errors.Is(err, context.Canceled) {
		a.fail(w, err)
		return
	}
	// ctx cancelled: the agbot is shutting down; an empty answer makes the node poll again.
	writeJSON(w, 200, messages(msgs))
}

// pollParked answers now when there is something to answer, else parks the connection until
// there is, the wait passes or the API stops (an empty answer then). A connection that can not
// be parked (a server that is not the Lot's, a writer without Hijack) waits in the handler.
func (a *API) pollParked(w http.ResponseWriter, r *http.Request, org, id string, after uint64, wait time.Duration) {
	spotc := make(chan *park.Spot, 1)
	unparked := make(chan []store.Message, 1)
	msgs, waiting := a.eng.PollFunc(a.cfg.Context, org, id, after, wait, func(msgs []store.Message, _ error) {
		spot := <-spotc
		if spot == nil {
			unparked <- msgs
			return
		}
		body, _ := json.Marshal(messages(msgs))
		if err := spot.Answer(200, jsonHeader(), append(body, '\n')); err != nil {
			a.log.Debug("long-poll answer not written", "org", org, "node", id, "err", err)
		}
	})
	if !waiting {
		writeJSON(w, 200, messages(msgs))
		return
	}
	spot, err := a.cfg.Lot.Park(w, r, connSlot(r))
	spotc <- spot // nil: the answer comes back here
	if err != nil {
		writeJSON(w, 200, messages(<-unparked))
	}
}

func messages(msgs []store.Message) Messages {
	out := Messages{Messages: make([]Message, 0, len(msgs))}
	for _, m := range msgs {
		out.Messages = append(out.Messages, Message{ID: m.ID, Agreement: m.Agreement, Type: m.Type, Seq: m.Seq, Envelope: m.Envelope})
	}
	return out
}

func (a *API) reply(w http.ResponseWriter, r *http.Request) {
	org, id, err := a.nodeOnly(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	q, err := parsePollQuery(r) // before the message: a bad query changes nothing
	if err != nil {
		a.fail(w, err)
		return
	}
	// Sized by what arrives (a signed reply is under 1 KiB), not by a fixed buffer: thousands
	// of replies wait for their group commit at once in a fan-out.
	body, err := io.ReadAll(io.LimitReader(r.Body, protocol.DefaultMaxEnvelope+1))
	if err != nil {
		a.fail(w, fmt.Errorf("%w: reading body: %v", errBadRequest, err))
		return
	}
	if len(body) > protocol.DefaultMaxEnvelope {
		a.fail(w, fmt.Errorf("%w: envelope over %d bytes", errTooLarge, protocol.DefaultMaxEnvelope))
		return
	}
	if err := a.eng.Receive(r.Context(), org, id, body); err != nil {
		lvl := a.log.Warn
		if errors.Is(err, engine.ErrNothingOutstanding) {
			lvl = a.log.Debug // a node answering a resend again: common, harmless
		}
		lvl("node message refused", "org", org, "node", id, "err", err)
		a.fail(w, err)
		return
	}
	if !q.set {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// The reply is also the node's next long-poll: one request per message instead of two.
	a.answerPoll(w, r, org, id, q)
}

// Published is the response to publishing a service, policy or pattern.
type Published struct {
	ID string `json:"id"`
	exchange.Report
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	if err := sameOrgUser(callerOf(r), org); err != nil {
		a.fail(w, err)
		return
	}
	s, err := a.st.Services.Get(org, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, 200, s)
}

func (a *API) putService(w http.ResponseWriter, r *http.Request) {
	org, c := r.PathValue("org"), callerOf(r)
	if err := sameOrgUser(c, org); err != nil {
		a.fail(w, err)
		return
	}
	var s exchange.Service
	if err := readJSON(r, maxDoc, &s); err != nil {
		a.fail(w, err)
		return
	}
	if s.Org == "" {
		s.Org = org
	}
	if s.Org != org {
		a.fail(w, fmt.Errorf("%w: field org: %q, but the route is for org %q", errBadRequest, s.Org, org))
		return
	}
	if err := exchange.ValidateService(s); err != nil {
		a.fail(w, err)
		return
	}
	if id := r.PathValue("id"); id != "" && id != s.ID() {
		a.fail(w, fmt.Errorf("%w: route id %q is not the service's url_version_arch %q", errBadRequest, id, s.ID()))
		return
	}
	if old, err := a.st.Services.Get(org, s.ID()); err == nil && !c.Admin && old.Owner != c.ID {
		a.fail(w, fmt.Errorf("%w: service %s belongs to %q", access.ErrForbidden, s.ID(), old.Owner))
		return
	}
	s.Owner, s.LastUpdated = c.ID, now()
	if err := a.st.Services.Put(org, s.ID(), s); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("audit", "op", "service publish", "org", org, "service", s.ID(), "caller", c.String(), "result", 201)
	a.eng.ReconcileAll(r.Context())
	writeJSON(w, 201, Published{ID: org + "/" + s.ID()})
}

func (a *API) deleteService(w http.ResponseWriter, r *http.Request) {
	org, id, c := r.PathValue("org"), r.PathValue("id"), callerOf(r)
	if err := sameOrgUser(c, org); err != nil {
		a.fail(w, err)
		return
	}
	s, err := a.st.Services.Get(org, id)
	if err != nil {
		a.fail(w, err)
		return
	}
	if !c.Admin && s.Owner != c.ID {
		a.fail(w, fmt.Errorf("%w: service %s belongs to %q", access.ErrForbidden, id, s.Owner))
		return
	}
	if err := a.st.Services.Delete(org, id); err != nil {
		a.fail(w, err)
		return
	}
	a.eng.ReconcileAll(r.Context())
	writeJSON(w, 200, map[string]any{"deleted": id})
}

// servicesFor lists the published services a policy or pattern of org from would deploy: a
// service of another org only if it is public (a private one is as if not published).
func (a *API) servicesFor(from, org, url string, arch string, versions []exchange.ServiceVersion) ([]exchange.Service, error) {
	all, err := a.st.Services.List(org)
	if err != nil {
		return nil, err
	}
	var out []exchange.Service
	for _, s := range all {
		if s.URL != url || !exchange.ArchMatches(arch, s.Arch) || !exchange.Usable(from, s.Org, s.Public) {
			continue
		}
		for _, v := range versions {
			if v.Version == s.Version {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func (a *API) putPolicy(w http.ResponseWriter, r *http.Request) {
	var p exchange.Policy
	org, name, c, ok := a.writeRequest(w, r, "policy", "name", maxDoc, &p)
	if !ok {
		return
	}
	if err := exchange.ValidatePolicy(p); err != nil {
		a.fail(w, err)
		return
	}
	if _, err := constraint.ParseAll(p.Constraints); err != nil {
		a.fail(w, &protocol.ValidationError{Field: "constraints", Rule: err.Error()})
		return
	}
	if old, err := a.st.Policies.Get(org, name); err == nil {
		if r.Method == "POST" {
			a.fail(w, fmt.Errorf("policy %s/%s: %w (use PUT to replace it)", org, name, store.ErrExists))
			return
		}
		if !c.Admin && old.Owner != c.ID {
			a.fail(w, fmt.Errorf("%w: policy %s belongs to %q", access.ErrForbidden, name, old.Owner))
			return
		}
	}
	if err := a.checkBindings(c, org, p.SecretBinding); err != nil {
		a.fail(w, err)
		return
	}
	svcs, err := a.servicesFor(org, p.Service.Org, p.Service.Name, p.Service.Arch, p.Service.ServiceVersions)
	if err != nil {
		a.fail(w, err)
		return
	}
	rep, err := exchange.CheckPublish(p.SecretBinding, svcs, a.exists(r.Context(), c, org))
	if err != nil {
		a.fail(w, err)
		return
	}
	if len(svcs) == 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("no published service %s/%s matches: nothing is deployed until one is", p.Service.Org, p.Service.Name))
	}
	p.Org, p.Name, p.Owner, p.LastUpdated = org, name, c.ID, now()
	if err := a.st.Policies.Put(org, name, p); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("audit", "op", "policy publish", "org", org, "policy", name, "caller", c.String(), "result", 201)
	if err := a.eng.Reconcile(r.Context(), org); err != nil {
		rep.Warnings = append(rep.Warnings, "agreements not updated yet: "+err.Error())
	}
	writeJSON(w, 201, Published{ID: org + "/" + name, Report: rep})
}

func (a *API) putPattern(w http.ResponseWriter, r *http.Request) {
	var p exchange.Pattern
	org, name, c, ok := a.writeRequest(w, r, "pattern", "name", maxDoc, &p)
	if !ok {
		return
	}
	if err := exchange.ValidatePattern(p); err != nil {
		a.fail(w, err)
		return
	}
	if old, err := a.st.Patterns.Get(org, name); err == nil && !c.Admin && old.Owner != c.ID {
		a.fail(w, fmt.Errorf("%w: pattern %s belongs to %q", access.ErrForbidden, name, old.Owner))
		return
	}
	if err := a.checkBindings(c, org, p.SecretBinding); err != nil {
		a.fail(w, err)
		return
	}
	var svcs []exchange.Service
	var rep exchange.Report
	for _, ps := range p.Services {
		found, err := a.servicesFor(org, ps.ServiceOrgid, ps.ServiceURL, ps.ServiceArch, ps.ServiceVersions)
		if err != nil {
			a.fail(w, err)
			return
		}
		if len(found) == 0 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("no published service %s/%s matches", ps.ServiceOrgid, ps.ServiceURL))
		}
		svcs = append(svcs, found...)
	}
	more, err := exchange.CheckPublish(p.SecretBinding, svcs, a.exists(r.Context(), c, org))
	if err != nil {
		a.fail(w, err)
		return
	}
	rep.Notes = append(rep.Notes, more.Notes...)
	rep.Warnings = append(rep.Warnings, more.Warnings...)
	p.Org, p.Name, p.Owner, p.LastUpdated = org, name, c.ID, now()
	if err := a.st.Patterns.Put(org, name, p); err != nil {
		a.fail(w, err)
		return
	}
	a.log.Info("audit", "op", "pattern publish", "org", org, "pattern", name, "caller", c.String(), "result", 201)
	a.eng.ReconcileAll(r.Context())
	writeJSON(w, 201, Published{ID: org + "/" + name, Report: rep})
}

// listOrg serves GET on a collection: the org's records as {"org/name": record}, to users of
// that org.
func listOrg[T any](a *API, t *store.Table[T], name func(T) string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		org := r.PathValue("org")
		if err := sameOrgUser(callerOf(r), org); err != nil {
			a.fail(w, err)
			return
		}
		list, err := t.List(org)
		if err != nil {
			a.fail(w, err)
			return
		}
		out := make(map[string]T, len(list))
		for _, v := range list {
			out[org+"/"+name(v)] = v
		}
		writeJSON(w, 200, out)
	}
}

// getOrg serves GET of one record of the caller's org.
func getOrg[T any](a *API, t *store.Table[T]) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		org := r.PathValue("org")
		if err := sameOrgUser(callerOf(r), org); err != nil {
			a.fail(w, err)
			return
		}
		v, err := t.Get(org, r.PathValue("name"))
		if err != nil {
			a.fail(w, err)
			return
		}
		writeJSON(w, 200, v)
	}
}

// deleteOwned serves DELETE of a record that only its owner or an org admin may remove, then
// lets the engine re-match (which cancels the agreements the record made).
func deleteOwned[T any](a *API, kind string, t *store.Table[T], owner func(T) string, rematch func(ctx context.Context, org string)) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		org, name, c := r.PathValue("org"), r.PathValue("name"), callerOf(r)
		if err := sameOrgUser(c, org); err != nil {
			a.fail(w, err)
			return
		}
		v, err := t.Get(org, name)
		if err != nil {
			a.fail(w, err)
			return
		}
		if !c.Admin && owner(v) != c.ID {
			a.fail(w, fmt.Errorf("%w: %s %s belongs to %q", access.ErrForbidden, kind, name, owner(v)))
			return
		}
		if err := t.Delete(org, name); err != nil {
			a.fail(w, err)
			return
		}
		a.log.Info("audit", "op", kind+" delete", "org", org, kind, name, "caller", c.String(), "result", 200)
		rematch(r.Context(), org)
		writeJSON(w, 200, map[string]any{"deleted": name})
	}
}

// writeRequest is the start of every create-or-replace: the caller must act in the path's org,
// the record's name (path value key) must be one safe segment, and the body must decode into
// v. On a refusal it answers the request itself and returns ok false.
func (a *API) writeRequest(w http.ResponseWriter, r *http.Request, kind, key string, max int64, v any) (org, name string, c access.Caller, ok bool) {
	org, name, c = r.PathValue("org"), r.PathValue(key), callerOf(r)
	if err := sameOrgUser(c, org); err != nil {
		a.fail(w, err)
		return "", "", c, false
	}
	if err := validSegment(kind, name); err != nil {
		a.fail(w, err)
		return "", "", c, false
	}
	if err := readJSON(r, max, v); err != nil {
		a.fail(w, err)
		return "", "", c, false
	}
	return org, name, c, true
}
