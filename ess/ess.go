package ess

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

// Paths and values a container sees, as anax sets them.
const (
	AuthTarget   = "/ess-auth/auth.json"
	CertTarget   = "/ess-cert/cert.pem"
	SocketDir    = "/var/run/horizon"
	SocketTarget = SocketDir + "/" + socketName
	Protocol     = "secure-unix"
	socketName   = "essapi.sock"

	DefaultRoot = "/run/anax-agent/ess"
	rootSource  = "anax-ess"
	// A store takes about 12 KiB (three files of a page each, a directory, a socket): room for
	// 5,000 containers. tmpfs uses memory only for what is written.
	rootSize   = 64 << 20
	rootInodes = 65536
)

// Sentinel errors, checked with errors.Is.
var (
	ErrNotFound = errors.New("ess: not found")
	ErrInvalid  = errors.New("ess: invalid")
)

// Options configure Open.
type Options struct {
	Root string // default DefaultRoot; a tmpfs is mounted there unless it already is memory
	// Read returns the current value of secret name of store id. Required.
	Read func(storeID, name string) (protocol.SecretValue, error)
	// Count is told of every API call: op is list, get or ack; result an HTTP status text
	// ("200", "401", ...). Never a secret name. Optional.
	Count  func(op, result string)
	Logger *slog.Logger
}

// Mounts is what a container of a store mounts (host paths) to reach the API.
type Mounts struct {
	AuthFile  string // at AuthTarget, read-only
	CertFile  string // at CertTarget, read-only
	SocketDir string // at SocketDir, read-only (connecting to a socket needs no write access to the mount)
}

// Env is the container environment anax gives a service for the ESS.
func Env() map[string]string {
	return map[string]string{
		"HZN_ESS_API_PROTOCOL": Protocol,
		"HZN_ESS_API_ADDRESS":  SocketTarget,
		"HZN_ESS_API_PORT":     "0",
		"HZN_ESS_AUTH":         AuthTarget,
		"HZN_ESS_CERT":         CertTarget,
	}
}

// Server serves the API of every attached store. Its methods are safe for concurrent use.
type Server struct {
	root  string
	read  func(storeID, name string) (protocol.SecretValue, error)
	count func(op, result string)
	log   *slog.Logger
	ca    *authority

	srv *http.Server // serves every store's socket (serve.go)

	mu     sync.Mutex
	stores map[string]*instance
	closed bool
}

// Open prepares the root (a private tmpfs), loads or makes the CA, and serves again every store
// an earlier run left.
func Open(opts Options) (*Server, error) {
	if opts.Read == nil {
		return nil, fmt.Errorf("%w: Options.Read is required", ErrInvalid)
	}
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Count == nil {
		opts.Count = func(string, string) {}
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, err
	}
	if err := prepareRoot(root); err != nil {
		return nil, err
	}
	ca, err := loadAuthority(filepath.Join(root, ".ca"))
	if err != nil {
		return nil, err
	}
	s := &Server{root: root, read: opts.Read, count: opts.Count, log: opts.Logger, ca: ca, stores: map[string]*instance{}}
	s.srv = s.newHTTPServer()
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// recover serves the stores found under the root.
func (s *Server) recover() error {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || validateID(id) != nil {
			continue
		}
		inst, err := s.load(id)
		if err != nil {
			s.log.Warn("ess: an earlier run's store is unusable; it is removed", "store", id, "err", err)
			s.removeDir(id)
			continue
		}
		s.stores[id] = inst
	}
	return nil
}

// Attach prepares the API for store id, whose container runs as uid:gid, and returns what the
// container mounts. Attaching a store again (same owner) returns the same mounts.
func (s *Server) Attach(id string, uid, gid int) (Mounts, error) {
	if err := validateID(id); err != nil {
		return Mounts{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Mounts{}, errors.New("ess: closed")
	}
	if inst := s.stores[id]; inst != nil {
		if inst.uid == uid && inst.gid == gid {
			return s.mounts(id), nil
		}
		inst.stop()
		delete(s.stores, id)
		s.removeDir(id)
	}
	inst, err := s.create(id, uid, gid)
	if err != nil {
		s.removeDir(id)
		return Mounts{}, fmt.Errorf("ess: store %q: %w", id, err)
	}
	s.stores[id] = inst
	return s.mounts(id), nil
}

// Mounts returns the mounts of an attached store.
func (s *Server) Mounts(id string) (Mounts, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores[id] == nil {
		return Mounts{}, false
	}
	return s.mounts(id), true
}

func (s *Server) mounts(id string) Mounts {
	d := filepath.Join(s.root, id)
	return Mounts{AuthFile: filepath.Join(d, "auth.json"), CertFile: filepath.Join(d, "cert.pem"), SocketDir: filepath.Join(d, "sock")}
}

// Changed marks names of store id as updated: GET /api/v1/secrets lists them until each is
// acknowledged. Call it once the new values are in place, so that a service that sees a name
// reads the new value.
func (s *Server) Changed(id string, names []string) {
	s.mu.Lock()
	inst := s.stores[id]
	s.mu.Unlock()
	if inst == nil || len(names) == 0 {
		return
	}
	if err := inst.mark(names); err != nil {
		s.log.Warn("ess: could not record updated secrets for a restart", "store", id, "err", err)
	}
}

// Detach stops serving store id and removes its credentials (zeroed first); idempotent.
func (s *Server) Detach(id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	s.mu.Lock()
	inst := s.stores[id]
	delete(s.stores, id)
	s.mu.Unlock()
	if inst != nil {
		inst.stop()
	}
	return s.removeDir(id)
}

// Prune detaches every store keep does not want (stores whose secret store is gone).
func (s *Server) Prune(keep func(id string) bool) {
	s.mu.Lock()
	var drop []string
	for id := range s.stores {
		if !keep(id) {
			drop = append(drop, id)
		}
	}
	s.mu.Unlock()
	slices.Sort(drop)
	for _, id := range drop {
		if err := s.Detach(id); err != nil {
			s.log.Warn("ess: remove orphan", "store", id, "err", err)
			continue
		}
		s.log.Info("ess: removed the API of a store that no longer exists", "store", id)
	}
}

// Close stops serving; files stay for the next start (containers keep their mounts).
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	list := make([]*instance, 0, len(s.stores))
	for _, inst := range s.stores {
		list = append(list, inst)
	}
	s.mu.Unlock()
	ctx, cancel := shutdownCtx()
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	for _, inst := range list {
		if inst.ln != nil {
			<-inst.done
		}
	}
	return nil
}

// removeDir zeroes the credentials of store id and removes its directory.
func (s *Server) removeDir(id string) error {
	d := filepath.Join(s.root, id)
	if b, err := os.ReadFile(filepath.Join(d, "auth.json")); err == nil {
		_ = os.WriteFile(filepath.Join(d, "auth.json"), make([]byte, len(b)), 0o400)
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("ess: remove %s: %w", d, err)
	}
	return nil
}

func validateID(id string) error {
	if id == "" || len(id) > 255 || id[0] == '.' {
		return fmt.Errorf("%w: store id %q: 1..255 bytes of [A-Za-z0-9_.-], not starting with '.'", ErrInvalid, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%w: store id %q: byte %d is not one of [A-Za-z0-9_.-]", ErrInvalid, id, i)
		}
	}
	return nil
}

// credentials is the content of auth.json, as anax writes it.
type credentials struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// shutdownTimeout bounds how long Detach and Close wait for requests in flight.
const shutdownTimeout = 2 * time.Second

func shutdownCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), shutdownTimeout)
}
