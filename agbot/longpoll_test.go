package agbot_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/agbot/engine"
	"github.com/edge-secrets/anax-agent/protocol"
)

// longPoll starts a long-poll of wait seconds; the answer comes on the channel.
func longPoll(h *harness, n *simNode, wait string) <-chan polled {
	req, _ := http.NewRequest("GET", h.url+"/org/myorg/nodes/"+n.id+"/msgs?wait="+wait+"&after="+utoa(n.after), nil)
	return send(h, n, req)
}

// send sends req with n's credentials; the answer (status, body, the messages of a 200,
// whether its connection was reused) comes on the channel.
func send(h *harness, n *simNode, req *http.Request) <-chan polled {
	out := make(chan polled, 1)
	go func() {
		var p polled
		user, pw, _ := strings.Cut(n.auth, ":")
		req.SetBasicAuth(user, pw)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { p.reused = i.Reused }}))
		resp, err := h.client.Do(req)
		if err != nil {
			p.err = err
			out <- p
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		p.code, p.body = resp.StatusCode, string(raw)
		if p.code == 200 {
			p.err = json.Unmarshal(raw, &p.msgs)
		}
		out <- p
	}()
	return out
}

type polled struct {
	code   int
	body   string
	msgs   api.Messages
	reused bool
	err    error
}

func waitPolled(t *testing.T, ch <-chan polled, within time.Duration) polled {
	t.Helper()
	select {
	case p := <-ch:
		if p.err != nil {
			t.Fatalf("poll: %v", p.err)
		}
		return p
	case <-time.After(within):
		t.Fatalf("no answer within %v", within)
	}
	return polled{}
}

