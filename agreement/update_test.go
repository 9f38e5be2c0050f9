package agreement

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestUpdate(t *testing.T) {
	const id = "ag1"
	inst := instanceID(id)
	web, worker := storeID(inst, "web"), storeID(inst, "worker")
	all1 := map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"}
	tests := []struct {
		name string
		prep func(e *env)
		u    func(e *env) *protocol.Update
		// want
		status     protocol.ReplyStatus
		reason     string
		seq        uint64            // applied sequence afterwards
		files      map[string]string // secret -> tag of the value in every store afterwards
		storeCalls []string
		after      [][]string // AfterUpdate names
		note       string
	}{
		{
			name:   "one store",
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "db_password")) },
			status: protocol.StatusApplied, seq: 2,
			files:      map[string]string{"api_token": "1", "db_password": "2", "tls_cert": "1"},
			storeCalls: []string{"update " + web + " [db_password]"},
			after:      [][]string{}, // no onUpdate action, mount-swap: the engine is not asked
		},
		{
			name:   "secret shared by two stores",
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token", "tls_cert")) },
			status: protocol.StatusApplied, seq: 2,
			files:      map[string]string{"api_token": "2", "db_password": "1", "tls_cert": "2"},
			storeCalls: []string{"update " + web + " [api_token]", "update " + worker + " [api_token tls_cert]"},
			after:      [][]string{{"api_token", "tls_cert"}},
		},
		{
			name:   "sequence may skip",
			u:      func(e *env) *protocol.Update { return e.update(id, 7, false, values("2", "db_password")) },
			status: protocol.StatusApplied, seq: 7,
			files: map[string]string{"api_token": "1", "db_password": "2", "tls_cert": "1"},
		},
		{
			name:   "duplicate is acknowledged and does nothing",
			prep:   func(e *env) { e.apply(e.update(id, 2, false, values("2", "db_password"))) },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "db_password")) },
			status: protocol.StatusDuplicate, seq: 2,
			files:      map[string]string{"api_token": "1", "db_password": "2", "tls_cert": "1"},
			storeCalls: []string{},
		},
		{
			name:   "stale is refused",
			prep:   func(e *env) { e.apply(e.update(id, 3, false, values("3", "db_password"))) },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "db_password")) },
			status: protocol.StatusRefused, reason: "last applied 3, changes no secret it is newer for: stale sequence number", seq: 3,
			files:      map[string]string{"api_token": "1", "db_password": "3", "tls_cert": "1"},
			storeCalls: []string{},
		},
		{
			name:   "late update still brings the secrets not changed since",
			prep:   func(e *env) { e.apply(e.update(id, 3, false, values("3", "db_password"))) },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token", "db_password")) },
			status: protocol.StatusApplied, seq: 3,
			files:      map[string]string{"api_token": "2", "db_password": "3", "tls_cert": "1"},
			storeCalls: []string{"update " + web + " [api_token]", "update " + worker + " [api_token]"},
			after:      [][]string{{"api_token"}},
		},
		{
			name: "replayed late update changes nothing",
			prep: func(e *env) {
				e.apply(e.update(id, 3, false, values("3", "db_password")))
				e.apply(e.update(id, 2, false, values("2", "api_token")))
			},
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token")) },
			status: protocol.StatusRefused, reason: "stale", seq: 3,
			files:      map[string]string{"api_token": "2", "db_password": "3", "tls_cert": "1"},
			storeCalls: []string{},
		},
		{
			name:   "sequence 1 is the proposal's",
			u:      func(e *env) *protocol.Update { return e.update(id, 1, false, values("2", "db_password")) },
			status: protocol.StatusRefused, reason: "field seq: must be at least 2", seq: 1, files: all1,
		},
		{
			name:   "unknown agreement",
			u:      func(e *env) *protocol.Update { return e.update("ag9", 2, false, values("2", "db_password")) },
			status: protocol.StatusRefused, reason: "unknown agreement", seq: 1, files: all1,
		},
		{
			name: "secret not declared by the service",
			u: func(e *env) *protocol.Update {
				return e.update(id, 2, false, map[string]protocol.SecretValue{"db_password": {Value: canary("db", "2")}, "other": {Value: canary("other", "2")}})
			},
			status: protocol.StatusRefused, reason: `field secrets["other"]: is not declared`, seq: 1, files: all1,
			storeCalls: []string{},
		},
		{
			name: "from another agbot",
			u: func(e *env) *protocol.Update {
				u := e.update(id, 2, false, values("2", "db_password"))
				u.From = "agbot2"
				return u
			},
			status: protocol.StatusRefused, reason: `comes from "agbot2"`, seq: 1, files: all1,
		},
		{
			name: "value too large",
			u: func(e *env) *protocol.Update {
				return e.update(id, 2, false, map[string]protocol.SecretValue{"db_password": {Value: strings.Repeat("x", 65<<10)}})
			},
			status: protocol.StatusRefused, reason: "more than the limit", seq: 1, files: all1,
		},
		{
			name:   "first store fails: nothing changes",
			prep:   func(e *env) { e.stores.failUpdate[web] = errors.New("swap api_token: EIO") },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token", "tls_cert")) },
			status: protocol.StatusFailed, reason: "swap api_token: EIO (every secret keeps its old value)", seq: 1, files: all1,
			storeCalls: []string{"update " + web + " [api_token]"},
		},
		{
			name:   "second store fails: the first is put back",
			prep:   func(e *env) { e.stores.failUpdate[worker] = errors.New("swap tls_cert: EIO") },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token", "tls_cert")) },
			status: protocol.StatusFailed, reason: "every secret keeps its old value", seq: 1, files: all1,
			storeCalls: []string{"update " + web + " [api_token]", "update " + worker + " [api_token tls_cert]", "update " + web + " [api_token]"},
		},
		{
			name:   "onUpdate action fails: applied, noted",
			prep:   func(e *env) { e.runner.failAfter = errors.New("signal SIGHUP: container not running") },
			u:      func(e *env) *protocol.Update { return e.update(id, 2, false, values("2", "api_token")) },
			status: protocol.StatusApplied, seq: 2,
			files: map[string]string{"api_token": "2", "db_password": "1", "tls_cert": "1"},
			note:  "update 2 applied, onUpdate action failed: signal SIGHUP",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.accept(id, "1")
			if tc.prep != nil {
				tc.prep(e)
			}
			e.stores.takeCalls()
			e.runner.afterNames = nil
			before := e.record(id)
			u := tc.u(e)
			rep := e.m.Update(e.ctx, u)
			if rep.Status != tc.status || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("reply = %s %q, want %s containing %q", rep.Status, rep.Reason, tc.status, tc.reason)
			}
			if rep.Type != protocol.TypeUpdateReply || rep.Seq != u.Seq || rep.To != u.From || rep.From != u.To {
				t.Errorf("reply meta = %+v", rep.Meta)
			}
			if err := rep.Validate(protocol.Limits{}); err != nil && u.Validate(protocol.Limits{}) == nil {
				t.Errorf("reply does not validate: %v", err)
			}
			r := e.record(id)
			if r.Sequence != tc.seq {
				t.Errorf("sequence = %d, want %d", r.Sequence, tc.seq)
			}
			if len(r.Uncertain) != 0 {
				t.Errorf("uncertain = %v, want none", r.Uncertain)
			}
			e.wantValues(id, tc.files)
			// Digests follow the values.
			for name, tag := range tc.files {
				if want := e.m.digest(declared(&r.Service)[name], values(tag, name)[name]); r.Digests[name] != want {
					t.Errorf("digest of %s = %s, want that of value %s", name, shortDigest(r.Digests[name]), tag)
				}
			}
			if tc.status != protocol.StatusApplied && !reflect.DeepEqual(r.Digests, before.Digests) {
				t.Errorf("digests changed by an update that was not applied")
			}
			if calls := e.stores.takeCalls(); tc.storeCalls != nil && !reflect.DeepEqual(calls, tc.storeCalls) && !(len(calls) == 0 && len(tc.storeCalls) == 0) {
				t.Errorf("store calls = %q, want %q", calls, tc.storeCalls)
			}
			if tc.after != nil && !reflect.DeepEqual(e.runner.afterNames, tc.after) && (len(tc.after) > 0 || len(e.runner.afterNames) > 0) {
				t.Errorf("AfterUpdate names = %q, want %q", e.runner.afterNames, tc.after)
			}
			if !strings.Contains(r.Note, tc.note) {
				t.Errorf("note = %q, want it to contain %q", r.Note, tc.note)
			}
		})
	}
}

