package agbot_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot"
	"github.com/edge-secrets/anax-agent/agbot/access"
	"github.com/edge-secrets/anax-agent/agbot/api"
	"github.com/edge-secrets/anax-agent/protocol"
)

// BenchmarkFanout10k: 10,000 simulated nodes, in process, each long-polling the engine
// directly (Engine.Poll / Engine.Receive: no HTTP, no TLS), receive an org-level secret
// update; one iteration is the time from the write through the API handler to the last
// acknowledgement. The nodes' own work (HPKE open, seal and sign the reply) runs in the same
// process and is included in the CPU figure.
//
//	go test -run '^$' -bench Fanout10k -benchtime 3x ./agbot/
func BenchmarkFanout10k(b *testing.B) {
	const nodes = 10000
	dir := b.TempDir()
	if _, err := agbot.Init(agbot.InitOptions{DataDir: dir, Org: org, Admin: "admin", Password: "adminpw", Hash: access.CheapParams}); err != nil {
		b.Fatal(err)
	}
	srv, err := agbot.Open(agbot.Options{DataDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hash: access.CheapParams})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	h := srv.Handler()
	call := func(auth, method, path string, body any, want int) []byte {
		raw, _ := json.Marshal(body)
		req := httptest.NewRequest(method, path, bytes.NewReader(raw))
		u, p, _ := cut(auth)
		req.SetBasicAuth(u, p)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			b.Fatalf("%s %s = %d %s", method, path, rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	var info api.AgbotInfo
	_ = json.Unmarshal(call("", "GET", "/agbot", nil, 200), &info)
	call(admin, "PUT", "/org/myorg/secrets/db", map[string]string{"key": "k", "value": "canary-bench-0"}, 201)
	svc := clone(service)
	svc["deployment"].(map[string]any)["services"].(map[string]any)["web"].(map[string]any)["secrets"] = map[string]any{"db_password": map[string]any{}}
	call(admin, "POST", "/org/myorg/services", svc, 201)
	pol := policy("purpose == edge")
	pol["secretBinding"].([]any)[0].(map[string]any)["secrets"] = []any{map[string]string{"db_password": "db"}}
	call(admin, "PUT", "/org/myorg/business/policies/pol", pol, 201)

	type sim struct {
		id string
		ep *protocol.Endpoint
	}
	sims := make([]*sim, nodes)
	for i := range sims {
		id := fmt.Sprintf("n%05d", i)
		keys, err := protocol.GenerateKeys()
		if err != nil {
			b.Fatal(err)
		}
		call(admin, "PUT", "/org/myorg/nodes/"+id, map[string]any{"token": "t"}, 201)
		call("myorg/"+id+":t", "PUT", "/org/myorg/nodes/"+id+"/registration",
			map[string]any{"publicKeys": keys.Public(), "arch": "amd64", "properties": []any{map[string]any{"name": "purpose", "value": "edge"}}}, 200)
		sims[i] = &sim{id: id, ep: &protocol.Endpoint{ID: "myorg/" + id, Keys: keys, Peers: protocol.StaticKeyRing{info.ID: info.PublicKeys}, Agreements: &protocol.AgreementKeyMap{}}}
	}
	eng := srv.Engine
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acked sync.WaitGroup
	// The proposals made at registration are acknowledged first (not timed); Add before the
	// nodes start so no Done comes first.
	acked.Add(nodes)
	// Each node: poll, open, reply, forever.
	for _, s := range sims {
		go func() {
			var after uint64
			for ctx.Err() == nil {
				msgs, err := eng.Poll(ctx, org, s.id, after, 30*time.Second)
				if err != nil {
					return
				}
				for _, m := range msgs {
					after = max(after, m.ID)
					msg, err := s.ep.Open(m.Envelope)
					if err != nil {
						panic(err)
					}
					hd := msg.Head()
					meta := protocol.Meta{Version: protocol.ProtocolVersion, Agreement: hd.Agreement, From: s.ep.ID, To: info.ID, Seq: hd.Seq, Time: time.Now()}
					var reply protocol.Message
					if _, ok := msg.(*protocol.Proposal); ok {
						meta.Type = protocol.TypeProposalReply
						reply = &protocol.ProposalReply{Meta: meta, Status: protocol.StatusAccepted}
					} else {
						meta.Type = protocol.TypeUpdateReply
						reply = &protocol.UpdateReply{Meta: meta, Status: protocol.StatusApplied}
					}
					env, err := s.ep.Seal(reply)
					if err != nil {
						panic(err)
					}
					if err := eng.Receive(ctx, org, s.id, env); err != nil {
						panic(err)
					}
					acked.Done()
				}
			}
		}()
	}
	acked.Wait()
	for eng.Pending() > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	var before syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		acked.Add(nodes)
		call(admin, "PUT", "/org/myorg/secrets/db", map[string]string{"key": "k", "value": fmt.Sprintf("canary-bench-%d", i+1)}, 201)
		acked.Wait()
	}
	b.StopTimer()
	elapsed := time.Since(start)
	var after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()-before.Utime.Nano()+after.Stime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s-to-last-ack")
	b.ReportMetric(cpu.Seconds(), "cpu-s/op")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(after.Maxrss)/1024, "maxrss-MiB")
}

func cut(auth string) (string, string, bool) {
	for i := 0; i < len(auth); i++ {
		if auth[i] == ':' {
			return auth[:i], auth[i+1:], true
		}
	}
	return auth, "", false
}

var _ = http.StatusOK
