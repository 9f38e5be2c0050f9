package agbot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/agbot/exchange"
	"github.com/edge-secrets/anax-agent/agbot/memtrim"
	"github.com/edge-secrets/anax-agent/agbot/metrics"
	"github.com/edge-secrets/anax-agent/agbot/park"
	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
	"github.com/edge-secrets/anax-agent/agbot/store"
	"github.com/edge-secrets/anax-agent/pki"
	"github.com/edge-secrets/anax-agent/protocol"
)

// Files in the data directory.
const (
	StateFile = "state.db"
	KeysFile  = "agbot-keys.json"
	CertFile  = "tls/cert.pem" // the leaf certificate, then the CA (the chain served)
	CAFile    = "tls/ca.pem"   // the CA clients trust (HZN_AGBOT_CA, --agbot-ca)
	TLSKey    = "tls/key.pem"
	metaID    = "agbot-id"
	// metaKey holds the fingerprint of the agbot's signing key: every agbot sharing a
	// database must load the same keys (nodes pin one identity). Never the key itself.
	metaKey = "agbot-key"
)

// ErrInitialised: init found existing state.
var ErrInitialised = errors.New("data dir already initialised")

// InitOptions configure Init.
type InitOptions struct {
	DataDir  string
	Org      string
	Admin    string // user name
	Password string
	Hash     access.HashParams // zero: access.DefaultParams
	Hosts    []string          // extra certificate names; 127.0.0.1, ::1, localhost and the host name are always in
	DB       DBOptions         // empty: the bbolt file DataDir/state.db
}

// Init creates the state, the agbot's keys and a self-signed TLS certificate, and returns the
// signing-key fingerprint nodes pin. On an initialised directory (agbot stopped) it adds
// another org with its first admin, keeping keys and certificate; an existing org is
// refused with ErrInitialised.
func Init(o InitOptions) (fingerprint string, err error) {
	if err := validOrg(o.Org); err != nil {
		return "", err
	}
	if o.Admin == "" || o.Password == "" {
		return "", fmt.Errorf("admin: want USER:PASSWORD with both parts")
	}
	if o.Hash.Time == 0 {
		o.Hash = access.DefaultParams
	}
	if err := os.MkdirAll(filepath.Join(o.DataDir, "tls"), 0o700); err != nil {
		return "", err
	}
	// The directory holds private keys: owner only, whatever umask or mkdir made it.
	if err := os.Chmod(o.DataDir, 0o700); err != nil {
		return "", err
	}
	keys, err := protocol.LoadOrCreateKeys(filepath.Join(o.DataDir, KeysFile))
	if err != nil {
		return "", err
	}
	st, err := openState(o.DataDir, o.DB)
	if err != nil {
		return "", err
	}
	defer st.Close()
	id, err := st.Meta(metaID)
	if err != nil {
		return "", err
	}
	fresh := len(id) == 0
	host, _ := os.Hostname()
	if !fresh {
		// Adding an org to an existing agbot: keys, id and certificate stay.
		if err := checkKeys(st, keys); err != nil {
			return "", err
		}
		if _, err := st.Orgs.Get(o.Org, o.Org); err == nil {
			return "", fmt.Errorf("org %q: %w", o.Org, ErrInitialised)
		}
	} else if err := errors.Join(st.SetMeta(metaID, []byte("agbot@"+sanitize(host))),
		st.SetMeta(metaKey, []byte(keys.Public().Fingerprint()))); err != nil {
		return "", err
	}
	if err := st.Orgs.Put(o.Org, o.Org, store.Org{ID: o.Org, Created: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return "", err
	}
	hash, err := access.Hash(o.Password, o.Hash)
	if err != nil {
		return "", err
	}
	if err := st.Users.Put(o.Org, o.Admin, exchange.User{Org: o.Org, Name: o.Admin, Admin: true, PasswordHash: hash}); err != nil {
		return "", err
	}
	if fresh {
		if err := writeCert(o.DataDir, append([]string{host}, o.Hosts...)); err != nil {
			return "", err
		}
	}
	if o.DB.URL != "" {
		// The embedded manager's key, made now so that a copy of the data dir gives every
		// agbot of the fleet the same one (it never enters the database).
		key, err := embedded.LoadKey(filepath.Join(o.DataDir, embedded.KeyFile))
		if err != nil {
			return "", err
		}
		clear(key)
	}
	return keys.Public().Fingerprint(), nil
}

func sanitize(s string) string {
	out := []byte{}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "localhost"
	}
	return string(out)
}