func (e *env) apply(u *protocol.Update) {
	e.t.Helper()
	if rep := e.m.Update(e.ctx, u); rep.Status != protocol.StatusApplied {
		e.t.Fatalf("Update(%s %d) = %s %q, want applied", u.Agreement, u.Seq, rep.Status, rep.Reason)
	}
}

// An update whose first store was swapped when the put-back of it fails keeps the names
// uncertain and asks for a resync.
func TestUpdateRollbackFails(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	inst := instanceID("ag1")
	web, worker := storeID(inst, "web"), storeID(inst, "worker")
	e.stores.failUpdate[worker] = errors.New("EIO")
	e.stores.onUpdate = func(id string) {
		if id == web && e.stores.failUpdate[worker] != nil {
			// The first swap went through; from now on web fails too.
			e.stores.onUpdate = func(id string) {
				if id == web {
					e.stores.failUpdate[web] = errors.New("EIO again")
				}
			}
		}
	}
	rep := e.m.Update(e.ctx, e.update("ag1", 2, false, values("2", "api_token")))
	if rep.Status != protocol.StatusFailed || !strings.Contains(rep.Reason, "put back store") {
		t.Fatalf("reply = %s %q, want failed naming the put back", rep.Status, rep.Reason)
	}
	r := e.record("ag1")
	if !reflect.DeepEqual(r.Uncertain, []string{"api_token"}) || r.Sequence != 1 {
		t.Errorf("uncertain = %v at %d, want [api_token] at 1", r.Uncertain, r.Sequence)
	}
	rs, err := e.m.Resyncs()
	if err != nil || len(rs) != 1 || rs[0].Seq != 1 || rs[0].To != agbotID || rs[0].From != nodeID {
		t.Fatalf("Resyncs() = %+v, %v; want one for ag1 at 1", rs, err)
	}
	if err := rs[0].Validate(protocol.Limits{}); err != nil {
		t.Errorf("resync does not validate: %v", err)
	}
	// The agbot answers with the full set at its latest sequence: that settles it.
	delete(e.stores.failUpdate, web)
	delete(e.stores.failUpdate, worker)
	e.stores.onUpdate = nil
	e.apply(e.update("ag1", 2, true, values("2")))
	if r := e.record("ag1"); len(r.Uncertain) != 0 || r.Sequence != 2 {
		t.Errorf("after resync: uncertain %v at %d", r.Uncertain, r.Sequence)
	}
	e.wantValues("ag1", map[string]string{"api_token": "2", "db_password": "2", "tls_cert": "2"})
}

