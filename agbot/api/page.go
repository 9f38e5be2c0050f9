package api

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
)

// The read-only pages on the API's listener, with the API's credentials (Basic auth: the
// browser asks). Server-rendered, no external assets; a few lines of script reload the page.
// The Content-Security-Policy allows only this response's own style and script.

const pageRefresh = 5 * time.Second

var pages = template.Must(template.New("layout").Funcs(template.FuncMap{
	"pct": func(n, total int) string {
		if total == 0 {
			return "0"
		}
		return fmt.Sprintf("%.2f", 100*float64(n)/float64(total))
	},
	"add": func(a ...int) int {
		s := 0
		for _, x := range a {
			s += x
		}
		return s
	},
	"when": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	},
	"at": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title>
<style nonce="{{.Nonce}}">
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin-top:.5em} th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left}
td:not(:last-child){white-space:nowrap}
.summary{white-space:pre-line;font-weight:600}
.acknowledged{color:#1a7f37} .failed{color:#cf222e} .offline{color:#6e7781} .sent{color:#0969da}
.legend span{margin-right:1.2em} .muted{color:#6e7781;font-size:.9em}
</style></head><body>
<p class="muted"><a href="/ui/org/{{.Org}}/nodes">nodes and agreements</a> · updated {{.Now}} · refreshes every {{.Refresh}}s</p>
{{template "body" .}}
<script nonce="{{.Nonce}}">setTimeout(function () { location.reload(); }, {{.RefreshMS}});</script>
</body></html>`))

var rolloutTmpl = template.Must(template.Must(pages.Clone()).Parse(`{{define "body"}}{{with .Data}}
<h1>Secret <code>{{.Name}}</code> in {{.Org}}: rollout</h1>
<p class="summary" id="summary">{{.Summary}}</p>
{{range .Versions}}
<h2>Version {{.Version}}: {{.Acknowledged}} of {{.Nodes}} acknowledged</h2>
<svg width="600" height="22" role="img" aria-label="version {{.Version}}: {{.Acknowledged}} acknowledged, {{.Sent}} sent, {{.Offline}} offline, {{.Failed}} failed of {{.Nodes}}">
<rect x="0" y="0" width="600" height="22" fill="#eaeef2"/>
<svg x="0" width="{{pct .Acknowledged .Nodes}}%"><rect width="100%" height="22" fill="#2da44e"/></svg>
<svg x="{{pct .Acknowledged .Nodes}}%" width="{{pct .Sent .Nodes}}%"><rect width="100%" height="22" fill="#54aeff"/></svg>
<svg x="{{pct (add .Acknowledged .Sent) .Nodes}}%" width="{{pct .Offline .Nodes}}%"><rect width="100%" height="22" fill="#8c959f"/></svg>
<svg x="{{pct (add .Acknowledged .Sent .Offline) .Nodes}}%" width="{{pct .Failed .Nodes}}%"><rect width="100%" height="22" fill="#cf222e"/></svg>
</svg>
<p class="legend"><span class="acknowledged">■ {{.Acknowledged}} acknowledged</span><span class="sent">■ {{.Sent}} sent</span><span class="offline">■ {{.Offline}} offline{{if .OfflineSince}} since {{when .OfflineSince}}{{end}}</span><span class="failed">■ {{.Failed}} failed</span></p>
{{end}}
<h2>Nodes not yet current</h2>
<table id="behind"><tr><th>node</th><th>state</th><th>holds</th><th>sent</th><th>last poll</th><th>reason</th></tr>
{{$cur := .Current}}{{range .Nodes}}{{if or (ne .State "acknowledged") (ne .Version $cur)}}
<tr><td>{{.Node}}</td><td class="{{.State}}">{{.State}}</td><td>{{if .Acked}}version {{.Acked}}{{else}}none{{end}}</td><td>version {{.Version}}{{if .Superseded}} (superseded {{.Superseded}}){{end}}</td><td>{{when .LastPoll}}</td><td>{{.Reason}}</td></tr>
{{end}}{{end}}</table>
<h2>All agreements ({{.Total}})</h2>
<table id="all"><tr><th>node</th><th>agreement</th><th>service</th><th>state</th><th>sent</th><th>holds</th></tr>
{{range .Nodes}}<tr><td>{{.Node}}</td><td><code>{{.Agreement}}</code></td><td>{{.Service}}</td><td class="{{.State}}">{{.State}}</td><td>version {{.Version}}</td><td>{{if .Acked}}version {{.Acked}}, acknowledged {{when .AckedAt}}{{else}}none yet{{end}}</td></tr>
{{end}}</table>
{{end}}{{end}}`))

var nodesTmpl = template.Must(template.Must(pages.Clone()).Parse(`{{define "body"}}
<h1>Nodes and agreements in {{.Org}}</h1>
<table id="nodes"><tr><th>node</th><th>owner</th><th>last poll</th><th>agreement</th><th>service</th><th>state</th><th>secrets</th></tr>
{{$org := .Org}}{{range .Data}}{{$n := .}}{{range .Agreements}}
<tr><td>{{$n.Node}}</td><td>{{$n.Owner}}</td><td class="{{if $n.Online}}acknowledged{{else}}offline{{end}}">{{at $n.LastPoll}}{{if not $n.Online}} (offline){{end}}</td>
<td><code>{{.ID}}</code></td><td>{{.Service}}</td><td>{{.State}}{{if .Held}}: {{.Held}}{{end}}</td>
<td>{{$ag := .}}{{range $svc, $name := .Sources}}{{$svc}} ← <a href="/ui/org/{{$org}}/rollouts/{{$name}}">{{$name}}</a> v{{index $ag.Versions $svc}}<br>{{end}}</td></tr>
{{else}}<tr><td>{{$n.Node}}</td><td>{{$n.Owner}}</td><td>{{at $n.LastPoll}}</td><td colspan="4">no agreements</td></tr>{{end}}{{end}}
</table>{{end}}`))

type pageData struct {
	Title, Org, Nonce, Now string
	Refresh, RefreshMS     int
	Data                   any
}

type nodeRow struct {
	Node, Owner string
	LastPoll    time.Time
	Online      bool
	Agreements  []engine.Agreement
}

func (a *API) render(w http.ResponseWriter, t *template.Template, d pageData) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	d.Nonce = base64.StdEncoding.EncodeToString(b[:])
	d.Now = time.Now().UTC().Format(time.RFC3339)
	d.Refresh, d.RefreshMS = int(pageRefresh/time.Second), int(pageRefresh/time.Millisecond)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+d.Nonce+"'; script-src 'nonce-"+d.Nonce+
		"'; img-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	if err := t.ExecuteTemplate(w, "layout", d); err != nil {
		a.log.Error("page not rendered", "page", d.Title, "err", err)
	}
}

// rolloutPage is GET /ui/org/{org}/rollouts/{name...}: the JSON rollout as a page.
func (a *API) rolloutPage(w http.ResponseWriter, r *http.Request) {
	ro, err := a.rolloutOf(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	a.render(w, rolloutTmpl, pageData{Title: "rollout of " + ro.Name, Org: ro.Org, Data: ro})
}

// nodesPage is GET /ui/org/{org}/nodes: the nodes the caller may see (an admin all of the
// org's, a user the ones they own) and their agreements.
func (a *API) nodesPage(w http.ResponseWriter, r *http.Request) {
	org, nodes, ok := a.visibleNodes(w, r)
	if !ok {
		return
	}
	byNode := map[string][]engine.Agreement{}
	for _, ag := range a.eng.Agreements(org, "") {
		byNode[ag.Node] = append(byNode[ag.Node], ag)
	}
	var rows []nodeRow
	for _, n := range nodes {
		last, online := a.eng.LastPoll(org, n.ID)
		rows = append(rows, nodeRow{Node: n.ID, Owner: n.Owner, LastPoll: last, Online: online, Agreements: byNode[n.ID]})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Node < rows[j].Node })
	a.render(w, nodesTmpl, pageData{Title: "nodes of " + org, Org: org, Data: rows})
}
