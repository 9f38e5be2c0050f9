package agbot

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
	"github.com/edge-secrets/anax-agent/agbot/store"
)

// Several agbots on one database (README, "Several agbots on one database"): the fleet is
// served by the agbot holding the lease "fleet" in the database, renewed every LeaseTTL/3;
// the others are standbys that forward every request to it. When it dies, its lease expires
// after at most LeaseTTL and the first standby to try next takes over: it loads the engine
// from the database (agreements, outbox, holdings) and serves. Writes are fenced: an agbot
// that lost the lease can not write (store.ErrNotLeader).
const leaseName = "fleet"

// DefaultLeaseTTL bounds a takeover: a dead leader's lease expires within it, and a standby
// tries every third of it, so a standby serves within LeaseTTL*4/3 plus the engine's load.
const DefaultLeaseTTL = 6 * time.Second

// Sentinels of a fleet's set-up.
var (
	ErrNoAdvertise     = errors.New("with --db and --listen on every address, --advertise must say where the other agbots reach this one")
	ErrSecretsDiffer   = errors.New("the agbots of one fleet must share one secrets manager")
	ErrSecretsFileLeft = errors.New("a secrets file is in the data dir")
	ErrNoLeader        = errors.New("no agbot serves the fleet right now")
)

// metaSecrets records the fleet's secrets manager (Backend of the manager): an agbot
// started with another one is refused while the leader serves.
const metaSecrets = "secrets-backend"

// ha is a Server's part in a fleet: its lease, the active part while it holds the lease, and
// the forwarding to the leader otherwise. It is the Server's HTTP handler.
type ha struct {
	s         *Server
	lease     *store.Lease
	ttl       time.Duration
	advertise string // where the others reach this agbot
	id        string // this process: its address and a random incarnation
	log       *slog.Logger
	proxy     *httputil.ReverseProxy

	renewed time.Time // when the last successful renewal started

	mu     sync.Mutex
	act    *active
	leader string // the leader's --advertise URL, as last seen
}

// newHA checks that this agbot may join the fleet on the database; start begins holding
// or watching the lease.
func newHA(s *Server) (*ha, error) {
	o := s.opts
	ttl := o.LeaseTTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	h := &ha{s: s, ttl: ttl, log: o.Log}
	if err := h.checkSecrets(); err != nil {
		return nil, err
	}
	return h, nil
}

// start takes the lease if it is free (a lone agbot serves from its first request on) and
// runs the lease loop. advertise defaults to the listener's address.
func (h *ha) start(ln net.Listener) error {
	adv := h.s.opts.Advertise
	if adv == "" {
		tcp, ok := ln.Addr().(*net.TCPAddr)
		if !ok || tcp.IP.IsUnspecified() {
			return ErrNoAdvertise
		}
		adv = "https://" + tcp.String()
	}
	if u, err := url.Parse(adv); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("--advertise %q: must be https://HOST:PORT", adv)
	}
	var b [6]byte
	rand.Read(b[:])
	h.advertise, h.id = adv, adv+"#"+hex.EncodeToString(b[:])
	var err error
	if h.lease, err = h.s.st.Lease(leaseName, h.id, adv, h.ttl); err != nil {
		return err
	}
	if err := h.s.st.Fence(leaseName, h.id); err != nil {
		return err
	}
	if h.proxy, err = newForwarder(h.s.opts.DataDir, h); err != nil {
		return err
	}
	h.try(h.s.ctx)
	h.s.wg.Go(func() { h.run(h.s.ctx) })
	return nil
}

// checkSecretsFile refuses a bbolt secrets file in the data dir of an agbot on PostgreSQL:
// its secrets would be ignored (the embedded manager keeps them in the database), and a copy
// of it on each agbot would diverge.
func checkSecretsFile(o Options) error {
	p := filepath.Join(o.DataDir, embedded.DBFile)
	if _, err := os.Stat(p); err == nil {
		return fmt.Errorf("%w: %s; with --db the embedded manager keeps the fleet's secrets in the database, "+
			"where every agbot sees them: store them again through the API and remove the file", ErrSecretsFileLeft, p)
	}
	return nil
}

// checkSecrets refuses to join a fleet whose leader serves with another secrets manager: two
// agbots with different secrets would send nodes different values.
func (h *ha) checkSecrets() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	have, err := h.s.st.Meta(metaSecrets)
	if err != nil {
		return err
	}
	leader, err := h.s.st.LeaseHolder(ctx, leaseName)
	if err != nil {
		return err
	}
	if want := backendOf(h.s.sm); len(have) > 0 && string(have) != want && leader.ID != "" {
		return fmt.Errorf("%w: the agbot at %s serves the fleet with secrets manager %s, this one was started with %s",
			ErrSecretsDiffer, leader.Addr, have, want)
	}
	return nil
}

// backendOf names a secrets manager for the fleet check.
func backendOf(sm any) string {
	if b, ok := sm.(interface{ Backend() string }); ok {
		return b.Backend()
	}
	return fmt.Sprintf("%T", sm)
}

// run holds or watches the lease until ctx ends, trying every ttl/3.
func (h *ha) run(ctx context.Context) {
	tick := time.NewTicker(h.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			h.stepDown("shutting down")
			return
		case <-tick.C:
			h.try(ctx)
		}
	}
}

