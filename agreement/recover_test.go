package agreement

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/protocol"
)

func TestRecover(t *testing.T) {
	const id = "ag1"
	inst := instanceID(id)
	web, worker := storeID(inst, "web"), storeID(inst, "worker")
	all1 := map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"}
	tests := []struct {
		name string
		prep func(e *env) // between the accepted proposal and the restart
		// want
		phase       Phase // "" : no record
		resync      bool
		storeCalls  []string
		runnerCalls []string
		stores      []string
		instances   []string
		files       map[string]string
		logs        string
	}{
		{
			name:  "intact: untouched",
			phase: PhaseActive, storeCalls: []string{}, runnerCalls: []string{},
			stores: []string{web, worker}, instances: []string{inst}, files: all1,
			logs: "agreement intact",
		},
		{
			name:  "reboot emptied the tmpfs: containers stopped, resync asked",
			prep:  func(e *env) { e.stores.lose(); e.runner.setState(inst, "restarting") },
			phase: PhaseResync, resync: true,
			// Wiping what is not there is harmless and clears any remains.
			storeCalls: []string{"wipe " + web, "wipe " + worker}, runnerCalls: []string{"stop " + inst},
			logs: "the node lost an agreement's secrets",
		},
		{
			name: "one file missing counts as lost",
			prep: func(e *env) {
				st, _ := e.stores.Stores()
				for _, s := range st {
					if s.ID == worker {
						delete(s.Files, "tls_cert")
					}
				}
			},
			phase: PhaseResync, resync: true,
			storeCalls: []string{"wipe " + web, "wipe " + worker}, runnerCalls: []string{"stop " + inst},
		},
		{
			name:  "agent died during an update before any swap: every file checks out, no resync",
			prep:  func(e *env) { r := e.record(id); r.Uncertain = []string{"api_token"}; e.m.db.put(r) },
			phase: PhaseActive, storeCalls: []string{}, runnerCalls: []string{},
			stores: []string{web, worker}, instances: []string{inst}, files: all1,
			logs: "the interrupted update left nothing to settle",
		},
		{
			name: "agent died during an update after a swap: containers keep running, resync asked",
			prep: func(e *env) {
				r := e.record(id)
				r.Uncertain = []string{"api_token"}
				e.m.db.put(r)
				e.stores.Update(worker, []StoreSecret{{Name: "api_token", Key: "user-api_token", Value: []byte(canary("api_token", "2"))}})
			},
			phase: PhaseActive, resync: true, runnerCalls: []string{},
			stores: []string{web, worker}, instances: []string{inst},
			files: map[string]string{"db_password": "1", "tls_cert": "1"},
			logs:  "secrets that may hold the old or the new version until a resync",
		},
		{
			name: "a file changed behind the agent's back: resync asked",
			prep: func(e *env) {
				e.stores.Update(web, []StoreSecret{{Name: "db_password", Key: "user-db_password", Value: []byte("tampered")}})
			},
			phase: PhaseActive, resync: true, runnerCalls: []string{},
			stores: []string{web, worker}, instances: []string{inst},
			files: map[string]string{"api_token": "1", "tls_cert": "1"},
			logs:  "does not match its recorded digest",
		},
		{
			name: "containers removed behind the agent's back: started again on the same stores",
			prep: func(e *env) {
				e.runner.mu.Lock()
				delete(e.runner.containers, inst)
				e.runner.mu.Unlock()
			},
			phase: PhaseActive, storeCalls: []string{}, runnerCalls: []string{"stop " + inst, "start " + inst},
			stores: []string{web, worker}, instances: []string{inst}, files: all1,
		},
		{
			name:  "containers exited: restarted",
			prep:  func(e *env) { e.runner.setState(inst, "exited") },
			phase: PhaseActive, storeCalls: []string{}, runnerCalls: []string{"restart " + inst},
			stores: []string{web, worker}, instances: []string{inst}, files: all1,
		},
		{
			name:       "interrupted proposal is undone",
			prep:       func(e *env) { r := e.record(id); r.Phase = PhaseAccepting; e.m.db.put(r) },
			storeCalls: []string{"wipe " + web, "wipe " + worker}, runnerCalls: []string{"stop " + inst},
			logs: "undoing a proposal",
		},
		{
			name:       "interrupted cancel is finished",
			prep:       func(e *env) { r := e.record(id); r.Phase = PhaseCancelling; e.m.db.put(r) },
			storeCalls: []string{"wipe " + web, "wipe " + worker}, runnerCalls: []string{"stop " + inst},
			logs: "finishing a cancel",
		},
		{
			name: "orphans are removed",
			prep: func(e *env) {
				e.stores.Create(StoreSpec{ID: "zz-web", Secrets: []StoreSecret{{Name: "x", Value: []byte(canary("x", "o"))}}})
				e.runner.Start(e.ctx, container.Instance{InstanceID: "zz", Containers: []container.Spec{{Name: "web"}}})
			},
			phase: PhaseActive, storeCalls: []string{"wipe zz-web"}, runnerCalls: []string{"stop zz"},
			stores: []string{web, worker}, instances: []string{inst}, files: all1,
			logs: "belong to no agreement",
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
			e.runner.takeCalls()
			rs := e.restart()
			r := e.record(id)
			switch {
			case tc.phase == "" && r != nil:
				t.Errorf("record left in phase %s", r.Phase)
			case tc.phase != "" && (r == nil || r.Phase != tc.phase):
				t.Fatalf("record = %+v, want phase %s", r, tc.phase)
			}
			if got := len(rs) == 1 && rs[0].Agreement == id && rs[0].Seq == 1; got != tc.resync || !tc.resync && len(rs) != 0 {
				t.Errorf("resyncs = %+v, want resync=%v", rs, tc.resync)
			}
			for _, r := range rs {
				if err := r.Validate(protocol.Limits{}); err != nil {
					t.Errorf("resync does not validate: %v", err)
				}
			}
			if got := e.stores.takeCalls(); tc.storeCalls != nil && !reflect.DeepEqual(got, tc.storeCalls) && !(len(got) == 0 && len(tc.storeCalls) == 0) {
				t.Errorf("store calls = %q, want %q", got, tc.storeCalls)
			}
			if got := e.runner.takeCalls(); tc.runnerCalls != nil && !reflect.DeepEqual(got, tc.runnerCalls) && !(len(got) == 0 && len(tc.runnerCalls) == 0) {
				t.Errorf("runner calls = %q, want %q", got, tc.runnerCalls)
			}
			if got, want := e.stores.ids(), slices.Sorted(slices.Values(tc.stores)); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Errorf("stores = %v, want %v", got, tc.stores)
			}
			if got := e.runner.instances(); !reflect.DeepEqual(got, tc.instances) {
				t.Errorf("instances = %v, want %v", got, tc.instances)
			}
			e.wantValues(id, tc.files)
			if !strings.Contains(e.logs.String(), tc.logs) {
				t.Errorf("logs lack %q", tc.logs)
			}
			if r != nil {
				for _, c := range r.Containers {
					if (r.Phase == PhaseActive) != (c.ContainerID != "") {
						t.Errorf("phase %s, container %s id %q", r.Phase, c.Name, c.ContainerID)
					}
				}
			}
		})
	}
}

