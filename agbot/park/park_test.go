package park

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

type keptKey struct{}

// server is an HTTPS server on a Lot: /wait parks (the Spot goes to spots, the connection
// keeps "slot-N"), /now answers at once, /kept says what the connection kept.
type server struct {
	lot   *Lot
	srv   *http.Server
	addr  string
	spots chan *Spot
	roots *x509.CertPool
	errs  chan error
}

func newServer(t *testing.T) *server {
	t.Helper()
	cert, roots := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{lot: New(), addr: ln.Addr().String(), spots: make(chan *Spot, 1000), roots: roots, errs: make(chan error, 1000)}
	n := 0
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		n++
		spot, err := s.lot.Park(w, r, "slot")
		if err != nil {
			s.errs <- err
			io.WriteString(w, "not parked")
			return
		}
		s.spots <- spot
	})
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) { // reads the body, then parks
		body, _ := io.ReadAll(r.Body)
		spot, err := s.lot.Park(w, r, "slot:"+string(body))
		if err != nil {
			s.errs <- err
			io.WriteString(w, "not parked")
			return
		}
		s.spots <- spot
	})
	mux.HandleFunc("/kept", func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(keptKey{}).(string)
		io.WriteString(w, "kept="+v)
	})
	s.srv = &http.Server{Handler: mux, ConnContext: func(ctx context.Context, c net.Conn) context.Context {
		v, _ := s.lot.Kept(c).(string)
		return context.WithValue(ctx, keptKey{}, v)
	}, ConnState: s.lot.ConnState}
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	go s.srv.Serve(s.lot.Listen(tln))
	t.Cleanup(func() {
		s.srv.Close()
		s.lot.Wait()
	})
	return s
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "park"},
		DNSNames: []string{"park"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// client is a raw TLS connection: no goroutine of its own, requests written by hand.
type client struct {
	c  *tls.Conn
	br *bufio.Reader
}

func (s *server) dial(t *testing.T) *client {
	t.Helper()
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.roots, ServerName: "park"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{c: c, br: bufio.NewReader(c)}
}

func (c *client) send(t *testing.T, raw string) {
	t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		t.Fatal(err)
	}
}

func (c *client) read(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: park\r\n\r\n" }

func (s *server) spot(t *testing.T) *Spot {
	t.Helper()
	select {
	case sp := <-s.spots:
		return sp
	case err := <-s.errs:
		t.Fatalf("not parked: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("nothing parked")
	}
	return nil
}

// A parked request is answered later; the connection then serves its next request as a
// keep-alive connection with what it kept.
func TestAnswerResumes(t *testing.T) {
	s := newServer(t)
	c := s.dial(t)
	c.send(t, get("/wait"))
	sp := s.spot(t)
	if err := sp.Answer(200, http.Header{"Content-Type": {"application/json"}}, []byte(`{"messages":[]}`)); err != nil {
		t.Fatal(err)
	}
	resp, body := c.read(t)
	if resp.StatusCode != 200 || body != `{"messages":[]}` || resp.Header.Get("Content-Type") != "application/json" || resp.Close {
		t.Fatalf("answer: %d %q %v close=%v", resp.StatusCode, body, resp.Header, resp.Close)
	}
	c.send(t, get("/kept"))
	if _, body := c.read(t); body != "kept=slot" {
		t.Fatalf("next request on the connection: %q, want kept=slot", body)
	}
	if err := sp.Answer(200, nil, nil); err == nil {
		t.Error("a second Answer was accepted")
	}
}

// A request whose body the handler read to its end parks as one without a body does (a
// node's reply that is also its next poll), framed by length or chunked, and the connection
// then serves the next request with what it kept. A body left unread is not parked
// (TestNotParkable).
func TestParkAfterBodyRead(t *testing.T) {
	cases := []struct{ name, req string }{
		{"length", "POST /read HTTP/1.1\r\nHost: park\r\nContent-Length: 2\r\n\r\nhi"},
		{"chunked", "POST /read HTTP/1.1\r\nHost: park\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			c := s.dial(t)
			c.send(t, tc.req)
			sp := s.spot(t)
			if err := sp.Answer(200, nil, []byte("answered")); err != nil {
				t.Fatal(err)
			}
			if resp, body := c.read(t); resp.StatusCode != 200 || body != "answered" || resp.Close {
				t.Fatalf("answer: %d %q close=%v", resp.StatusCode, body, resp.Close)
			}
			c.send(t, get("/kept"))
			if _, body := c.read(t); body != "kept=slot:hi" {
				t.Fatalf("next request on the connection: %q, want kept=slot:hi", body)
			}
		})
	}
}

// Parked connections hold no goroutine: 200 of them leave the count where it was.
func TestParkedHoldNoGoroutine(t *testing.T) {
	s := newServer(t)
	const n = 200
	before := runtime.NumGoroutine()
	var spots []*Spot
	for range n {
		c := s.dial(t)
		c.send(t, get("/wait"))
		spots = append(spots, s.spot(t))
	}
	time.Sleep(100 * time.Millisecond) // let the handlers' goroutines end
	if grew := runtime.NumGoroutine() - before; grew > n/10 {
		t.Errorf("%d parked connections added %d goroutines", n, grew)
	}
	if got := s.lot.Parked(); got != n {
		t.Errorf("Parked() = %d, want %d", got, n)
	}
	for _, sp := range spots {
		sp.Answer(204, nil, nil)
	}
	if got := s.lot.Parked(); got != 0 {
		t.Errorf("Parked() = %d after every answer, want 0", got)
	}
}

// A pipelined request is never lost or reordered: when net/http read it ahead (both
// requests in one TLS record, as here), its bytes can not travel with the connection, so the
// answer says Connection: close and the connection closes after it; otherwise the next
// request is served after the answer.
func TestPipelined(t *testing.T) {
	s := newServer(t)
	c := s.dial(t)
	c.send(t, get("/wait")+get("/kept"))
	sp := s.spot(t)
	sp.Answer(200, nil, []byte("x"))
	resp, body := c.read(t)
	if body != "x" || resp.Close != sp.close {
		t.Fatalf("answer: close=%v (read ahead %v) body %q", resp.Close, sp.close, body)
	}
	if !sp.close {
		if _, body := c.read(t); body != "kept=slot" {
			t.Fatalf("the pipelined request: %q", body)
		}
		return
	}
	if n, err := c.br.ReadByte(); err == nil {
		t.Fatalf("read %q after a closing answer", n)
	}
}

// A connection answered after the server closed is closed, not left open, and Wait
// returns once every answer is written.
func TestAnswerAfterClose(t *testing.T) {
	s := newServer(t)
	c := s.dial(t)
	c.send(t, get("/wait"))
	sp := s.spot(t)
	s.srv.Close()
	sp.Answer(200, nil, []byte("bye"))
	s.lot.Wait()
	if _, body := c.read(t); body != "bye" {
		t.Fatalf("answer %q", body)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("the connection stayed open after the server closed")
	}
}

// Requests whose connection can not be kept are not parked.
func TestNotParkable(t *testing.T) {
	cases := []struct{ name, req string }{
		{"HTTP/1.0", "GET /wait HTTP/1.0\r\nHost: park\r\n\r\n"},
		{"Connection: close", "GET /wait HTTP/1.1\r\nHost: park\r\nConnection: close\r\n\r\n"},
		{"a body", "GET /wait HTTP/1.1\r\nHost: park\r\nContent-Length: 2\r\n\r\nhi"},
		{"a chunked body", "GET /wait HTTP/1.1\r\nHost: park\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			c := s.dial(t)
			c.send(t, tc.req)
			if _, body := c.read(t); body != "not parked" {
				t.Fatalf("body %q", body)
			}
			select {
			case err := <-s.errs:
				if !errors.Is(err, ErrNotParkable) {
					t.Fatalf("err %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no error")
			}
		})
	}
}

// A Lot no server listens on, or one closed, parks nothing: nobody would serve the
// connection again (and a server's Shutdown waits for the answers of those parked before).
func TestNotListening(t *testing.T) {
	closed := New()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Listen(ln)
	closed.Close()
	cases := []struct {
		name string
		lot  *Lot
		why  string
	}{{"never listening", New(), "can not be parked"}, {"closed", closed, "closing"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			_, err := tc.lot.Park(w, httptest.NewRequest("GET", "/wait", nil), nil)
			if !errors.Is(err, ErrNotParkable) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("Park = %v, want ErrNotParkable saying %q", err, tc.why)
			}
		})
	}
}

