package agbot

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/secrets"
)

// VaultOpener opens the Vault/OpenBao secrets manager; cmd/agbot sets it so that this
// package does not force the Vault client on every importer.
type VaultOpener func(addr, token, mount string, poll time.Duration, log *slog.Logger) (secrets.Manager, error)

// Main runs `agbot init|serve` with args (without the program name) and returns the exit
// code. vault may be nil when the build has no Vault support.
func Main(args []string, stdout, stderr io.Writer, vault VaultOpener) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
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
  agbot serve --data-dir DIR [--listen 127.0.0.1:3090] [--secrets-manager embedded|vault]
              [--max-conns 16384]
              [--vault-addr URL --vault-token-file FILE --vault-mount openhorizon --vault-poll 2s]
`

func runInit(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("agbot init", flag.ContinueOnError)
	dir := fs.String("data-dir", "", "state directory (created)")
	org := fs.String("org", "", "first organisation")
	admin := fs.String("admin", "", "USER:PASSWORD of its first admin; USER:- reads the password from stdin")
	pwFile := fs.String("admin-password-file", "", "file holding the admin's password (with --admin USER)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	user, pw, _ := strings.Cut(*admin, ":")
	if *dir == "" || *org == "" || user == "" || (pw == "" && *pwFile == "") {
		return fmt.Errorf("init needs --data-dir, --org and --admin USER:PASSWORD (or USER:-, or USER with --admin-password-file FILE)")
	}
	pw, err := adminPassword(pw, *pwFile, stdin)
	if err != nil {
		return err
	}
	fp, err := Init(InitOptions{DataDir: *dir, Org: *org, Admin: user, Password: pw})
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
	vaddr := fs.String("vault-addr", "", "Vault/OpenBao URL")
	vtoken := fs.String("vault-token-file", "", "file holding the Vault token")
	vmount := fs.String("vault-mount", "openhorizon", "KV v2 mount")
	vpoll := fs.Duration("vault-poll", 2*time.Second, "how often to look for changes made directly in Vault")
	maxConns := fs.Int("max-conns", DefaultMaxConns, "most open connections; more wait to be accepted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("serve needs --data-dir")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if *maxConns < 1 {
		return fmt.Errorf("--max-conns: must be at least 1")
	}
	opts := Options{DataDir: *dir, Log: log, MaxConns: *maxConns}
	switch *kind {
	case "embedded":
	case "vault":
		if vault == nil {
			return fmt.Errorf("--secrets-manager vault: this build has no Vault support")
		}
		if *vaddr == "" || *vtoken == "" {
			return fmt.Errorf("--secrets-manager vault needs --vault-addr and --vault-token-file")
		}
		tok, err := os.ReadFile(*vtoken)
		if err != nil {
			return fmt.Errorf("--vault-token-file: %w", err)
		}
		if opts.Secrets, err = vault(*vaddr, strings.TrimSpace(string(tok)), *vmount, *vpoll, log); err != nil {
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
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	log.Info("agbot serving", "addr", ln.Addr().String(), "secrets_manager", *kind, "fingerprint", srv.Engine.PublicKeys().Fingerprint())
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