// After a reboot the agreement waits for the full set of values, then comes back whole.
func TestResyncAfterReboot(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	e.apply(e.update("ag1", 2, false, values("2", "db_password")))
	e.stores.lose()
	rs := e.restart()
	if len(rs) != 1 || rs[0].Seq != 2 {
		t.Fatalf("resyncs = %+v, want one at 2", rs)
	}
	tests := []struct {
		name   string
		u      *protocol.Update
		status protocol.ReplyStatus
		reason string
		phase  Phase
	}{
		{"a partial update can not rebuild", e.update("ag1", 3, false, values("3", "api_token")), protocol.StatusFailed, "waits for a full update (resync); update 3 lacks", PhaseResync},
		{"a full update missing a secret can not either", e.update("ag1", 3, true, values("3", "api_token", "db_password")), protocol.StatusFailed, `lacks ["tls_cert"]`, PhaseResync},
		{"the full set at the same sequence rebuilds", e.update("ag1", 2, true, values("2")), protocol.StatusApplied, "", PhaseActive},
		{"then the same sequence is a duplicate", e.update("ag1", 2, true, values("2")), protocol.StatusDuplicate, "", PhaseActive},
		{"and updates apply again", e.update("ag1", 3, false, values("3", "api_token")), protocol.StatusApplied, "", PhaseActive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.m.Update(e.ctx, tc.u)
			if rep.Status != tc.status || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("reply = %s %q, want %s containing %q", rep.Status, rep.Reason, tc.status, tc.reason)
			}
			if r := e.record("ag1"); r.Phase != tc.phase {
				t.Errorf("phase = %s, want %s", r.Phase, tc.phase)
			}
		})
	}
	e.wantValues("ag1", map[string]string{"api_token": "3", "db_password": "2", "tls_cert": "2"})
	if rs, _ := e.m.Resyncs(); len(rs) != 0 {
		t.Errorf("resyncs after the rebuild: %+v", rs)
	}
}

