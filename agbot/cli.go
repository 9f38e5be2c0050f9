package agbot

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
	"github.com/edge-secrets/anax-agent/agbot/secrets/embedded"
	"github.com/edge-secrets/anax-agent/platform/linux"
)

// VaultOpener opens the Vault/OpenBao secrets manager; cmd/agbot sets it so that this
// package does not force the Vault client on every importer.
type VaultOpener func(o VaultOptions, log *slog.Logger) (secrets.Manager, error)

// VaultOptions are the serve flags for Vault/OpenBao.
type VaultOptions struct {
	Addr, Token, Mount string
	CACert             string // PEM file that verifies Vault's TLS certificate; system roots when empty
	Poll               time.Duration
}

// EnvSecretsKey is the environment variable that may hold the embedded manager's sealing
// key (base64 of 32 bytes) instead of a key file; serve removes it from its environment.
const EnvSecretsKey = "AGBOT_SECRETS_KEY"

// Main runs `agbot init|serve` with args (without the program name) and returns the exit
// code. vault may be nil when the build has no Vault support.
func Main(args []string, stdout, stderr io.Writer, vault VaultOpener) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	// Before any key or value is in memory: no core dumps, not dumpable, files private.
	if err := linux.Harden(); err != nil {
		fmt.Fprintln(stderr, "agbot:", err)
		return 1
	}
	var err error
	switch args[0] {
	case "init":
		err = runInit(args[1:], os.Stdin, stdout)
	case "serve":
		err = runServe(args[1:], stderr, vault)
	default:
		err = fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
	if errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "agbot:", err)
		return 1
	}
	return 0
}

const usage = `usage:
  agbot init  --data-dir DIR --org ORG --admin USER:PASSWORD|USER:-|USER [--admin-password-file FILE]
              [--db postgres://USER@HOST:PORT/DB [--db-password-file FILE]]
  agbot serve --data-dir DIR [--listen 127.0.0.1:3090] [--secrets-manager embedded|vault]
              [--db postgres://USER@HOST:PORT/DB [--db-password-file FILE]]  (or $PGPASSWORD, $PGPASSFILE)
              [--advertise https://HOST:PORT] [--lease-ttl 6s]  (several agbots on one --db)
              [--max-conns 16384]
              [--secrets-key FILE]  (or $AGBOT_SECRETS_KEY, base64; default DIR/secrets.key)
              [--vault-addr URL --vault-token-file FILE --vault-ca FILE --vault-mount openhorizon --vault-poll 2s]
`

func runInit(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("agbot init", flag.ContinueOnError)
	dir := fs.String("data-dir", "", "state directory (created)")
	org := fs.String("org", "", "first organisation")
	admin := fs.String("admin", "", "USER:PASSWORD of its first admin; USER:- reads the password from stdin")
	pwFile := fs.String("admin-password-file", "", "file holding the admin's password (with --admin USER)")
	var dbf dbFlags
	dbf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := dbf.options()
	if err != nil {
		return err
	}
	user, pw, _ := strings.Cut(*admin, ":")
	if *dir == "" || *org == "" || user == "" || (pw == "" && *pwFile == "") {
		return fmt.Errorf("init needs --data-dir, --org and --admin USER:PASSWORD (or USER:-, or USER with --admin-password-file FILE)")
	}
	pw, err = adminPassword(pw, *pwFile, stdin)
	if err != nil {
		return err
	}
	fp, err := Init(InitOptions{DataDir: *dir, Org: *org, Admin: user, Password: pw, DB: db})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "agbot initialised in %s for org %s (admin %s)\nsigning key fingerprint: %s\n", *dir, *org, user, fp)
	return nil
}

