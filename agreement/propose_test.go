package agreement

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestPropose(t *testing.T) {
	const id = "ag1"
	inst := instanceID(id)
	web, worker := storeID(inst, "web"), storeID(inst, "worker")
	tests := []struct {
		name string
		opts func(*Options)
		prep func(e *env, p *protocol.Proposal)
		// want
		status     protocol.ReplyStatus
		reason     string   // substring of the reason
		stores     []string // stores left afterwards
		instances  []string // instances with containers afterwards
		storeCalls []string // nil: not checked
	}{
		{
			name: "accepted", status: protocol.StatusAccepted,
			stores: []string{web, worker}, instances: []string{inst},
			storeCalls: []string{"create " + web, "create " + worker},
		},
		{
			name:   "invalid secret name",
			prep:   func(e *env, p *protocol.Proposal) { p.Secrets["etc"] = protocol.SecretValue{Value: canary("etc", "1")} },
			status: protocol.StatusDeclined, reason: `invalid proposal: field secrets["etc"]`,
			storeCalls: []string{},
		},
		{
			name:   "value missing",
			prep:   func(e *env, p *protocol.Proposal) { delete(p.Secrets, "tls_cert") },
			status: protocol.StatusDeclined, reason: `secrets["tls_cert"]: is declared by the service but has no value`,
		},
		{
			name:   "value too large",
			opts:   func(o *Options) { o.Limits.MaxValue = 16 },
			status: protocol.StatusDeclined, reason: "more than the limit 16",
		},
		{
			name: "other arch",
			prep: func(e *env, p *protocol.Proposal) {
				p.Service.Arch = map[bool]string{true: "arm", false: "amd64"}[e.m.arch == "amd64"]
			},
			status: protocol.StatusDeclined, reason: "is built for arch",
		},
		{
			name: "node policy refuses",
			opts: func(o *Options) {
				o.Admit = func(props map[string]any) error {
					if props["openhorizon.service.url"] == "svc.example" {
						return errors.New(`constraint "openhorizon.service.url != svc.example" is false`)
					}
					return nil
				}
			},
			status: protocol.StatusDeclined, reason: "node policy refuses service acme/svc.example 1.2.0: constraint",
		},
		{
			name: "user does not resolve",
			prep: func(e *env, p *protocol.Proposal) {
				e.runner.failUser["worker:1"] = errors.New(`user "app" not found in image`)
			},
			status: protocol.StatusDeclined, reason: `container "worker": user "app" not found`,
			storeCalls: []string{},
		},
		{
			name:   "second store fails",
			prep:   func(e *env, p *protocol.Proposal) { e.stores.failCreate[worker] = errors.New("tmpfs: no space") },
			status: protocol.StatusDeclined, reason: `container "worker": create secret store: tmpfs: no space`,
			storeCalls: []string{"create " + web, "create " + worker, "wipe " + web, "wipe " + web, "wipe " + worker},
		},
		{
			name:   "containers fail to start",
			prep:   func(e *env, p *protocol.Proposal) { e.runner.failStart = errors.New("image web:1 not found") },
			status: protocol.StatusDeclined, reason: "start containers: image web:1 not found",
		},
		{
			name:   "expired",
			prep:   func(e *env, p *protocol.Proposal) { p.Time = e.now.Add(-time.Hour) },
			status: protocol.StatusDeclined, reason: "expired",
		},
		{
			name:   "dated in the future",
			prep:   func(e *env, p *protocol.Proposal) { p.Time = e.now.Add(time.Hour) },
			status: protocol.StatusDeclined, reason: "in the future",
		},
		{
			name:   "agreement id with slashes gets a node name",
			prep:   func(e *env, p *protocol.Proposal) { p.Agreement = "acme/ag:1" },
			status: protocol.StatusAccepted, instances: []string{instanceID("acme/ag:1")},
			stores: []string{storeID(instanceID("acme/ag:1"), "web"), storeID(instanceID("acme/ag:1"), "worker")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var edits []func(*Options)
			if tc.opts != nil {
				edits = append(edits, tc.opts)
			}
			e := newEnv(t, edits...)
			p := e.proposal(id, values("1"))
			if tc.prep != nil {
				tc.prep(e, p)
			}
			rep := e.m.Propose(e.ctx, p)
			if rep.Status != tc.status || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("reply = %s %q, want %s containing %q", rep.Status, rep.Reason, tc.status, tc.reason)
			}
			if rep.Type != protocol.TypeProposalReply || rep.Agreement != p.Agreement || rep.From != nodeID || rep.To != agbotID || rep.Seq != 1 {
				t.Errorf("reply meta = %+v", rep.Meta)
			}
			if err := rep.Validate(protocol.Limits{}); err != nil {
				t.Errorf("reply does not validate: %v", err)
			}
			if got, want := e.stores.ids(), slices.Sorted(slices.Values(tc.stores)); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
				t.Errorf("stores = %v, want %v", got, tc.stores)
			}
			if got := e.runner.instances(); !reflect.DeepEqual(got, tc.instances) {
				t.Errorf("instances = %v, want %v", got, tc.instances)
			}
			if calls := e.stores.takeCalls(); tc.storeCalls != nil && !reflect.DeepEqual(calls, tc.storeCalls) && !(len(calls) == 0 && len(tc.storeCalls) == 0) {
				t.Errorf("store calls = %q, want %q", calls, tc.storeCalls)
			}
			r := e.record(p.Agreement)
			if tc.status != protocol.StatusAccepted {
				if r != nil {
					t.Errorf("declined proposal left a record in phase %s", r.Phase)
				}
				return
			}
			if r == nil || r.Phase != PhaseActive || r.Sequence != 1 || len(r.Digests) != 3 {
				t.Fatalf("record = %+v, want active at 1 with 3 digests", r)
			}
			for _, c := range r.Containers {
				if c.ContainerID == "" {
					t.Errorf("container %s has no id", c.Name)
				}
				if c.Name == "sidecar" && c.StoreID != "" {
					t.Errorf("sidecar declares no secret but has store %q", c.StoreID)
				}
			}
			e.wantValues(p.Agreement, map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"})
		})
	}
}

