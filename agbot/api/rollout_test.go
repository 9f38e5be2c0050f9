package api

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/agbot/engine"
)

func testRollout(nodes int) engine.Rollout {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	ro := engine.Rollout{Org: "o<&>", Name: "db", Current: 4, Summary: `4 of 5 "acknowledged"`,
		Versions: []engine.RolloutVersion{{Version: 4, Nodes: nodes, Acknowledged: nodes}}, Nodes: []engine.RolloutNode{}, Total: nodes}
	for i := range nodes {
		ro.Nodes = append(ro.Nodes, engine.RolloutNode{Node: fmt.Sprintf("n%06d", i), Agreement: fmt.Sprintf("%032x", i),
			Service: "svc<1>", State: engine.RolloutAcknowledged, Version: 4, Acked: 4, Sent: now, AckedAt: &now, LastPoll: &now})
	}
	return ro
}

// TestWriteRolloutAsWriteJSON: the rollout written a node at a time is, byte for byte, what
// writeJSON writes (HTML-escaped strings and the final newline included), with the same
// headers, for a nil list (-1), no node, one and several.
func TestWriteRolloutAsWriteJSON(t *testing.T) {
	for _, n := range []int{-1, 0, 1, 3} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			ro := testRollout(max(n, 0))
			if n < 0 {
				ro.Nodes = nil
			}
			want, got := httptest.NewRecorder(), httptest.NewRecorder()
			writeJSON(want, 200, ro)
			writeRollout(got, ro)
			if !bytes.Equal(got.Body.Bytes(), want.Body.Bytes()) {
				t.Errorf("written:\n%s\nwriteJSON:\n%s", got.Body, want.Body)
			}
			if got.Code != 200 || fmt.Sprint(got.Header()) != fmt.Sprint(want.Header()) {
				t.Errorf("status %d headers %v, writeJSON %d %v", got.Code, got.Header(), want.Code, want.Header())
			}
		})
	}
}

// TestWriteRolloutKeepsNoBuffer: a fleet's rollout is megabytes of JSON; encoding it whole
// leaves a buffer that large in encoding/json's pool, which survives the next collection (an
// idle agbot kept 8 MB of it after the fan-outs at 10,000 nodes). Written a node at a time,
// less than 256 KiB stays live after one collection.
func TestWriteRolloutKeepsNoBuffer(t *testing.T) {
	ro := testRollout(10000)
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	live() // two collections empty the pools (and their victim caches)
	before := live()
	w := httptest.NewRecorder()
	writeRollout(w, ro)
	if w.Body.Len() < 2<<20 {
		t.Fatalf("the rollout is only %d bytes: the test shows nothing", w.Body.Len())
	}
	w = nil
	if kept := int64(live()) - int64(before); kept > 256<<10 {
		t.Errorf("%d KiB more live heap after writing the rollout and a collection", kept>>10)
	}
	runtime.KeepAlive(ro)
}