// try takes or renews the lease: it activates on winning it, and steps down when another
// agbot holds it or when it could not renew it for two thirds of its TTL (before it can
// expire in the database: the leader never serves past its lease).
func (h *ha) try(ctx context.Context) {
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, h.ttl/3)
	held, holder, err := h.lease.TryAcquire(tctx)
	cancel()
	switch {
	case ctx.Err() != nil:
	case err != nil:
		h.log.Warn("lease not renewed", "err", err)
		if time.Since(h.renewed) > h.ttl*2/3 {
			h.stepDown("lease could not be renewed")
		}
	case held:
		h.renewed = start
		h.becomeLeader(ctx)
	default:
		h.stepDown("another agbot holds the lease")
		h.setLeader(holder.Addr)
	}
}

func (h *ha) becomeLeader(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.act != nil {
		return
	}
	if err := h.s.st.SetMeta(metaSecrets, []byte(backendOf(h.s.sm))); err != nil {
		h.log.Warn("taking over: secrets manager not recorded", "err", err)
		return
	}
	a, err := h.s.activate(ctx)
	if err != nil {
		h.log.Error("taking over: the engine did not start", "err", err)
		return
	}
	h.act, h.leader = a, h.advertise
	h.log.Info("serving the fleet: this agbot holds the lease", "advertise", h.advertise)
}

func (h *ha) stepDown(why string) {
	h.mu.Lock()
	a := h.act
	h.act = nil
	if h.leader == h.advertise {
		// Not the leader any more, and who is comes from the next try: until then requests
		// are answered 503 (Retry-After), never forwarded to this agbot itself.
		h.leader = ""
	}
	h.mu.Unlock()
	if a != nil {
		a.stop()
		h.log.Warn("standing by: no longer serving the fleet", "reason", why)
	}
}

// setLeader records where the lease holder serves. A holder at this agbot's own address is
// an earlier process of it (killed, restarted on the same address) whose lease has not
// expired yet: no agbot serves until it does, and forwarding there would only reach this
// one again (a second connection per request, each answered 503).
func (h *ha) setLeader(addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if addr == h.advertise {
		addr = ""
	}
	if h.leader != addr {
		h.log.Info("standing by", "leader", addr)
	}
	h.leader = addr
}

// release gives the lease up after a clean shutdown, so a standby takes over at once.
func (h *ha) release() {
	if h.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.lease.Release(ctx); err != nil {
		h.log.Warn("lease not released; a standby takes over when it expires", "err", err)
	}
	h.lease.Close()
}

func (h *ha) current() (*active, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.act, h.leader
}

// ServeHTTP serves the request when this agbot leads, else forwards it to the leader. A
// request in flight when the agbot steps down ends (a long-poll returns early; the node
// polls again and reaches the new leader).
func (h *ha) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, leader := h.current()
	if a != nil {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(a.ctx, cancel)
		defer stop()
		a.api.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	if leader == "" || r.Header.Get(forwardedHeader) != "" {
		// No leader known, or a forwarded request reached a standby (the lease moved
		// meanwhile): the client retries.
		w.Header().Set("Retry-After", "1")
		http.Error(w, ErrNoLeader.Error(), http.StatusServiceUnavailable)
		return
	}
	h.proxy.ServeHTTP(w, r)
}

// forwardedHeader marks a request a standby forwarded, so it is forwarded at most once.
const forwardedHeader = "X-Anax-Agbot-Forwarded"

// newForwarder is the reverse proxy to the leader. The agbots of a fleet share the data
// dir's certificate (a copy of the first agbot's), so the leader's must chain to the data
// dir's CA, whose private key init threw away: nothing else can present such a certificate.
// Its names are those of the first agbot, so it is verified by the name every one carries
// ("localhost"), not by the leader's address.
func newForwarder(dataDir string, h *ha) (*httputil.ReverseProxy, error) {
	pem, err := os.ReadFile(filepath.Join(dataDir, CAFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	return &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			_, leader := h.current()
			u, _ := url.Parse(leader)
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(forwardedHeader, "1")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			h.log.Warn("forwarding to the leader failed", "err", err)
			w.Header().Set("Retry-After", "1")
			http.Error(w, ErrNoLeader.Error(), http.StatusServiceUnavailable)
		},
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}, nil
}

// RolloutStats implements metrics.Source: the engine's counts while this agbot leads, none
// on a standby (scrape the leader).
func (h *ha) RolloutStats(bySecret bool) (byOrg, perSecret map[string]engine.RolloutCounts) {
	if a, _ := h.current(); a != nil {
		return a.eng.RolloutStats(bySecret)
	}
	return nil, nil
}

// fenceID is the lease holder id this agbot's writes are fenced with ("" before it serves,
// when only set-up writes happen).
func (s *Server) fenceID() string {
	if s.ha == nil {
		return ""
	}
	return s.ha.id
}

// Fingerprint is the fingerprint of the agbot's signing key, which nodes pin.
func (s *Server) Fingerprint() string { return s.keys.Public().Fingerprint() }

// Leading reports whether this agbot serves the fleet (always, alone on a bbolt state).
func (s *Server) Leading() bool {
	if s.ha == nil {
		return true
	}
	a, _ := s.ha.current()
	return a != nil
}