// A long-poll with nothing to answer is parked; a secret change wakes it with the update on
// the same keep-alive connection, which then serves the next poll.
func TestParkedPollWokenByUpdate(t *testing.T) {
	h, n, _ := agreed(t)
	ch := longPoll(h, n, "60")
	waitParked(t, h, 1)
	putSecret(h, admin, "db", "v2")
	p := waitPolled(t, ch, 30*time.Second)
	if p.code != 200 || len(p.msgs.Messages) != 1 || p.msgs.Messages[0].Type != string(protocol.TypeUpdate) {
		t.Fatalf("poll answered %d %+v, want one update", p.code, p.msgs)
	}
	m, err := n.ep.Open(p.msgs.Messages[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	n.after = p.msgs.Messages[0].ID
	wantUpdate(t, m, "db_password", "v2", protocol.ReasonValueUpdated)
	n.ack(m)
	if p := waitPolled(t, longPoll(h, n, "1"), 30*time.Second); p.code != 200 || len(p.msgs.Messages) != 0 || !p.reused {
		t.Fatalf("next poll: %d %+v reused=%v, want an empty answer on the kept connection", p.code, p.msgs, p.reused)
	}
	h.wantMetrics("anax_agbot_long_polls_parked 0")
	h.wantMetrics("anax_agbot_long_poll_answers_waiting 0")
}

// waitParked waits until the metrics count n parked long-polls.
func waitParked(t *testing.T, h *harness, n int) {
	t.Helper()
	want := "\nanax_agbot_long_polls_parked " + itoa(n) + "\n"
	for range 100 {
		if strings.Contains(h.scrape(), want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("metrics never counted %d parked long-polls:\n%s", n, grepLines(h.scrape(), "parked"))
}

// Shutdown answers a parked long-poll at once, empty, instead of leaving it to its wait.
func TestShutdownAnswersParkedPolls(t *testing.T) {
	h, n, _ := agreed(t)
	ch := longPoll(h, n, "60")
	waitParked(t, h, 1)
	done := make(chan struct{})
	go func() {
		h.stop()
		close(done)
	}()
	p := waitPolled(t, ch, 15*time.Second)
	if p.code != 200 || len(p.msgs.Messages) != 0 {
		t.Fatalf("poll at shutdown answered %d %+v, want 200 and no message", p.code, p.msgs)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not return")
	}
}

// A poll whose connection can not be parked (here an in-process ResponseWriter without
// Hijack) still waits for its message in the handler, as before the parking.
func TestUnparkablePollWaits(t *testing.T) {
	h, n, _ := agreed(t)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req := httptest.NewRequest("GET", "/org/myorg/nodes/"+n.id+"/msgs?wait=30&after="+utoa(n.after), nil)
		req.SetBasicAuth("myorg/"+n.id, "node1tok")
		h.srv.Handler().ServeHTTP(rec, req)
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case <-done:
		t.Fatalf("answered before any message: %d %s", rec.Code, rec.Body)
	default:
	}
	putSecret(h, admin, "db", "v2")
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("no answer")
	}
	var out api.Messages
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || len(out.Messages) != 1 {
		t.Fatalf("answer %d %s (%v), want the update", rec.Code, rec.Body, err)
	}
}

// replyPoll posts env with a long-poll's query (the reply that is also the next poll).
func replyPoll(h *harness, n *simNode, env []byte, query string) <-chan polled {
	req, _ := http.NewRequest("POST", h.url+"/org/myorg/nodes/"+n.id+"/msgs"+query, bytes.NewReader(env))
	req.Header.Set("Content-Type", "application/json")
	return send(h, n, req)
}

// A reply posted with a long-poll's wait and after is recorded at once and is also the
// node's next poll: parked when there is nothing to answer, woken by the next update, and its
// connection serves the next request. A bad query refuses the reply before reading it; a
// refused reply (a replay) is answered at once and polls nothing. Without the query, 204.
func TestReplyIsNextPoll(t *testing.T) {
	h, n, _ := agreed(t)
	putSecret(h, admin, "db", "v2")
	u := n.next()
	env, err := n.ep.Wrap(successReply(u, n.ep.ID, h.agbotID))
	if err != nil {
		t.Fatal(err)
	}
	path := "/org/myorg/nodes/" + n.id + "/msgs"
	for _, q := range []struct{ name, query, rule string }{
		{"wait too long", "?wait=61&after=" + utoa(n.after), "wait: must be whole seconds from 0 to 60"},
		{"after not an id", "?wait=5&after=-1", "after: must be a message id"},
	} {
		t.Run(q.name, func(t *testing.T) {
			if code, raw := h.do(n.auth, "POST", path+q.query, env); code != 400 || !strings.Contains(string(raw), q.rule) {
				t.Fatalf("POST %s = %d %s, want 400 naming %q", q.query, code, raw, q.rule)
			}
			if p := h.srv.Engine.Pending(); p != 1 {
				t.Fatalf("%d messages queued after a refused query, want the update still queued", p)
			}
		})
	}
	ch := replyPoll(h, n, env, "?wait=60&after="+utoa(n.after))
	waitParked(t, h, 1)
	if p := h.srv.Engine.Pending(); p != 0 {
		t.Fatalf("%d messages queued while the reply's poll is parked, want the update acknowledged", p)
	}
	if st := nodeState(h.rollout("db", ""), n.id); st.State != engine.RolloutAcknowledged {
		t.Fatalf("rollout state %q while the reply's poll is parked, want acknowledged", st.State)
	}
	putSecret(h, admin, "db", "v3")
	p := waitPolled(t, ch, 30*time.Second)
	if p.code != 200 || len(p.msgs.Messages) != 1 || p.msgs.Messages[0].Type != string(protocol.TypeUpdate) {
		t.Fatalf("reply's poll answered %d %s, want the v3 update", p.code, p.body)
	}
	m, err := n.ep.Open(p.msgs.Messages[0].Envelope)
	if err != nil {
		t.Fatal(err)
	}
	wantUpdate(t, m, "db_password", "v3", protocol.ReasonValueUpdated)
	n.after = p.msgs.Messages[0].ID
	if p := waitPolled(t, longPoll(h, n, "1"), 30*time.Second); p.code != 200 || !p.reused {
		t.Fatalf("next poll: %d reused=%v, want an answer on the connection the reply's poll kept", p.code, p.reused)
	}
	t.Run("replayed", func(t *testing.T) {
		p := waitPolled(t, replyPoll(h, n, env, "?wait=60&after="+utoa(n.after)), 10*time.Second)
		if p.code != 409 {
			t.Fatalf("replayed reply with a poll = %d %s, want 409 at once", p.code, p.body)
		}
	})
	env3, err := n.ep.Wrap(successReply(m, n.ep.ID, h.agbotID))
	if err != nil {
		t.Fatal(err)
	}
	h.mustDo(n.auth, "POST", path, env3, 204, nil) // no query: a reply only, as before
	h.wantMetrics("anax_agbot_long_polls_parked 0")
}
