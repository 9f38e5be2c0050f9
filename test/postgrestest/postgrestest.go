// Package postgrestest starts a real PostgreSQL server for tests (design §8): Debian's
// postgresql package (initdb and postgres under /usr/lib/postgresql/<v>/bin, or
// $PG_BIN), a cluster in a temporary directory, listening on a free loopback port only, run
// as an unprivileged user (postgres refuses root): the "postgres" user the package creates,
// else "nobody". Password authentication (scram-sha-256) for the user "agbot".
//
// Without PostgreSQL a test is skipped with the reason, except with CI=true, where it fails
// (test/prepare.sh postgres installs it). Only tests import this package.
package postgrestest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/test/syncbuf"
	"github.com/edge-secrets/anax-agent/test/testenv"
	"github.com/jackc/pgx/v5"
)

// User is the database superuser the cluster is made with.
const User = "agbot"

// Server is a running PostgreSQL cluster.
type Server struct {
	Addr     string // 127.0.0.1:<port>
	Password string // User's password

	tb  testing.TB
	bin string
	dir string // owned by the server's user: data/, the password file, the log
	uid uint32
	gid uint32
	dbs atomic.Int64

	mu   sync.Mutex
	cmd  *exec.Cmd // the last command prepared
	proc *os.Process
	done chan struct{} // closed when proc has exited
}

// Start runs a fresh cluster for the test and removes it at cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := BinDir(tb)
	uid, gid, err := unprivileged()
	if err != nil {
		testenv.Skip(tb, "no PostgreSQL: "+err.Error())
	}
	var b [16]byte
	rand.Read(b[:])
	s := &Server{tb: tb, bin: bin, uid: uid, gid: gid, Password: "pw-" + hex.EncodeToString(b[:])}
	if s.dir, err = os.MkdirTemp("", "anax-pgtest-"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Stop(); os.RemoveAll(s.dir) })
	if err := os.Chown(s.dir, int(uid), int(gid)); err != nil {
		tb.Fatal(err)
	}
	if err := s.initdb(); err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	for attempt := 0; ; attempt++ { // the free port may be taken before postgres binds it
		if err = s.start(); err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		tb.Fatalf("postgres: %v", err)
	}
	return s
}

// NewDatabase creates an empty database and returns its URL (no password in it).
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d", s.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres")+"&password="+s.Password)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	return s.URL(name)
}

// URL is the URL of database db, without the password.
func (s *Server) URL(db string) string {
	return "postgres://" + User + "@" + s.Addr + "/" + db + "?sslmode=disable"
}

// PasswordFile writes the password to a 0600 file in dir and returns its path.
func (s *Server) PasswordFile(tb testing.TB, dir string) string {
	tb.Helper()
	p := filepath.Join(dir, "db-password")
	if err := os.WriteFile(p, []byte(s.Password+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

func (s *Server) initdb() error {
	pw := filepath.Join(s.dir, "pw")
	if err := os.WriteFile(pw, []byte(s.Password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chown(pw, int(s.uid), int(s.gid)); err != nil {
		return err
	}
	_, err := s.run("initdb", "-D", filepath.Join(s.dir, "data"), "-U", User, "--pwfile", pw,
		"--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync")
	os.Remove(pw)
	return err
}

func (s *Server) start() error {
	port, err := testenv.FreePort()
	if err != nil {
		return err
	}
	s.Addr = "127.0.0.1:" + port
	// The postmaster itself is the child (not a daemon pg_ctl leaves behind), so it dies with the test
	// binary. Loopback only, no unix socket, no fsync (test data), small footprint.
	cmd := s.command("postgres", "-D", filepath.Join(s.dir, "data"), "-c", "listen_addresses=127.0.0.1",
		"-c", "port="+port, "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB")
	dieWithParent(s.cmd)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	if err := s.waitReady(done); err != nil {
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w\n--- postgres log (last lines) ---\n%s", err, out.Tail(20))
	}
	s.proc, s.done = cmd.Process, done
	return nil
}

// waitReady connects until the server answers (or exits, or a minute passes).
func (s *Server) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres")+"&password="+s.Password)
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			return errors.New("postgres exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast shutdown: SIGINT; SIGKILL after 10 s). Idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.proc.Kill()
		<-s.done
	}
	s.proc = nil
}

// command prepares one of the server's programs to run as the unprivileged user, in s.dir.
func (s *Server) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.uid, Gid: s.gid}
	}
	s.cmd = cmd
	return cmd
}

// run runs one of the server's programs to its end.
func (s *Server) run(prog string, args ...string) (string, error) {
	cmd := s.command(prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", prog, err, syncbuf.LastLines(out.String(), 10))
	}
	return out.String(), nil
}

// unprivileged is the user the server runs as: the caller itself when not root, else the
// package's "postgres" user, else "nobody".
func unprivileged() (uid, gid uint32, err error) {
	if os.Geteuid() != 0 {
		return uint32(os.Geteuid()), uint32(os.Getegid()), nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		return uint32(uid), uint32(gid), nil
	}
	return 0, 0, errors.New("running as root and neither a postgres nor a nobody user exists to run the server as")
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// BinDir returns the directory holding initdb and postgres: $PG_BIN, or the newest
// /usr/lib/postgresql/<v>/bin. Without one it skips the test, or fails it when CI=true.
func BinDir(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() { binDir, binErr = findBinDir() })
	if binErr != nil {
		testenv.Skip(tb, "no PostgreSQL: "+binErr.Error()+"; run test/prepare.sh postgres or set PG_BIN")
	}
	return binDir
}

func findBinDir() (string, error) {
	dirs := []string{}
	if d := os.Getenv("PG_BIN"); d != "" {
		dirs = append(dirs, d)
	} else {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
		dirs = append(dirs, found...)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no PostgreSQL server (initdb) found")
}

func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}
