package reliability

import (
	"net"
	"sync"
	"testing"
)

// faultProxy relays loopback TCP from agents to the agbot and plays a bad link: Drop closes
// every connection and refuses new ones (the agbot away); Stall keeps connections open but
// forwards nothing either way and accepts new ones that go nowhere (a black hole, the harder
// case: the agent must notice by its own time-outs); Pass restores the link.
type faultProxy struct {
	Addr   string
	target string
	ln     net.Listener

	mu    sync.Mutex
	mode  string // "pass", "drop" or "stall"
	conns map[net.Conn]bool
	wake  chan struct{} // closed when the mode goes back to pass
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{Addr: ln.Addr().String(), target: target, ln: ln, mode: "pass", conns: map[net.Conn]bool{}, wake: make(chan struct{})}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		if mode == "drop" {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.relay(c)
	}
}

func (p *faultProxy) relay(c net.Conn) {
	defer p.forget(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = true
	p.mu.Unlock()
	defer p.forget(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				// While stalled, hold the bytes until the link passes again (or is dropped).
				for {
					p.mu.Lock()
					mode, wake := p.mode, p.wake
					p.mu.Unlock()
					if mode != "stall" {
						break
					}
					<-wake
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}

func (p *faultProxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *faultProxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == mode {
		return
	}
	old := p.mode
	p.mode = mode
	if mode == "drop" {
		for c := range p.conns {
			c.Close()
		}
	}
	if old == "stall" {
		close(p.wake)
		p.wake = make(chan struct{})
	}
}

// Drop cuts the link: every connection closed, new ones refused.
func (p *faultProxy) Drop() { p.set("drop") }

// Stall freezes the link: connections stay open and carry nothing.
func (p *faultProxy) Stall() { p.set("stall") }

// Pass restores the link.
func (p *faultProxy) Pass() { p.set("pass") }

func (p *faultProxy) close() {
	p.ln.Close()
	p.set("drop")
}