// adminPassword returns the password given on argv, or with "-" the first line of stdin, or
// the content of file: the forms that keep it out of the process list and shell history.
func adminPassword(pw, file string, stdin io.Reader) (string, error) {
	var raw []byte
	var err error
	switch {
	case file != "" && pw != "":
		return "", fmt.Errorf("--admin: give the password after USER: or in --admin-password-file, not both")
	case file != "":
		raw, err = os.ReadFile(file)
	case pw == "-":
		raw, err = bufio.NewReader(io.LimitReader(stdin, 4<<10)).ReadBytes('\n')
		if err == io.EOF {
			err = nil
		}
	default:
		return pw, nil
	}
	if err != nil {
		return "", fmt.Errorf("--admin password: %w", err)
	}
	v := strings.TrimRight(string(raw), "\r\n")
	if v == "" || strings.ContainsAny(v, "\r\n") || len(v) > 1024 {
		return "", fmt.Errorf("--admin password: must be one non-empty line of at most 1024 bytes")
	}
	return v, nil
}

func runServe(args []string, stderr io.Writer, vault VaultOpener) error {
	fs := flag.NewFlagSet("agbot serve", flag.ContinueOnError)
	dir := fs.String("data-dir", "", "state directory made by agbot init")
	listen := fs.String("listen", "127.0.0.1:3090", "HTTPS address")
	kind := fs.String("secrets-manager", "embedded", "embedded or vault")
	maxConns := fs.Int("max-conns", DefaultMaxConns, "most open connections; more wait to be accepted")
	var v vaultFlags
	fs.StringVar(&v.addr, "vault-addr", "", "Vault/OpenBao URL")
	fs.StringVar(&v.tokenFile, "vault-token-file", "", "file holding the Vault token (mode 0600 or stricter)")
	fs.StringVar(&v.mount, "vault-mount", "openhorizon", "KV v2 mount")
	fs.StringVar(&v.ca, "vault-ca", "", "PEM file with the CA that verifies Vault's TLS certificate (default: system roots)")
	fs.DurationVar(&v.poll, "vault-poll", 2*time.Second, "how often to look for changes made directly in Vault")
	metricsListen := fs.String("metrics-listen", "", "plain-HTTP address serving /metrics without authentication (counts by org only; off when empty)")
	maxInFlight := fs.Int("max-in-flight", DefaultMaxInFlight, "long-poll answers written at once whose nodes have not come back with their next request; more wait their turn (bounds a fan-out's memory; 0: no bound)")
	memTrim := fs.Bool("memory-trim", true, "after a burst, once quiet, give the heap it left free and the state file pages it read back to the system (one full GC, at most every 30s)")
	debugPprof := fs.Bool("debug-pprof", false, "also serve Go's CPU and heap profiles at /debug/pprof/ on --metrics-listen (bind it to loopback)")
	metricsNames := fs.Bool("metrics-secret-names", false, "also label rollout metrics with secret manager names")
	offlineAfter := fs.Duration("offline-after", 0, "rollout status: a node not polling for this long is offline (default: a long-poll plus 30s)")
	skey := fs.String("secrets-key", "", "embedded manager's key file, kept apart from the data dir (default DIR/secrets.key; or $"+EnvSecretsKey+")")
	var dbf dbFlags
	dbf.register(fs)
	advertise := fs.String("advertise", "", "with --db: where the fleet's other agbots reach this one, https://HOST:PORT (default: the --listen address)")
	leaseTTL := fs.Duration("lease-ttl", DefaultLeaseTTL, "with --db: how long the fleet's lease outlives its holder's last renewal (takeover within 4/3 of it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := dbf.options()
	if err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("serve needs --data-dir")
	}
	if *leaseTTL < time.Second {
		return fmt.Errorf("--lease-ttl: must be at least 1s")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *debugPprof && *metricsListen == "" {
		return fmt.Errorf("--debug-pprof: needs --metrics-listen")
	}
	if *maxConns < 1 {
		return fmt.Errorf("--max-conns: must be at least 1")
	}
	dumpable, _ := linux.Dumpable()
	log.Info("process hardened", "dumpable", dumpable, "core_limit", 0, "umask", "0077")
	opts := Options{DataDir: *dir, Log: log, MaxConns: *maxConns, SecretsKeyFile: *skey, MetricsSecretNames: *metricsNames,
		OfflineAfter: *offlineAfter, DB: db, Advertise: *advertise, LeaseTTL: *leaseTTL, DebugPprof: *debugPprof, NoMemoryTrim: !*memTrim, MaxInFlight: *maxInFlight}
	if *maxInFlight == 0 {
		opts.MaxInFlight = -1
	} else if *maxInFlight < 0 {
		return fmt.Errorf("--max-in-flight: must be 0 (no bound) or more")
	}
	key, err := keyFromEnv()
	if err != nil {
		return err
	}
	defer clear(key)
	opts.SecretsKey = key
	switch *kind {
	case "embedded":
	case "vault":
		if opts.Secrets, err = v.open(vault, log); err != nil {
			return err
		}
		defer opts.Secrets.Close()
	default:
		return fmt.Errorf("--secrets-manager: %q is not embedded or vault", *kind)
	}
	srv, err := Open(opts)
	if err != nil {
		return err
	}
	return serveUntilSignal(srv, log, *listen, *metricsListen, *kind)
}

// serveUntilSignal serves the API (and the metrics listener when given) until SIGTERM or
// SIGINT, then shuts down within 15 s.
func serveUntilSignal(srv *Server, log *slog.Logger, listen, metricsListen, kind string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	if metricsListen != "" {
		mln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			ln.Close()
			srv.Shutdown(context.Background())
			return fmt.Errorf("--metrics-listen %s: %w", metricsListen, err)
		}
		msrv := srv.MetricsServer()
		defer msrv.Close()
		go func() {
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		log.Info("metrics", "addr", mln.Addr().String())
	}
	log.Info("agbot serving", "addr", ln.Addr().String(), "secrets_manager", kind, "fingerprint", srv.Fingerprint())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		srv.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("agbot shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	log.Info("agbot stopped")
	return err
}

func (f *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "db", "", "PostgreSQL state, postgres://USER@HOST:PORT/DB (no password in it); default: the bbolt file DIR/"+StateFile)
	fs.StringVar(&f.passwordFile, "db-password-file", "", "file holding the database password (mode 0600 or stricter; else $PGPASSWORD or $PGPASSFILE)")
}

type vaultFlags struct {
	addr, tokenFile, mount, ca string
	poll                       time.Duration
}

// open reads the token file (refused unless private to its owner) and opens the manager.
func (v vaultFlags) open(vault VaultOpener, log *slog.Logger) (secrets.Manager, error) {
	if vault == nil {
		return nil, fmt.Errorf("--secrets-manager vault: this build has no Vault support")
	}
	if v.addr == "" || v.tokenFile == "" {
		return nil, fmt.Errorf("--secrets-manager vault needs --vault-addr and --vault-token-file")
	}
	tok, err := readPrivateFile(v.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--vault-token-file: %w", err)
	}
	defer clear(tok)
	return vault(VaultOptions{Addr: v.addr, Token: strings.TrimSpace(string(tok)), Mount: v.mount, CACert: v.ca, Poll: v.poll}, log)
}

// keyFromEnv takes the sealing key from $AGBOT_SECRETS_KEY (base64) and removes the variable,
// so nothing the agbot starts inherits it. Empty when unset.
func keyFromEnv() ([]byte, error) {
	v, ok := os.LookupEnv(EnvSecretsKey)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvSecretsKey)
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil || len(key) != embedded.KeySize {
		return nil, fmt.Errorf("$%s: must be the base64 of %d bytes (head -c %d /dev/urandom | base64)", EnvSecretsKey, embedded.KeySize, embedded.KeySize)
	}
	return key, nil
}

// readPrivateFile reads a credential file, refusing one that group or others may read or
// write, or that is not a regular file (a token readable by others is as good as published).
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: it must not be accessible by group or others (chmod 600)", path, perm)
	}
	return io.ReadAll(io.LimitReader(f, 64<<10))
}
