package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/edge-secrets/anax-agent/protocol"
)

// TestCarry: the loop takes a reply offered while it waits, only one, none once closed; it
// stops waiting when nothing is being handled, or after the linger.
func TestCarry(t *testing.T) {
	r := outgoingReply{env: []byte("env")}
	always := func() bool { return true }
	t.Run("offered while waiting", func(t *testing.T) {
		c := newCarry()
		go func() {
			for !c.offer(r) {
				time.Sleep(time.Millisecond)
			}
		}()
		if got, ok := c.take(context.Background(), time.Minute, always); !ok || string(got.env) != "env" {
			t.Fatalf("take = %q %v, want the offered reply", got.env, ok)
		}
	})
	t.Run("one reply per wait", func(t *testing.T) {
		c := newCarry()
		c.mu.Lock()
		c.open = true
		c.mu.Unlock()
		if !c.offer(r) {
			t.Fatal("first offer refused while open")
		}
		if c.offer(r) {
			t.Fatal("second offer taken: only one reply carries a poll")
		}
		if _, ok := c.close(); !ok {
			t.Fatal("the reply offered before close was lost")
		}
	})
	t.Run("closed", func(t *testing.T) {
		if newCarry().offer(r) {
			t.Fatal("offer taken while the loop does not wait")
		}
	})
	t.Run("nothing being handled", func(t *testing.T) {
		start := time.Now()
		if _, ok := newCarry().take(context.Background(), time.Minute, func() bool { return false }); ok {
			t.Fatal("took a reply nobody offered")
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("waited %v with nothing being handled", d)
		}
	})
	t.Run("linger passes", func(t *testing.T) {
		c := newCarry()
		if _, ok := c.take(context.Background(), 10*time.Millisecond, always); ok {
			t.Fatal("took a reply nobody offered")
		}
		if c.offer(r) {
			t.Fatal("offer taken after the wait ended")
		}
	})
}

// fakeAgbot answers the message routes and records each request as "METHOD query".
type fakeAgbot struct {
	mu    sync.Mutex
	seen  []string
	reply int // status for a POST with a poll's query: 200 (a poll), 204 (an older agbot), a refusal, or -1 (connection cut)
}

func (f *fakeAgbot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.RawQuery)
	code := f.reply
	f.mu.Unlock()
	switch {
	case code == -1 && r.Method == "POST" && r.URL.RawQuery != "":
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close() // the connection is lost before an answer
		}
	case r.Method == "GET", code == 200:
		w.Write([]byte(`{"messages":[{"id":9,"agreementId":"ag2","type":"update","seq":1,"envelope":"e30="}]}`))
	case r.URL.RawQuery == "" || code == 204:
		w.WriteHeader(204)
	default:
		w.WriteHeader(code)
		w.Write([]byte(`{"code":409,"error":"nothing outstanding"}`))
	}
}

func (f *fakeAgbot) requests() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.seen, ", ")
}

// TestReplyCarriesNextPoll: after a poll that brought a message, the message's reply is the
// next long-poll (one request); a reply too slow for the linger, a message without a reply, a
// refused reply and an older agbot's 204 each end in a plain poll, and every reply is sent.
func TestReplyCarriesNextPoll(t *testing.T) {
	cases := []struct {
		name   string
		status int           // the agbot's answer to a reply with a poll's query
		delay  time.Duration // handling time
		reply  bool
		want   string
		failed float64 // replies counted as failed
	}{
		{"reply carries the poll", 200, 0, true, "POST wait=3&after=8", 0},
		{"no reply", 200, 0, false, "GET wait=3&after=8", 0},
		{"reply slower than the linger", 200, 4 * carryLinger, true, "GET wait=3&after=8, POST ", 0},
		{"older agbot", 204, 0, true, "POST wait=3&after=8, GET wait=3&after=8", 0},
		{"recorded before", 409, 0, true, "POST wait=3&after=8, GET wait=3&after=8", 0},
		{"refused", 400, 0, true, "POST wait=3&after=8, GET wait=3&after=8", 1},
		{"connection lost", -1, 0, true, "POST wait=3&after=8, GET wait=3&after=8", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAgbot{reply: tc.status}
			srv := httptest.NewTLSServer(f)
			defer srv.Close()
			c := testConnection(t, srv)
			c.disp = newDispatcher(maxParallel, func(ctx context.Context, m polledMessage) func(bool) {
				time.Sleep(tc.delay)
				if !tc.reply {
					return nil
				}
				out := &protocol.UpdateReply{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeUpdateReply,
					Agreement: m.Agreement, From: "o/n", To: "ab", Seq: m.Seq, Time: time.Now()}, Status: protocol.StatusApplied}
				return func(last bool) { c.sendReply(ctx, out, last) }
			})
			c.disp.handled = c.carry.done
			c.disp.submit(polledMessage{ID: 8, Agreement: "ag", Type: "update", Seq: 2})
			msgs, err := c.next(context.Background(), 8, true)
			if err != nil || len(msgs) != 1 || msgs[0].ID != 9 {
				t.Fatalf("next = %+v %v, want the poll's message", msgs, err)
			}
			if err := c.disp.wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := f.requests(); got != tc.want {
				t.Errorf("requests %q, want %q", got, tc.want)
			}
			var failed dto.Metric
			if err := c.a.metrics.Failures.WithLabelValues("reply").Write(&failed); err != nil {
				t.Fatal(err)
			}
			if got := failed.GetCounter().GetValue(); got != tc.failed {
				t.Errorf("failed replies %v, want %v", got, tc.failed)
			}
		})
	}
}

func testConnection(t *testing.T, srv *httptest.Server) *connection {
	t.Helper()
	client, err := newAgbotClient(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	client.http = srv.Client()
	keys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	agbotKeys, err := protocol.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: NewMetrics()}
	a.pollWait.Store(int64(3 * time.Second))
	reg := &Registration{Org: "o", Node: "n", Token: "tok", AgbotID: "ab"}
	ep := &protocol.Endpoint{ID: reg.ID(), Keys: keys, Peers: protocol.StaticKeyRing{"ab": agbotKeys.Public()}}
	return &connection{a: a, reg: reg, client: client, ep: ep, carry: newCarry()}
}

// TestReplySentWhenLoopStops: a loop that stops while a reply waits for it polls nothing,
// and the reply still goes to the agbot on its own.
func TestReplySentWhenLoopStops(t *testing.T) {
	f := &fakeAgbot{reply: 200}
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	c := testConnection(t, srv)
	c.disp = newDispatcher(maxParallel, func(ctx context.Context, m polledMessage) func(bool) {
		out := &protocol.UpdateReply{Meta: protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeUpdateReply,
			Agreement: m.Agreement, From: "o/n", To: "ab", Seq: m.Seq, Time: time.Now()}, Status: protocol.StatusApplied}
		return func(last bool) { c.sendReply(ctx, out, last) }
	})
	c.disp.handled = c.carry.done
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.disp.submit(polledMessage{ID: 8, Agreement: "ag", Type: "update", Seq: 2})
	if _, err := c.next(ctx, 8, true); err == nil {
		t.Fatal("next polled after the loop's context ended")
	}
	if err := c.disp.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.requests(); got != "POST " {
		t.Errorf("requests %q, want the reply alone", got)
	}
}
