// Package park holds idle HTTP/1.1 long-polls without a goroutine or buffers of their own.
//
// net/http serves a connection with a goroutine that runs the handler and, while a handler
// runs, a second one reading ahead, each with its stack, plus a 4 KiB read and a 4 KiB write
// buffer and the request's state: some 60 KiB for a node that is only waiting for its next
// message. A handler that has nothing to answer yet parks its connection instead: Park takes
// it from net/http (Hijack), keeping only the TLS connection, which the kernel's poller
// watches. Spot.Answer later writes the whole response in one write and hands the
// connection back to the http.Server through the Lot's Listener, where it is served as a
// keep-alive connection again (the TLS session stays: no new handshake).
//
// A fan-out answers thousands of parked polls at once, and each answered connection then
// holds a serving goroutine, buffers and a request's state again until it parks anew. With
// SetMaxInFlight the Lot bounds how many answered connections are in that flight (from the
// answer until the server saw the connection finish a request, park again or close: the
// server's ConnState reports it to the Lot); further answers wait their turn, first come
// first written, which bounds a fan-out's memory and barely its time.
//
// A parked connection is not read while it waits: a client that sends before its answer
// (pipelining) finds its bytes read after the answer, in order, or its connection closed
// after the answer when net/http had already read them. Only HTTP/1.x connections park.
//
// Imported by agbot/api (the long-poll) and agbot (the listener); it imports nothing of the
// module.
package park

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotParkable says a request can not be parked (HTTP/2, a connection the client closes
// after the answer, a request with a body, or a writer that can not be hijacked): serve it
// in the handler.
var ErrNotParkable = errors.New("park: connection can not be parked")

// WriteTimeout bounds writing an answer to a parked connection.
const WriteTimeout = 10 * time.Second

// Lot parks connections and, as the net.Listener its Listen returns for an http.Server,
// yields the connections its Spots hand back besides the new ones. Its zero value is not
// usable: see New.
type Lot struct {
	inner     net.Listener
	accepted  chan accepted
	resumed   chan net.Conn
	done      chan struct{}
	closeOnce sync.Once

	closing sync.RWMutex // Parks (read) against Close (write)

	mu   sync.Mutex
	kept map[net.Conn]any // a resumed connection's value, until its ConnContext takes it

	answers   sync.WaitGroup // answers being written
	parked    atomic.Int64   // Spots not answered yet
	listening atomic.Bool    // Listen was called: a server takes connections back

	flight struct {
		sync.Mutex
		max     int                      // 0: no bound
		n       int                      // answers being written or connections in flight
		air     map[net.Conn]*time.Timer // connections handed back, in flight, and their FlightTimeout
		waiting []*Spot                  // answered, waiting for a place in flight
		closed  bool
	}
}

type accepted struct {
	c   net.Conn
	err error
}

// New returns a Lot; a server serves it after Listen.
func New() *Lot {
	l := &Lot{accepted: make(chan accepted), resumed: make(chan net.Conn, 256),
		done: make(chan struct{}), kept: map[net.Conn]any{}}
	l.flight.air = map[net.Conn]*time.Timer{}
	return l
}

// SetMaxInFlight bounds the answered connections in flight (n <= 0: no bound, the default).
// Call it before serving.
func (l *Lot) SetMaxInFlight(n int) {
	l.flight.Lock()
	defer l.flight.Unlock()
	l.flight.max = max(n, 0)
}

// ConnState is for the http.Server's ConnState: a connection handed back that finished a
// request (idle), parked again (hijacked) or closed leaves the flight, and the next waiting
// answer is written.
func (l *Lot) ConnState(c net.Conn, st http.ConnState) {
	if st != http.StateIdle && st != http.StateHijacked && st != http.StateClosed {
		return
	}
	l.flight.Lock()
	t := l.flight.air[c]
	if t == nil {
		l.flight.Unlock()
		return
	}
	delete(l.flight.air, c)
	l.flight.Unlock()
	t.Stop()
	l.land()
}

// board takes a place in flight for s, or queues s: it reports whether s may be written now.
func (l *Lot) board(s *Spot) bool {
	l.flight.Lock()
	defer l.flight.Unlock()
	if f := &l.flight; f.max == 0 || f.n < f.max || f.closed {
		f.n++
		return true
	}
	l.flight.waiting = append(l.flight.waiting, s)
	return false
}

// land gives a place in flight up and writes the next waiting answer in it.
func (l *Lot) land() {
	l.flight.Lock()
	f := &l.flight
	f.n--
	var next *Spot
	if len(f.waiting) > 0 && (f.max == 0 || f.n < f.max || f.closed) {
		next = f.waiting[0]
		f.waiting[0] = nil
		if f.waiting = f.waiting[1:]; len(f.waiting) == 0 {
			f.waiting = nil
		}
		f.n++
	}
	l.flight.Unlock()
	if next != nil {
		go next.deliver()
	}
}

// FlightTimeout is how long an answered connection keeps its place in flight at most: a
// client that does not come back with its next request (or a crowd of them holding every
// place) delays the answers waiting behind it by that much, not until its connection's
// read timeout.
const FlightTimeout = 2 * time.Second

// fly marks c in flight until ConnState says otherwise, or FlightTimeout passed.
func (l *Lot) fly(c net.Conn) {
	l.flight.Lock()
	defer l.flight.Unlock()
	var t *time.Timer
	t = time.AfterFunc(FlightTimeout, func() {
		l.flight.Lock()
		if l.flight.air[c] != t {
			l.flight.Unlock()
			return // landed, or flying again since
		}
		delete(l.flight.air, c)
		l.flight.Unlock()
		l.land()
	})
	l.flight.air[c] = t
}

// Listen makes the Lot accept from inner (the TLS listener: what inner accepts is what the
// server serves, and what parks) and returns it as the server's listener. Call it once;
// Close closes inner.
func (l *Lot) Listen(inner net.Listener) net.Listener {
	l.inner = inner
	l.listening.Store(true)
	go l.acceptLoop()
	return l
}

func (l *Lot) acceptLoop() {
	for {
		c, err := l.inner.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new or resumed connection.
func (l *Lot) Accept() (net.Conn, error) {
	select {
	case c := <-l.resumed:
		return c, nil
	case a := <-l.accepted:
		return a.c, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; connections resumed after it are closed.
func (l *Lot) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		l.closing.Lock() // no Park after this: Wait may count the answers
		close(l.done)
		l.closing.Unlock()
		l.flight.Lock()
		l.flight.closed = true // every waiting answer is written now
		waiting := l.flight.waiting
		l.flight.waiting = nil
		l.flight.n += len(waiting)
		l.flight.Unlock()
		for _, s := range waiting {
			go s.deliver()
		}
		if err = nil; l.inner != nil {
			err = l.inner.Close()
		}
	})
	return err
}

// InFlight is how many answers are being written or their connections in flight now.
func (l *Lot) InFlight() int {
	l.flight.Lock()
	defer l.flight.Unlock()
	return l.flight.n
}

// Waiting is how many answers wait for a place in flight now.
func (l *Lot) Waiting() int {
	l.flight.Lock()
	defer l.flight.Unlock()
	return len(l.flight.waiting)
}

// Parked is how many connections wait parked now.
func (l *Lot) Parked() int { return int(l.parked.Load()) }

// Addr is the inner listener's address.
func (l *Lot) Addr() net.Addr { return l.inner.Addr() }

// Wait waits until every answer being written is written (each within WriteTimeout), then,
// when the Lot is closed, closes the connections handed back that the server did not take.
// For a server's Shutdown, after the http.Server's.
func (l *Lot) Wait() {
	l.answers.Wait()
	select {
	case <-l.done:
	default:
		return
	}
	for {
		select {
		case c := <-l.resumed:
			l.Kept(c)
			c.Close()
		default:
			return
		}
	}
}

// Kept returns (once) the value parked with connection c, nil for a new connection: for an
// http.Server's ConnContext, so state kept per connection outlives its parking.
func (l *Lot) Kept(c net.Conn) any {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.kept[c]
	if ok {
		delete(l.kept, c)
	}
	return v
}

func (l *Lot) resume(c net.Conn, keep any) {
	if keep != nil {
		l.mu.Lock()
		l.kept[c] = keep
		l.mu.Unlock()
	}
	select {
	case l.resumed <- c:
	case <-l.done:
		l.Kept(c)
		c.Close()
	}
}

// Spot is a parked connection waiting for its answer.
type Spot struct {
	lot   *Lot
	conn  net.Conn
	keep  any
	close bool // bytes of a next request were read already: answer, then close
	once  sync.Once
	resp  []byte // the answer, while it waits for a place in flight
}

// Parkable reports whether r's connection can be parked: HTTP/1.x, kept alive after the
// answer, and no body left to read (bytes net/http has not read would be taken for the next
// request). A handler that read the body to its end may park; reading it is the handler's
// part, and a body with bytes left is not parkable (Parkable may take one of them to see).
func Parkable(r *http.Request) bool {
	return r.ProtoMajor == 1 && !r.Close && (r.ContentLength == 0 || drained(r.Body))
}

func drained(body io.Reader) bool {
	if body == nil {
		return true
	}
	var b [1]byte
	n, err := body.Read(b[:])
	return n == 0 && errors.Is(err, io.EOF)
}

// Park takes the request's connection from net/http. After it returns nil the handler must
// return without touching w, and the caller must call Answer exactly once. keep travels
// with the connection and comes back from Kept when the server serves it again.
func (l *Lot) Park(w http.ResponseWriter, r *http.Request, keep any) (*Spot, error) {
	if !Parkable(r) || !l.listening.Load() {
		return nil, ErrNotParkable // not listening: nothing would serve the connection again
	}
	l.closing.RLock()
	defer l.closing.RUnlock()
	select {
	case <-l.done:
		return nil, fmt.Errorf("%w: the server is closing", ErrNotParkable)
	default:
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotParkable, err)
	}
	s := &Spot{lot: l, conn: conn, keep: keep, close: rw.Reader.Buffered() > 0}
	l.answers.Add(1)
	l.parked.Add(1)
	return s, nil
}

// Answer writes a response with body (Content-Length framing) and headers h, then hands the
// connection back to the server, or closes it when it can not be served again. It returns
// the write's error (the connection is closed then). With SetMaxInFlight, an answer that
// finds the flight full waits for a place and is written then; Answer returns nil at once.
func (s *Spot) Answer(code int, h http.Header, body []byte) error {
	err := errors.New("park: answered twice")
	s.once.Do(func() {
		s.lot.parked.Add(-1)
		if s.resp, err = response(code, h, body, s.close); err != nil {
			s.lot.answers.Done()
			s.conn.Close()
			return
		}
		if s.lot.board(s) {
			err = s.deliver()
		}
	})
	return err
}

// deliver writes the answer in the place in flight s holds, and hands the connection back
// (it stays in flight) or closes it (the place is given up).
func (s *Spot) deliver() error {
	defer s.lot.answers.Done()
	err := s.write(s.resp)
	s.resp = nil
	if err != nil || s.close {
		s.conn.Close()
		s.lot.land()
		return err
	}
	s.lot.fly(s.conn)
	s.lot.resume(s.conn, s.keep)
	return nil
}

// framing are the headers write sets itself.
var framing = map[string]bool{"Date": true, "Content-Length": true, "Connection": true}

// response is the whole HTTP/1.1 response.
func response(code int, h http.Header, body []byte, close bool) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(256 + len(body))
	line := append(make([]byte, 0, 64), "HTTP/1.1 "...)
	line = strconv.AppendInt(line, int64(code), 10)
	line = append(append(append(line, ' '), http.StatusText(code)...), "\r\nDate: "...)
	line = time.Now().UTC().AppendFormat(line, http.TimeFormat)
	line = strconv.AppendInt(append(line, "\r\nContent-Length: "...), int64(len(body)), 10)
	if close {
		line = append(line, "\r\nConnection: close"...)
	}
	b.Write(append(line, "\r\n"...))
	if err := h.WriteSubset(&b, framing); err != nil {
		return nil, err
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes(), nil
}

func (s *Spot) write(resp []byte) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(WriteTimeout)); err != nil {
		return err
	}
	if _, err := s.conn.Write(resp); err != nil {
		return err
	}
	return s.conn.SetWriteDeadline(time.Time{})
}
