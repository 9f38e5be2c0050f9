package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-secrets/anax-agent/agreement"
	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/ess"
	"github.com/edge-secrets/anax-agent/platform/arch"
	linuxp "github.com/edge-secrets/anax-agent/platform/linux"
	"github.com/edge-secrets/anax-agent/protocol"
	"github.com/edge-secrets/anax-agent/secretfs"
)

// Version is the agent's version, set at build time with -ldflags "-X ...agent.Version=...".
var Version = "dev"

// Notifier is the systemd notify protocol (platform/linux.Notifier).
type Notifier interface {
	Ready(status string) error
	Status(status string) error
	Stopping() error
	Watchdog(ctx context.Context, alive func() bool) error
}

// Options configure New beyond the Config.
type Options struct {
	// ConfigFile is the file the configuration came from ("" when none): it is watched, and a
	// change is applied without a restart (log level, poll wait, backoff).
	ConfigFile string
	// Reparse builds the configuration again on a reload (the file, then the command-line
	// flags over it). Nil: LoadFile(ConfigFile) when there is a file.
	Reparse func() (Config, error)
	// Logger and the level it filters on (a reload changes it). Default: text on stderr.
	Logger *slog.Logger
	Level  *slog.LevelVar
	// Notifier defaults to platform/linux.Notifier (a no-op outside systemd).
	Notifier Notifier
}

// Agent is the node daemon: the agreement manager fed by the message loop, the local API for
// hzn, metrics, systemd notification and the file watchers.
type Agent struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	level   *slog.LevelVar
	metrics *Metrics
	notify  Notifier
	agentID string
	started time.Time
	facts   nodeFacts // measured at start: CPUs, memory, hardware id, host IPs

	locks  []*os.File // state dir and secrets root, held while the agent runs
	fs     secretStores
	stores *storeAdapter
	// storesReady is stores once set, for the ESS API's readers (which may call during New).
	storesReady atomic.Pointer[storeAdapter]
	ess         *ess.Server
	worker      *container.Worker
	mgr         *agreement.Manager
	guard       *storeGuard

	pollWait, backoffMax atomic.Int64 // time.Duration; reloadable

	regMu sync.Mutex // serialises register and unregister
	mu    sync.Mutex
	reg   *Registration
	admit func(map[string]any) error
	conn  *connection
	link  linkStatus
	last  time.Time // last secret change applied on the node
	depth map[string]int

	ctx        context.Context // ends at Shutdown
	cancel     context.CancelFunc
	work       context.Context // handlers; ends only when Shutdown runs out of time
	stopWork   context.CancelFunc
	wg         sync.WaitGroup
	apiSrv     *http.Server
	metricsSrv *http.Server
	served     atomic.Bool
	shutOnce   sync.Once
	shutErr    error
}

// linkStatus is how the message loop sees the agbot.
type linkStatus struct {
	Connected   bool      `json:"connected"`
	LastContact time.Time `json:"lastContact,omitzero"`
	LastError   string    `json:"lastError,omitempty"`
	Failures    int       `json:"consecutiveFailures"`
}

// AgentID is the container-label id of the agent whose state lives in stateDir: agents with
// different state dirs on one machine never see each other's containers, and the id survives
// a wiped state dir, so orphans are still found.
func AgentID(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return "anax-agent-" + hex.EncodeToString(sum[:6])
}

// New prepares the agent: state dir, secret stores, container worker, agreement manager,
// registration; then reconciles what it finds on the node (Recover). Serve runs it.
func New(cfg Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults(cfg)
	a := &Agent{
		cfg: cfg, opts: opts, log: opts.Logger, level: opts.Level, notify: opts.Notifier,
		metrics: NewMetrics(), agentID: AgentID(cfg.StateDir), started: time.Now(), depth: map[string]int{},
		facts: readNodeFacts(),
	}
	a.pollWait.Store(int64(cfg.PollWait))
	a.backoffMax.Store(int64(cfg.BackoffMax))
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.work, a.stopWork = context.WithCancel(context.Background())

	if err := prepareStateDir(cfg.StateDir); err != nil {
		return nil, err
	}
	locks, err := lockPaths(filepath.Join(cfg.StateDir, "agent.lock"), filepath.Clean(cfg.SecretsRoot)+".lock")
	if err != nil {
		return nil, err
	}
	a.locks = locks
	if err := a.openParts(); err != nil {
		for _, f := range a.locks {
			f.Close()
		}
		return nil, err
	}
	a.recoverAtStart()
	return a, nil
}