// Updates to one agreement apply in order, one at a time; different agreements in parallel.
func TestUpdateOrderAndParallelism(t *testing.T) {
	e := newEnv(t)
	const agreements, updates = 4, 25
	for a := 0; a < agreements; a++ {
		e.accept(fmt.Sprintf("ag%d", a), "1")
	}
	var wg sync.WaitGroup
	for a := 0; a < agreements; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ag%d", a)
			for s := 2; s <= updates+1; s++ {
				rep := e.m.Update(e.ctx, e.update(id, uint64(s), false, values(fmt.Sprint(s), "api_token")))
				switch rep.Status {
				case protocol.StatusApplied, protocol.StatusDuplicate, protocol.StatusRefused:
				default:
					t.Errorf("%s %d: %s %q", id, s, rep.Status, rep.Reason)
				}
			}
		}()
	}
	// Meanwhile the same stream again, concurrently: every message is applied, acknowledged
	// again or refused as stale, and no store ever goes back to an older value.
	for a := 0; a < agreements; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ag%d", a)
			for s := 2; s <= updates+1; s++ {
				rep := e.m.Update(e.ctx, e.update(id, uint64(s), false, values(fmt.Sprint(s), "api_token")))
				switch rep.Status {
				case protocol.StatusApplied, protocol.StatusDuplicate, protocol.StatusRefused:
				default:
					t.Errorf("%s %d: %s %q", id, s, rep.Status, rep.Reason)
				}
			}
		}()
	}
	wg.Wait()
	for a := 0; a < agreements; a++ {
		id := fmt.Sprintf("ag%d", a)
		if r := e.record(id); r.Sequence != updates+1 {
			t.Errorf("%s at %d, want %d", id, r.Sequence, updates+1)
		}
		e.wantValues(id, map[string]string{"api_token": fmt.Sprint(updates + 1)})
		for _, c := range []string{"web", "worker"} {
			sid := storeID(instanceID(id), c)
			h := e.stores.history(sid, "api_token")
			for i := 1; i < len(h); i++ {
				if h[i] <= h[i-1] {
					t.Errorf("store %s went from value %d to %d", sid, h[i-1], h[i])
				}
			}
			if len(h) == 0 {
				t.Errorf("store %s: no update recorded", sid)
			}
		}
	}
}