// The deployment's cap_add and max_memory_mb reach the worker, which drops every other
// capability and applies the limit.
func TestProposePassesCapabilitiesAndMemory(t *testing.T) {
	e := newEnv(t)
	p := e.proposal("ag1", values("1"))
	web := p.Service.Deployment.Services["web"]
	web.CapAdd, web.MaxMemoryMB = []string{"NET_BIND_SERVICE"}, 128
	p.Service.Deployment.Services["web"] = web
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		t.Fatalf("reply = %s %q, want accepted", rep.Status, rep.Reason)
	}
	e.runner.mu.Lock()
	specs := e.runner.specs[instanceID("ag1")]
	e.runner.mu.Unlock()
	for _, s := range specs {
		wantCaps, wantMem := []string(nil), int64(0)
		if s.Name == "web" {
			wantCaps, wantMem = []string{"NET_BIND_SERVICE"}, 128
		}
		if !reflect.DeepEqual(s.CapAdd, wantCaps) || s.MemoryMB != wantMem {
			t.Errorf("container %s: CapAdd %q, MemoryMB %d; want %q, %d", s.Name, s.CapAdd, s.MemoryMB, wantCaps, wantMem)
		}
	}
	if len(specs) != 3 {
		t.Errorf("Start got %d containers, want 3", len(specs))
	}
}