// withDefaults fills what the caller left out: level and logger from cfg, systemd notify,
// and re-reading the config file on reload.
func (opts Options) withDefaults(cfg Config) Options {
	if opts.Level == nil {
		opts.Level = new(slog.LevelVar)
		if l, err := ParseLevel(cfg.LogLevel); err == nil {
			opts.Level.Set(l)
		}
	}
	if opts.Logger == nil {
		opts.Logger = NewLogger(os.Stderr, opts.Level, false)
	}
	if opts.Notifier == nil {
		opts.Notifier = linuxp.Notifier{}
	}
	if opts.Reparse == nil && opts.ConfigFile != "" {
		file := opts.ConfigFile
		opts.Reparse = func() (Config, error) { return LoadFile(file) }
	}
	return opts
}

// openParts loads the registration and opens, in order, the ESS secrets API, the container
// worker (and its tracking of containers' PIDs), the secret stores and the agreement manager.
// On error it closes what it opened.
func (a *Agent) openParts() error {
	cfg := a.cfg
	reg, err := loadRegistration(cfg.StateDir)
	if err != nil {
		return err
	}
	if err := a.setRegistration(reg); err != nil {
		return err
	}
	// The ESS secrets API that services written for anax poll (see package ess).
	a.ess, err = ess.Open(ess.Options{Root: cfg.ESSDir(), Read: a.readSecret, Count: a.metrics.essCall,
		Logger: a.log.With("component", "ess")})
	if err != nil {
		return fmt.Errorf("ESS secrets API at %s: %w", cfg.ESSDir(), err)
	}
	uids, _ := cfg.HostUIDs() // validated with the configuration
	caps, _ := cfg.Capabilities()
	a.worker, err = container.NewFromEnv(container.Options{AgentID: a.agentID, Logger: a.log.With("component", "container"),
		AllowHostUIDs: uids, ExtraCapabilities: caps, RequireImageDigest: cfg.RequireImageDigest, ESS: a.ess,
		ProtectedPaths:    []string{filepath.Clean(cfg.SecretsRoot), filepath.Clean(cfg.ESSDir()), filepath.Clean(cfg.StateDir)},
		AllowDockerSocket: cfg.AllowDockerSocket})
	if err != nil {
		a.ess.Close()
		return err
	}
	// secretfs reads the mount namespaces of each store's containers by the PIDs the worker
	// follows from the engine (no ptrace access needed, see README "Security properties").
	a.wg.Go(func() { a.worker.TrackHolders(a.ctx) })
	if err := a.openStores(); err != nil {
		a.cancel()
		a.wg.Wait()
		a.worker.Close()
		a.ess.Close()
		return err
	}
	return nil
}