func validOrg(org string) error {
	if err := secrets.ValidateOrg(org); err != nil {
		return err
	}
	return nil
}

// writeCert makes a certificate authority and, signed by it, the agbot's ECDSA P-256 leaf
// certificate (CA:FALSE, server auth only) for loopback and the host names. The CA's private
// key is never written: nothing on this host can mint another certificate that clients
// trusting CAFile would accept. CertFile holds the leaf followed by the CA (the chain served);
// CAFile the CA alone, which clients trust. A client given CertFile, as before, still
// verifies: the bundle holds the CA.
func writeCert(dir string, hosts []string) error {
	host := "agbot"
	if len(hosts) > 0 && hosts[0] != "" {
		host = hosts[0]
	}
	notAfter := time.Now().AddDate(5, 0, 0)
	ca, caKey, err := pki.NewCA("agbot CA ("+host+")", notAfter)
	if err != nil {
		return err
	}
	der, key, err := pki.NewServerLeaf(ca, caKey, "agbot", append([]string{"localhost", "127.0.0.1", "::1"}, hosts...), notAfter)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, TLSKey), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	if err := os.WriteFile(filepath.Join(dir, CAFile), caPEM, 0o644); err != nil {
		return err
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
	return os.WriteFile(filepath.Join(dir, CertFile), chain, 0o644)
}

// Options configure a Server.
type Options struct {
	DataDir string
	DB      DBOptions // empty: the bbolt file DataDir/state.db
	// Advertise is where the other agbots of a fleet sharing DB reach this one
	// (https://HOST:PORT; empty: the listener's address, unless it listens on all).
	Advertise string
	// LeaseTTL: with DB, how long the fleet's lease lasts unrenewed (zero: DefaultLeaseTTL).
	LeaseTTL time.Duration
	// Secrets is the secrets manager; nil opens the embedded one: DataDir/secrets.db sealed
	// under SecretsKey when given, else under the file SecretsKeyFile, else DataDir/secrets.key.
	Secrets        secrets.Manager
	SecretsKey     []byte // embedded.KeySize bytes (from the environment); Open does not keep it
	SecretsKeyFile string
	Log            *slog.Logger
	Hash           access.HashParams // for passwords and tokens created through the API
	// Retry and MaxRetry bound the resend backoff of unacknowledged messages.
	Retry, MaxRetry time.Duration
	// MaxConns bounds open connections (0: DefaultMaxConns); past it new ones wait in the
	// kernel's accept queue.
	MaxConns int
	// Limits: argon2id slots and queue, login throttles (zero: the api package's defaults).
	Verifier                    access.VerifierConfig
	AddressLimit, IdentityLimit access.LimitPolicy
	// OfflineAfter: rollout status shows a node offline when it has no poll in flight and
	// its last poll ended longer ago (zero: the engine's default, a long-poll plus 30s).
	OfflineAfter time.Duration
	// MetricsSecretNames adds per-secret-name series to the metrics (off: by org only).
	MetricsSecretNames bool
	// DebugPprof also serves Go's profiles (/debug/pprof/) on the metrics listener, for
	// measuring (README, Measurements: fan-out). They name no secret but show the process's
	// internals: bind that listener to loopback.
	DebugPprof bool
	// MaxInFlight bounds the long-poll answers in flight (written, the node's connection not
	// yet back with its next request): 0 is DefaultMaxInFlight, below 0 no bound.
	MaxInFlight int
	// NoMemoryTrim leaves the free heap to Go's scavenger and the state file's pages mapped
	// (agbot/memtrim: by default an agbot gives what a burst left free, and the pages of its
	// bbolt file it read, back once quiet).
	NoMemoryTrim bool
}