// A proposal for an agreement the node holds is accepted again when it comes from the same
// agbot for the same service, whatever its seq or values (the agbot re-offers a proposal whose
// accept was lost, resealed with a fresh time if it waited), and changes nothing on the node.
// Anything else for a known or ended id is refused as a replay.
func TestProposeKnownAgreement(t *testing.T) {
	const id = "ag1"
	inst := instanceID(id)
	applyUpdate := func(e *env) {
		e.t.Helper()
		if rep := e.m.Update(e.ctx, e.update(id, 2, false, values("2", "db_password"))); rep.Status != protocol.StatusApplied {
			e.t.Fatalf("update: %s %q", rep.Status, rep.Reason)
		}
	}
	tests := []struct {
		name  string
		setup func(e *env)                    // after the first proposal was accepted
		p     func(e *env) *protocol.Proposal // the proposal received again
		// want
		status protocol.ReplyStatus
		reason string // substring of the reason
		seq    uint64 // record's applied sequence afterwards
		phase  Phase
		vals   map[string]string // tag per secret on the node afterwards; nil: not checked
	}{
		{
			name:   "accept lost, same proposal re-sent",
			p:      func(e *env) *protocol.Proposal { return e.proposal(id, values("1")) },
			status: protocol.StatusAccepted, seq: 1, phase: PhaseActive,
			vals: map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"},
		},
		{
			name:  "accept lost, resealed with a fresh time and current values",
			setup: func(e *env) { e.now = e.now.Add(3 * time.Minute) },
			p: func(e *env) *protocol.Proposal {
				p := e.proposal(id, values("2"))
				p.Time = e.now
				return p
			},
			// The new values come as an update the agbot queued behind the proposal.
			status: protocol.StatusAccepted, seq: 1, phase: PhaseActive,
			vals: map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"},
		},
		{
			name:   "re-sent after an update applied",
			setup:  applyUpdate,
			p:      func(e *env) *protocol.Proposal { return e.proposal(id, values("1")) },
			status: protocol.StatusAccepted, seq: 2, phase: PhaseActive,
			vals: map[string]string{"api_token": "1", "db_password": "2", "tls_cert": "1"},
		},
		{
			name:  "re-sent with a higher seq than applied",
			setup: applyUpdate,
			p: func(e *env) *protocol.Proposal {
				p := e.proposal(id, values("3"))
				p.Seq = 5
				return p
			},
			status: protocol.StatusAccepted, seq: 2, phase: PhaseActive,
			vals: map[string]string{"api_token": "1", "db_password": "2", "tls_cert": "1"},
		},
		{
			name:  "re-sent while the node waits for a resync",
			setup: func(e *env) { e.stores.lose(); e.restart() },
			p:     func(e *env) *protocol.Proposal { return e.proposal(id, values("1")) },
			// The agreement is held: the resync brings the values back.
			status: protocol.StatusAccepted, seq: 1, phase: PhaseResync,
		},
		{
			name: "other service version, same id",
			p: func(e *env) *protocol.Proposal {
				p := e.proposal(id, values("1"))
				p.Service.Version = "1.3.0"
				return p
			},
			status: protocol.StatusDeclined, reason: "the agreement runs service acme/svc.example 1.2.0", seq: 1, phase: PhaseActive,
			vals: map[string]string{"api_token": "1", "db_password": "1", "tls_cert": "1"},
		},
		{
			name: "other service url, same id",
			p: func(e *env) *protocol.Proposal {
				p := e.proposal(id, values("1"))
				p.Service.URL = "other.example"
				return p
			},
			status: protocol.StatusDeclined, reason: "proposal for a known agreement", seq: 1, phase: PhaseActive,
		},
		{
			name: "other agbot",
			p: func(e *env) *protocol.Proposal {
				p := e.proposal(id, values("1"))
				p.From = "agbot2"
				return p
			},
			status: protocol.StatusDeclined, reason: "another agbot: proposal for a known agreement", seq: 1, phase: PhaseActive,
		},
		{
			name: "ended",
			setup: func(e *env) {
				e.t.Helper()
				if _, err := e.m.Cancel(e.ctx, e.cancel(id, 1)); err != nil {
					e.t.Fatal(err)
				}
				e.stores.takeCalls()
				e.runner.takeCalls()
			},
			p:      func(e *env) *protocol.Proposal { return e.proposal(id, values("1")) },
			status: protocol.StatusDeclined, reason: "proposal for a known agreement",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.accept(id, "1")
			if tc.setup != nil {
				tc.setup(e)
			}
			e.stores.takeCalls()
			e.runner.takeCalls()
			before := e.record(id)
			p := tc.p(e)
			rep := e.m.Propose(e.ctx, p)
			if rep.Status != tc.status || !strings.Contains(rep.Reason, tc.reason) {
				t.Fatalf("reply = %s %q, want %s containing %q", rep.Status, rep.Reason, tc.status, tc.reason)
			}
			if rep.Seq != p.Seq || rep.Agreement != id || rep.To != p.From {
				t.Errorf("reply meta = %+v, want the proposal's agreement, seq %d and agbot %q", rep.Meta, p.Seq, p.From)
			}
			if tc.status == protocol.StatusDeclined && !strings.Contains(rep.Reason, protocol.ErrReplay.Error()) {
				t.Errorf("reason %q does not say replay", rep.Reason)
			}
			if calls := e.runner.takeCalls(); len(calls) != 0 {
				t.Errorf("runner calls = %q, want none", calls)
			}
			if calls := e.stores.takeCalls(); len(calls) != 0 {
				t.Errorf("store calls = %q, want none", calls)
			}
			after := e.record(id)
			if tc.phase == "" {
				if after != nil {
					t.Fatalf("record = %+v, want none", after)
				}
				return
			}
			if after == nil || after.Phase != tc.phase || after.Sequence != tc.seq {
				t.Fatalf("record = %+v, want %s at seq %d", after, tc.phase, tc.seq)
			}
			if !reflect.DeepEqual(after, before) {
				t.Errorf("record changed:\n got %+v\nwant %+v", after, before)
			}
			if got := e.runner.instances(); !reflect.DeepEqual(got, []string{inst}) && tc.phase == PhaseActive {
				t.Errorf("instances = %v, want [%s]", got, inst)
			}
			if tc.vals != nil {
				e.wantValues(id, tc.vals)
			}
			if tc.status == protocol.StatusAccepted && !strings.Contains(e.logs.String(), "accepted again") {
				t.Errorf("no log line for the proposal accepted again")
			}
		})
	}
}