// openStores opens the secret stores and the agreement manager over them.
func (a *Agent) openStores() error {
	cfg := a.cfg
	fs, err := secretfs.Open(secretfs.Options{Root: cfg.SecretsRoot, Holders: a.worker, Logger: a.log.With("component", "secretfs")})
	if err != nil {
		return fmt.Errorf("secret stores at %s: %w", cfg.SecretsRoot, err)
	}
	a.fs = fs
	a.stores = newStoreAdapter(fs)
	a.stores.ess = a.ess
	a.stores.swapped = func(d time.Duration) { a.metrics.StoreSwap.Observe(d.Seconds()) }
	a.storesReady.Store(a.stores)
	a.metrics.SetMode(string(fs.Mode()))
	a.metrics.watchScans(fs.IncompleteScans)
	feat := fs.Features()
	a.log.Info("secret stores", "root", cfg.SecretsRoot, "mode", fs.Mode(), "kernel", feat.Kernel,
		"new_mount_api", feat.NewMountAPI, "move_mount_beneath", feat.MoveMountBeneath,
		"move_mount_set_group", feat.MoveMountSetGroup, "tmpfs_noswap", feat.TmpfsNoswap,
		"mount_privilege", feat.MountPrivilege, "shared_root", feat.SharedRoot)
	a.mgr, err = agreement.Open(agreement.Options{
		StateDir: cfg.StateDir, Stores: a.stores, Runner: a.worker, NodeArch: arch.Node(),
		Admit: a.admitService, Node: a.nodeContext, Logger: a.log,
	})
	if err != nil {
		fs.Close()
		return err
	}
	a.guard = newStoreGuard(a)
	a.stores.changed = a.guard.rebase
	return nil
}

// recoverAtStart reconciles what an earlier run left (agreements, stores, containers, ESS
// files) and sets the gauges.
func (a *Agent) recoverAtStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resyncs, err := a.mgr.Recover(ctx)
	if err != nil {
		// What could not be reconciled is logged; the rest runs.
		a.log.Error("start-up reconciliation left something behind", "err", err)
		a.metrics.Failures.WithLabelValues("recover").Inc()
	}
	a.pruneESS()
	if len(resyncs) > 0 {
		a.log.Warn("agreements wait for their current values from the agbot (resync)", "agreements", len(resyncs))
	}
	for _, op := range []string{"proposal", "update", "cancel", "poll", "reply", "message", "repair", "container", "recover", "reload"} {
		a.metrics.Failures.WithLabelValues(op).Add(0)
	}
	a.refreshDepths()
	a.refreshGauges()
}

// prepareStateDir makes the state dir 0700 (it holds keys and the node token).
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	return nil
}

// setRegistration installs reg (nil: none) and its node policy.
func (a *Agent) setRegistration(reg *Registration) error {
	var admit func(map[string]any) error
	if reg != nil {
		var err error
		if admit, err = reg.Policy.admit(); err != nil {
			return fmt.Errorf("registration: node policy: %w", err)
		}
	}
	a.mu.Lock()
	a.reg, a.admit = reg, admit
	a.mu.Unlock()
	return nil
}

func (a *Agent) admitService(service map[string]any) error {
	a.mu.Lock()
	admit := a.admit
	a.mu.Unlock()
	if admit == nil {
		return nil
	}
	return admit(service)
}

// nodeContext is what a new agreement's containers see of the node.
func (a *Agent) nodeContext() agreement.NodeContext {
	reg := a.registration()
	if reg == nil {
		return agreement.NodeContext{}
	}
	return reg.nodeContext(a.facts)
}

func (a *Agent) registration() *Registration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reg
}