// DefaultMaxConns leaves room for 10,000 long-polling nodes plus users; an idle node's
// parked long-poll costs the agbot some 57 KiB of RSS, 12 KiB of it live heap (README,
// Fleet fan-out).
const DefaultMaxConns = 16384

// DefaultMaxInFlight answers at once keep a fan-out to 10,000 nodes about as fast as
// unbounded (each answered node acknowledges and polls again within milliseconds) while its
// memory holds that many connections' serving state, not all of them (README, Fleet fan-out).
const DefaultMaxInFlight = 1024

// Server-wide timeouts. There is no WriteTimeout and ReadTimeout is shorter than a long-poll
// may take: the API sets each request's deadlines itself, a long-poll's from its wait.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Server is a running agbot: state, secrets manager, agreement engine and HTTP API.
type Server struct {
	opts    Options
	st      *store.Store
	keys    *protocol.PrivateKeys
	id      string // the agbot's protocol id
	ha      *ha    // nil: the only agbot on its state
	sm      secrets.Manager
	ownSM   bool
	Engine  *engine.Engine
	API     *api.API
	Metrics *metrics.Metrics
	http    *http.Server
	lot     *park.Lot       // the long-polls waiting for a message
	ctx     context.Context // cancelled by Shutdown: ends the engine and every long-poll
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// Open opens an initialised data directory and starts the engine (not the listener).
func Open(o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, StateFile)); err != nil && o.DB.URL == "" {
		return nil, fmt.Errorf("%s is not initialised (run agbot init): %w", o.DataDir, err)
	}
	keys, err := protocol.LoadKeys(filepath.Join(o.DataDir, KeysFile))
	if err != nil {
		return nil, err
	}
	st, err := openState(o.DataDir, o.DB)
	if err != nil {
		return nil, err
	}
	if err := checkInitialised(st, keys, o.DB); err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{opts: o, st: st, sm: o.Secrets, keys: keys, lot: park.New()}
	switch {
	case o.MaxInFlight == 0:
		s.lot.SetMaxInFlight(DefaultMaxInFlight)
	case o.MaxInFlight > 0:
		s.lot.SetMaxInFlight(o.MaxInFlight)
	}
	if s.sm == nil {
		if s.sm, err = openEmbedded(o, st, s.fenceID); err != nil {
			st.Close()
			return nil, err
		}
		s.ownSM = true
	}
	id, _ := st.Meta(metaID)
	if len(id) == 0 {
		id = []byte("agbot")
	}
	s.id = string(id)
	s.Metrics = metrics.New(o.MetricsSecretNames)
	s.Metrics.CountParked(s.lot.Parked)
	s.Metrics.CountInFlight(s.lot.InFlight, s.lot.Waiting)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if !o.NoMemoryTrim { // give back what bursts (a fleet connecting at once, a fan-out) leave free
		s.wg.Go(func() { memtrim.Run(s.ctx, memtrim.Options{Log: o.Log, Release: st.ReleaseMapped}) })
	}
	if o.DB.URL != "" {
		// Several agbots may share the database: serve the fleet only while holding its lease.
		if s.ha, err = newHA(s); err != nil {
			s.cancel()
			s.close()
			return nil, err
		}
		s.Metrics.SetSource(s.ha)
		return s, nil // the lease is taken when it serves
	}
	a, err := s.activate(s.ctx)
	if err != nil {
		s.cancel()
		s.close()
		return nil, err
	}
	s.Engine, s.API = a.eng, a.api
	s.Metrics.SetSource(s.Engine)
	return s, nil
}

// active is the part of a Server that serves the fleet: the engine running and the API on it.
type active struct {
	eng    *engine.Engine
	api    *api.API
	ctx    context.Context // ends when the engine stops (shutdown, lease lost)
	cancel context.CancelFunc
	done   chan struct{} // closed when the engine has stopped
}