func TestProposeAfterCancelIsRefused(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	if _, err := e.m.Cancel(e.ctx, e.cancel("ag1", 1)); err != nil {
		t.Fatal(err)
	}
	// Replayed within its lifetime, also after a restart: the tombstone is persisted.
	for _, restart := range []bool{false, true} {
		if restart {
			e.restart()
		}
		rep := e.m.Propose(e.ctx, e.proposal("ag1", values("1")))
		if rep.Status != protocol.StatusDeclined || !strings.Contains(rep.Reason, "known agreement") {
			t.Errorf("restart=%v: replayed proposal = %s %q, want declined as known", restart, rep.Status, rep.Reason)
		}
	}
}

// Proposals for different agreements run concurrently: a slow one does not hold up another.
func TestProposeConcurrent(t *testing.T) {
	e := newEnv(t)
	const n = 8
	done := make(chan *protocol.ProposalReply, n)
	for i := 0; i < n; i++ {
		go func() { done <- e.m.Propose(e.ctx, e.proposal(fmt.Sprintf("ag%d", i), values(fmt.Sprint(i)))) }()
	}
	for i := 0; i < n; i++ {
		if rep := <-done; rep.Status != protocol.StatusAccepted {
			t.Errorf("%s: %s %q", rep.Agreement, rep.Status, rep.Reason)
		}
	}
	infos, err := e.m.Agreements()
	if err != nil || len(infos) != n {
		t.Fatalf("Agreements() = %d, %v; want %d", len(infos), err, n)
	}
}

// When even the undo of a declined proposal fails, the agreement stays "accepting": updates
// are refused, and the next start-up finishes the undo.
func TestProposeUndoFails(t *testing.T) {
	e := newEnv(t)
	web := storeID(instanceID("ag1"), "web")
	e.runner.failStart = errors.New("engine down")
	e.stores.failWipe[web] = errors.New("EBUSY")
	if rep := e.m.Propose(e.ctx, e.proposal("ag1", values("1"))); rep.Status != protocol.StatusDeclined {
		t.Fatalf("proposal: %s", rep.Status)
	}
	if r := e.record("ag1"); r == nil || r.Phase != PhaseAccepting {
		t.Fatalf("record = %+v, want accepting", r)
	}
	// Its containers may not run: the same proposal again is not accepted.
	if rep := e.m.Propose(e.ctx, e.proposal("ag1", values("1"))); rep.Status != protocol.StatusDeclined || !strings.Contains(rep.Reason, "was declined") {
		t.Errorf("proposal again = %s %q, want declined", rep.Status, rep.Reason)
	}
	if rep := e.m.Update(e.ctx, e.update("ag1", 2, false, values("2", "api_token"))); rep.Status != protocol.StatusRefused || !strings.Contains(rep.Reason, "was declined") {
		t.Errorf("update = %s %q, want refused", rep.Status, rep.Reason)
	}
	e.runner.failStart = nil
	delete(e.stores.failWipe, web)
	e.restart()
	if r := e.record("ag1"); r != nil {
		t.Errorf("record left after start-up: %+v", r)
	}
	if ids := e.stores.ids(); len(ids) != 0 {
		t.Errorf("stores left: %v", ids)
	}
}

// TestAgreementKeyKept: the key a proposal carries is kept with the agreement (across a
// restart), given only to the agbot that sent it, taken from a re-offer of a running
// agreement that had none, and gone with the agreement.
func TestAgreementKeyKept(t *testing.T) {
	e := newEnv(t)
	const id = "ag1"
	p := e.proposal(id, values("1"))
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		t.Fatalf("propose: %s %q", rep.Status, rep.Reason)
	}
	if k := e.m.AgreementKey(agbotID, id); k != nil {
		t.Fatalf("a key for a proposal that carried none: %d bytes", len(k))
	}
	key := protocol.NewAgreementKey()
	p.AgreementKey = key
	if rep := e.m.Propose(e.ctx, p); rep.Status != protocol.StatusAccepted {
		t.Fatalf("re-offer with a key: %s %q", rep.Status, rep.Reason)
	}
	e.restart()
	for _, tc := range []struct {
		name, peer, agreement string
		want                  protocol.AgreementKey
	}{
		{"its agbot, after a restart", agbotID, id, key},
		{"another agbot", "agbot2", id, nil},
		{"another agreement", agbotID, "ag2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := e.m.AgreementKey(tc.peer, tc.agreement); !bytes.Equal(got, tc.want) {
				t.Errorf("AgreementKey = %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}
	if rep, err := e.m.Cancel(e.ctx, e.cancel(id, 2)); err != nil || rep.Status != protocol.StatusApplied {
		t.Fatalf("cancel: %+v %v", rep, err)
	}
	if k := e.m.AgreementKey(agbotID, id); k != nil {
		t.Error("the key outlived its agreement")
	}
}