// Metrics returns the agent's metrics.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// Serve listens on the local API socket and the metrics address, starts the message loop
// when the node is registered, the watchers and the systemd watchdog, tells systemd it is
// ready, and blocks until ctx is done or Shutdown is called. Call Shutdown afterwards.
func (a *Agent) Serve(ctx context.Context) error {
	if !a.served.CompareAndSwap(false, true) {
		return errors.New("agent: Serve called twice")
	}
	apiLn, err := listenUnix(a.cfg.APISocket)
	if err != nil {
		return err
	}
	a.apiSrv = &http.Server{Handler: a.apiHandler(), ReadHeaderTimeout: 10 * time.Second,
		ConnContext: peerContext, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	a.wg.Go(func() {
		if err := a.apiSrv.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("local API stopped", "err", err)
		}
	})
	if a.cfg.MetricsListen != "" {
		mln, err := net.Listen("tcp", a.cfg.MetricsListen)
		if err != nil {
			a.apiSrv.Close()
			return fmt.Errorf("metrics listen %s: %w", a.cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		if a.cfg.DebugPprof {
			servePprof(mux)
		}
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
		a.wg.Go(func() {
			if err := a.metricsSrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics server stopped", "err", err)
			}
		})
		a.log.Info("metrics", "addr", mln.Addr().String())
	}

	if reg := a.registration(); reg != nil {
		a.startConnection(reg)
	}
	a.wg.Go(func() { a.watchDeaths(a.ctx) })
	a.wg.Go(func() { a.guard.run(a.ctx) })
	if a.opts.ConfigFile != "" {
		a.wg.Go(func() { a.watchConfig(a.ctx) })
	}
	a.wg.Go(func() { a.tick(a.ctx) })
	a.wg.Go(func() {
		if err := a.notify.Watchdog(a.ctx, a.alive); err != nil {
			a.log.Error("systemd watchdog", "err", err)
		}
	})
	a.log.Info("anax-agent ready", "version", Version, "agent_id", a.agentID, "api_socket", a.cfg.APISocket,
		"state_dir", a.cfg.StateDir, "registered", a.registration() != nil)
	if err := a.notify.Ready(a.statusLine()); err != nil {
		a.log.Warn("systemd notify", "err", err)
	}
	select {
	case <-ctx.Done():
	case <-a.ctx.Done():
	}
	return nil
}

// alive is the watchdog's health check: the state DB answers.
func (a *Agent) alive() bool {
	_, err := a.mgr.Agreements()
	return err == nil
}

// tick refreshes gauges and the systemd status now and then.
func (a *Agent) tick(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.refreshDepths()
			a.refreshGauges()
		}
	}
}

// Shutdown stops the message loop, lets the messages being handled finish (until ctx), closes
// the API and metrics listeners and the state DB. Containers and secret stores stay: the next
// start finds them intact.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.shutOnce.Do(func() {
		_ = a.notify.Stopping()
		a.log.Info("anax-agent stopping")
		a.cancel()
		var errs []error
		if c := a.takeConnection(); c != nil {
			errs = append(errs, c.stop(ctx))
		}
		if a.apiSrv != nil {
			errs = append(errs, a.apiSrv.Shutdown(ctx))
		}
		if a.metricsSrv != nil {
			errs = append(errs, a.metricsSrv.Shutdown(ctx))
		}
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			a.stopWork()
			errs = append(errs, fmt.Errorf("agent: shutdown: %w", ctx.Err()))
		}
		errs = append(errs, a.mgr.Shutdown(ctx))
		a.stopWork()
		errs = append(errs, a.worker.Close(), a.fs.Close(), a.ess.Close())
		for _, f := range a.locks {
			f.Close()
		}
		a.shutErr = errors.Join(errs...)
		a.log.Info("anax-agent stopped")
	})
	return a.shutErr
}

// readSecret gives the ESS API the current value of a store's secret (nil stores: starting).
func (a *Agent) readSecret(storeID, name string) (protocol.SecretValue, error) {
	st := a.storesReady.Load()
	if st == nil {
		return protocol.SecretValue{}, errors.New("the agent is starting")
	}
	return st.ReadSecret(storeID, name)
}

// pruneESS removes the ESS API of stores that no longer exist (after Recover).
func (a *Agent) pruneESS() {
	stores, err := a.fs.Stores()
	if err != nil {
		a.log.Warn("ess: list stores", "err", err)
		return
	}
	keep := map[string]bool{}
	for _, st := range stores {
		keep[st.ID] = true
	}
	a.ess.Prune(func(id string) bool { return keep[id] })
}

// servePprof adds Go's profiles to mux (the metrics listener, loopback by default). Block and
// mutex profiling sample 1 in 100 events while it is on.
func servePprof(mux *http.ServeMux) {
	runtime.SetBlockProfileRate(10000) // one sample per 10 µs blocked
	runtime.SetMutexProfileFraction(100)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