// crashPanic stands for kill -9: it unwinds the manager mid-update; the test then opens a new
// manager on what was persisted.
type crashPanic struct{}

// A crash at each step of an update leaves every secret at its old or new value, and the
// agent converges after restart, by the redelivered update or by the resync answer.
func TestCrashDuringUpdate(t *testing.T) {
	inst := instanceID("ag1")
	web, worker := storeID(inst, "web"), storeID(inst, "worker")
	tests := []struct {
		name       string
		arm        func(e *env)
		wantResync bool
		redeliver  bool // the agbot resends update 2 (its reply was lost), before any resync answer
	}{
		{name: "before the first store", arm: func(e *env) { e.stores.onUpdate = crashOn(web) }, redeliver: true},
		{name: "between the stores", arm: func(e *env) { e.stores.onUpdate = crashOn(worker) }, wantResync: true},
		{name: "between the stores, redelivered", arm: func(e *env) { e.stores.onUpdate = crashOn(worker) }, wantResync: true, redeliver: true},
		{name: "in the onUpdate action", arm: func(e *env) { e.runner.panicAfter = true }, wantResync: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.accept("ag1", "1")
			tc.arm(e)
			func() {
				defer func() {
					if p := recover(); p != nil && p != (crashPanic{}) {
						panic(p)
					}
				}()
				e.m.Update(e.ctx, e.update("ag1", 2, false, values("2", "api_token", "tls_cert")))
				t.Fatal("no crash")
			}()
			e.stores.onUpdate, e.runner.panicAfter = nil, false
			// Each secret holds its old or new value, nothing else.
			for _, s := range []string{web, worker} {
				for _, name := range []string{"api_token", "tls_cert"} {
					if s == web && name == "tls_cert" {
						continue
					}
					got := e.stores.read(t, s, name)
					if !strings.Contains(got, canary(name, "1")) && !strings.Contains(got, canary(name, "2")) {
						t.Errorf("%s/%s = %q: neither old nor new", s, name, got)
					}
				}
			}
			rs := e.restart()
			if (len(rs) == 1) != tc.wantResync {
				t.Fatalf("resyncs = %+v, want resync %v", rs, tc.wantResync)
			}
			wantSeq := uint64(2)
			if tc.redeliver {
				e.apply(e.update("ag1", 2, false, values("2", "api_token", "tls_cert")))
			}
			if tc.wantResync {
				// The agbot answers a resync with the full set under its next sequence.
				wantSeq = 3
				e.apply(e.update("ag1", wantSeq, true, values("2")))
			}
			if r := e.record("ag1"); r.Sequence != wantSeq || len(r.Uncertain) != 0 || r.Phase != PhaseActive {
				t.Errorf("after convergence: %+v", r)
			}
			want := map[string]string{"api_token": "2", "db_password": "2", "tls_cert": "2"}
			if !tc.wantResync {
				want["db_password"] = "1"
			}
			e.wantValues("ag1", want)
		})
	}
}

func crashOn(id string) func(string) {
	return func(got string) {
		if got == id {
			panic(crashPanic{})
		}
	}
}