// With SetMaxInFlight(2), five answers given at once are written two at a time: the third
// when an answered connection finished its next request, the rest when the Lot closes.
func TestMaxInFlight(t *testing.T) {
	s := newServer(t)
	s.lot.SetMaxInFlight(2)
	var cs []*client
	var spots []*Spot
	for range 5 {
		c := s.dial(t)
		c.send(t, get("/wait"))
		cs = append(cs, c)
		spots = append(spots, s.spot(t))
	}
	for i, sp := range spots {
		if err := sp.Answer(200, nil, []byte{'0' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(c *client) bool {
		c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		defer c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := c.br.Peek(1)
		return err == nil
	}
	for i, c := range cs {
		if got, want := answered(c), i < 2; got != want {
			t.Fatalf("client %d answered: %v, want %v (two in flight)", i, got, want)
		}
	}
	if f, w := s.lot.InFlight(), s.lot.Waiting(); f != 2 || w != 3 {
		t.Fatalf("InFlight, Waiting = %d, %d, want 2, 3", f, w)
	}
	for i := range 2 {
		if _, body := cs[i].read(t); body != string(rune('0'+i)) {
			t.Fatalf("client %d: %q", i, body)
		}
	}
	cs[0].send(t, get("/kept")) // its next request: it leaves the flight
	if _, body := cs[0].read(t); body != "kept=slot" {
		t.Fatalf("next request: %q", body)
	}
	if _, body := cs[2].read(t); body != "2" {
		t.Fatalf("client 2, after a place freed: %q", body)
	}
	if answered(cs[3]) {
		t.Fatal("client 3 answered with two in flight")
	}
	s.srv.Close()
	s.lot.Wait()
	for i := 3; i < 5; i++ {
		if _, body := cs[i].read(t); body != string(rune('0'+i)) {
			t.Fatalf("client %d after close: %q", i, body)
		}
	}
}

// An answered connection that never sends its next request holds its place in flight for
// FlightTimeout only: the answer waiting behind it is written then.
func TestFlightTimeout(t *testing.T) {
	s := newServer(t)
	s.lot.SetMaxInFlight(1)
	a, b := s.dial(t), s.dial(t)
	a.send(t, get("/wait"))
	spA := s.spot(t)
	b.send(t, get("/wait"))
	spB := s.spot(t)
	spA.Answer(200, nil, []byte("a"))
	spB.Answer(200, nil, []byte("b"))
	if _, body := a.read(t); body != "a" {
		t.Fatalf("first answer %q", body)
	}
	start := time.Now()
	if _, body := b.read(t); body != "b" { // a stays silent
		t.Fatalf("second answer %q", body)
	}
	if waited := time.Since(start); waited < FlightTimeout/2 {
		t.Fatalf("the second answer came after %v, before the first connection's place expired", waited)
	}
}
