package ess

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// One http.Server serves every store's socket (Serve on each listener): a socket costs its
// listener, its accept goroutine and the connections it has, not a server, a TLS config, a
// mux and their goroutines each (measured: 11 KiB a store before, see BenchmarkAttachMemory).
// The socket a connection arrived on names its store: the listener wraps each connection
// with its instance, and ConnContext puts that instance in every request's context.

type instKey struct{}

// instListener tags every connection it accepts with its store.
type instListener struct {
	net.Listener
	inst *instance
}

func (l instListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &instConn{Conn: c, inst: l.inst}, nil
}

type instConn struct {
	net.Conn
	inst *instance
}

// connInstance finds the store of a connection the server handles (a *tls.Conn over an
// instConn).
func connInstance(c net.Conn) *instance {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ic, ok := c.(*instConn); ok {
		return ic.inst
	}
	return nil
}

// instanceOf is the store a request arrived for, or nil.
func instanceOf(r *http.Request) *instance {
	inst, _ := r.Context().Value(instKey{}).(*instance)
	return inst
}

func (s *Server) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.handler(),
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          quietLog(s.log),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, instKey{}, connInstance(c))
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if inst := connInstance(c); inst != nil {
				inst.conns.track(c, st)
			}
		},
	}
}

// connSet is a store's open connections and whether each is answering a request, so that
// stopping one store closes its connections only.
type connSet struct {
	mu     sync.Mutex
	active map[net.Conn]bool
}

func (cs *connSet) track(c net.Conn, st http.ConnState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.active == nil {
		cs.active = map[net.Conn]bool{}
	}
	switch st {
	case http.StateNew, http.StateIdle:
		cs.active[c] = false
	case http.StateActive:
		cs.active[c] = true
	case http.StateClosed, http.StateHijacked:
		delete(cs.active, c)
	}
}

// closeIdle closes the connections not answering a request and reports how many are.
func (cs *connSet) closeIdle() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	busy := 0
	for c, active := range cs.active {
		if active {
			busy++
			continue
		}
		c.Close()
		delete(cs.active, c)
	}
	return busy
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for c := range cs.active {
		c.Close()
	}
	cs.active = nil
}

// stop closes the store's socket, lets requests in flight finish (at most shutdownTimeout)
// and closes its connections.
func (inst *instance) stop() {
	if inst.ln == nil {
		return
	}
	inst.ln.Close()
	<-inst.done
	deadline := time.Now().Add(shutdownTimeout)
	for inst.conns.closeIdle() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	inst.conns.closeAll()
}

// serveOn serves the store's listener until it is closed.
func (s *Server) serveOn(inst *instance, ln net.Listener) {
	inst.ln = ln
	inst.done = make(chan struct{})
	go func() {
		defer close(inst.done)
		err := s.srv.ServeTLS(instListener{Listener: ln, inst: inst}, "", "")
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Warn("ess: socket stopped", "store", inst.id, "err", err)
		}
	}()
}
