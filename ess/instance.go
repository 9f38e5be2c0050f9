package ess

import (
	"encoding/json"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// maxConns bounds the connections one container may hold open on its socket.
const maxConns = 16

// instance is the API of one store: its socket, credentials and updated names.
type instance struct {
	id       string
	uid, gid int
	creds    credentials
	dir      string
	ln       net.Listener  // its socket (limited to maxConns connections)
	done     chan struct{} // closed when the server stopped serving ln
	conns    connSet

	mu      sync.Mutex
	updated map[string]bool
}

// create writes the store's files and starts serving.
func (s *Server) create(id string, uid, gid int) (*instance, error) {
	d := filepath.Join(s.root, id)
	if err := os.Mkdir(d, 0o700); err != nil {
		return nil, err
	}
	inst := &instance{id: id, uid: uid, gid: gid, dir: d, creds: credentials{ID: id, Token: newToken()}, updated: map[string]bool{}}
	raw, err := json.Marshal(inst.creds)
	if err != nil {
		return nil, err
	}
	if err := writeOwned(filepath.Join(d, "auth.json"), raw, 0o400, uid, gid); err != nil {
		return nil, err
	}
	if err := s.serve(inst); err != nil {
		return nil, err
	}
	return inst, nil
}

// load serves a store an earlier run left: its credentials and updated names are on the root.
func (s *Server) load(id string) (*instance, error) {
	d := filepath.Join(s.root, id)
	auth := filepath.Join(d, "auth.json")
	raw, err := os.ReadFile(auth)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(auth, &st); err != nil {
		return nil, err
	}
	inst := &instance{id: id, uid: int(st.Uid), gid: int(st.Gid), dir: d, updated: map[string]bool{}}
	if err := json.Unmarshal(raw, &inst.creds); err != nil || inst.creds.ID != id || len(inst.creds.Token) < 32 {
		return nil, errors.New("auth.json is not this store's credentials")
	}
	if b, err := os.ReadFile(filepath.Join(d, "updated.json")); err == nil {
		var names []string
		if json.Unmarshal(b, &names) == nil {
			for _, n := range names {
				inst.updated[n] = true
			}
		}
	}
	if err := s.serve(inst); err != nil {
		return nil, err
	}
	return inst, nil
}

// serve (re)writes the CA certificate, (re)creates the socket owned by the container's user and
// serves HTTPS on it.
func (s *Server) serve(inst *instance) error {
	// Rewritten only when it differs: a running container's bind mount keeps the old file.
	cert := filepath.Join(inst.dir, "cert.pem")
	if old, err := os.ReadFile(cert); err != nil || string(old) != string(s.ca.caPEM) {
		if err := writeOwned(cert, s.ca.caPEM, 0o444, 0, 0); err != nil {
			return err
		}
	}
	sockDir := filepath.Join(inst.dir, "sock")
	if err := os.Mkdir(sockDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	ln, err := listenIn(sockDir, inst.uid, inst.gid)
	if err != nil {
		return err
	}
	// The directory is the container's /var/run/horizon: its user may search it, nobody write.
	if err := os.Chown(sockDir, inst.uid, inst.gid); err != nil {
		ln.Close()
		return err
	}
	if err := os.Chmod(sockDir, 0o500); err != nil {
		ln.Close()
		return err
	}
	s.serveOn(inst, netutil.LimitListener(ln, maxConns))
	return nil
}

// mark adds names to the updated set and records it for a restart.
func (inst *instance) mark(names []string) error {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	for _, n := range names {
		inst.updated[n] = true
	}
	return inst.persist()
}

// ack removes name from the updated set; false when it was not there.
func (inst *instance) ack(name string) (bool, error) {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if !inst.updated[name] {
		return false, nil
	}
	delete(inst.updated, name)
	return true, inst.persist()
}

func (inst *instance) list() []string {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	return slices.Sorted(maps.Keys(inst.updated))
}

// persist writes the updated names (no value) root-only. Call with inst.mu held.
func (inst *instance) persist() error {
	names := make([]string, 0, len(inst.updated))
	for n := range inst.updated {
		names = append(names, n)
	}
	slices.Sort(names)
	raw, err := json.Marshal(names)
	if err != nil {
		return err
	}
	tmp := filepath.Join(inst.dir, "updated.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(inst.dir, "updated.json"))
}

// writeOwned writes path (replacing it) with mode, owned by uid:gid, before anyone can use it.
func writeOwned(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := path + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Chown(uid, gid), f.Chmod(mode), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