// While one agreement's proposal or update is stuck, another agreement's goes through.
func TestDifferentAgreementsInParallel(t *testing.T) {
	t.Run("proposals", func(t *testing.T) {
		e := newEnv(t)
		stuck, release := make(chan struct{}), make(chan struct{})
		var first0 atomic.Bool
		e.runner.onResolve = func() {
			if first0.CompareAndSwap(false, true) { // sync.Once would block the other caller too
				close(stuck)
				<-release
			}
		}
		first := make(chan *protocol.ProposalReply)
		go func() { first <- e.m.Propose(e.ctx, e.proposal("ag1", values("1"))) }()
		<-stuck
		if rep := e.m.Propose(e.ctx, e.proposal("ag2", values("1"))); rep.Status != protocol.StatusAccepted {
			t.Fatalf("ag2 while ag1 is stuck: %s %q", rep.Status, rep.Reason)
		}
		close(release)
		if rep := <-first; rep.Status != protocol.StatusAccepted {
			t.Fatalf("ag1: %s %q", rep.Status, rep.Reason)
		}
	})
	t.Run("updates", func(t *testing.T) {
		e := newEnv(t)
		e.accept("ag1", "1")
		e.accept("ag2", "1")
		stuck, release := make(chan struct{}), make(chan struct{})
		blocked := storeID(instanceID("ag1"), "web")
		e.stores.onUpdate = func(id string) {
			if id == blocked {
				blocked = ""
				close(stuck)
				<-release
			}
		}
		first := make(chan *protocol.UpdateReply)
		go func() { first <- e.m.Update(e.ctx, e.update("ag1", 2, false, values("2", "db_password"))) }()
		<-stuck
		if rep := e.m.Update(e.ctx, e.update("ag2", 2, false, values("2", "db_password"))); rep.Status != protocol.StatusApplied {
			t.Fatalf("ag2 while ag1 is stuck: %s %q", rep.Status, rep.Reason)
		}
		// The next update of ag1 waits for the first: it can not overtake it.
		second := make(chan *protocol.UpdateReply)
		go func() { second <- e.m.Update(e.ctx, e.update("ag1", 3, false, values("3", "db_password"))) }()
		select {
		case rep := <-second:
			t.Fatalf("ag1 update 3 finished (%s) while update 2 was still being applied", rep.Status)
		default:
		}
		close(release)
		if rep := <-first; rep.Status != protocol.StatusApplied {
			t.Fatalf("ag1 2: %s %q", rep.Status, rep.Reason)
		}
		if rep := <-second; rep.Status != protocol.StatusApplied {
			t.Fatalf("ag1 3: %s %q", rep.Status, rep.Reason)
		}
		e.wantValues("ag1", map[string]string{"db_password": "3"})
	})
}