// activate loads the engine from the state and runs it until ctx ends or stop is called.
func (s *Server) activate(ctx context.Context) (*active, error) {
	o := s.opts
	eng, err := engine.New(engine.Config{Observe: s.Metrics.Observe, Store: s.st, Secrets: s.sm, Keys: s.keys, ID: s.id, Log: o.Log,
		Retry: o.Retry, MaxRetry: o.MaxRetry, OfflineAfter: o.OfflineAfter})
	if err != nil {
		return nil, err
	}
	a := &active{eng: eng, done: make(chan struct{})}
	a.ctx, a.cancel = context.WithCancel(ctx)
	a.api = api.New(api.Config{Store: s.st, Secrets: s.sm, Engine: eng, Log: o.Log, Hash: o.Hash,
		Verifier: o.Verifier, AddressLimit: o.AddressLimit, IdentityLimit: o.IdentityLimit,
		Lot: s.lot, Context: a.ctx})
	s.wg.Go(func() {
		defer close(a.done)
		defer eng.Close() // commits the acknowledgements gathered; later ones commit alone
		eng.Run(a.ctx)
	})
	return a, nil
}

// stop ends the engine and waits for it.
func (a *active) stop() {
	a.cancel()
	<-a.done
}

// openEmbedded opens the embedded secrets manager: in the data dir's secrets.db next to a
// bbolt state, in the database next to a PostgreSQL state (every agbot of the fleet sees the
// same secrets), sealed under the key from the environment, --secrets-key or DIR/secrets.key.
func openEmbedded(o Options, st *store.Store, fenceID func() string) (secrets.Manager, error) {
	db := filepath.Join(o.DataDir, embedded.DBFile)
	if o.DB.URL != "" {
		if err := checkSecretsFile(o); err != nil {
			return nil, err
		}
		return openEmbeddedPostgres(o, st, fenceID)
	}
	switch {
	case len(o.SecretsKey) > 0:
		return embedded.OpenKey(db, o.SecretsKey, "the key from the environment ("+EnvSecretsKey+")")
	case o.SecretsKeyFile != "":
		return embedded.OpenFiles(db, o.SecretsKeyFile)
	default:
		return embedded.Open(o.DataDir)
	}
}

// MetricsServer serves GET /metrics only, in plain HTTP and without authentication: it says
// how many agreements of each org hold, wait for or failed their secrets' latest versions
// (per secret name only with Options.MetricsSecretNames), never a value (README, Decisions).
func (s *Server) MetricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Metrics.Handler())
	if s.opts.DebugPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: time.Minute, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		ErrorLog: slog.NewLogLogger(s.opts.Log.Handler(), slog.LevelDebug)}
}

// Handler is the HTTP API: of this agbot, or, on a standby of a fleet sharing a database,
// forwarded to the agbot holding the lease.
func (s *Server) Handler() http.Handler {
	if s.ha != nil {
		return s.ha
	}
	return s.API
}

// TLSConfig loads the data dir's certificate.
func TLSConfig(dataDir string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dataDir, CertFile), filepath.Join(dataDir, TLSKey))
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Serve serves HTTPS on ln until Shutdown, at most Options.MaxConns connections at a time.
func (s *Server) Serve(ln net.Listener) error {
	cfg, err := TLSConfig(s.opts.DataDir)
	if err != nil {
		return err
	}
	if s.ha != nil {
		if err := s.ha.start(ln); err != nil {
			return err
		}
	}
	maxConns := s.opts.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	s.http = &http.Server{Handler: s.Handler(), TLSConfig: cfg,
		ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return s.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return api.ConnContext(ctx, s.lot.Kept(c)) },
		ConnState:   s.lot.ConnState,
		ErrorLog:    slog.NewLogLogger(s.opts.Log.Handler(), slog.LevelDebug)}
	err = s.http.Serve(s.lot.Listen(tls.NewListener(netutil.LimitListener(ln, maxConns), cfg)))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, ends long-polls, waits for requests in flight (until ctx), and
// closes the state. Everything queued is already on disk.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.cancel() // ends the engine and the long-polls' wait on it
	if s.http != nil {
		err = s.http.Shutdown(ctx)
		s.lot.Wait() // the parked polls' empty answers, written since s.cancel
	}
	s.wg.Wait()
	if s.ha != nil {
		s.ha.release()
	}
	return errors.Join(err, s.close())
}

func (s *Server) close() error {
	var errs []error
	if s.ownSM && s.sm != nil {
		errs = append(errs, s.sm.Close())
	}
	errs = append(errs, s.st.Close())
	return errors.Join(errs...)
}
