package agreement

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/edge-secrets/anax-agent/container"
	"github.com/edge-secrets/anax-agent/protocol"
)

func TestCancel(t *testing.T) {
	const id = "ag1"
	inst := instanceID(id)
	tests := []struct {
		name    string
		prep    func(e *env)
		c       func(e *env) *protocol.Cancel
		status  protocol.ReplyStatus // "" : an error is wanted
		errText string
		phase   Phase // of the record left; "" : none
	}{
		{
			name:   "cancel",
			c:      func(e *env) *protocol.Cancel { return e.cancel(id, 1) },
			status: protocol.StatusApplied,
		},
		{
			name:   "cancel with a later sequence",
			prep:   func(e *env) { e.apply(e.update(id, 2, false, values("2", "api_token"))) },
			c:      func(e *env) *protocol.Cancel { return e.cancel(id, 3) },
			status: protocol.StatusApplied,
		},
		{
			name: "twice",
			prep: func(e *env) {
				if _, err := e.m.Cancel(e.ctx, e.cancel(id, 1)); err != nil {
					e.t.Fatal(err)
				}
			},
			c:      func(e *env) *protocol.Cancel { return e.cancel(id, 1) },
			status: protocol.StatusDuplicate,
		},
		{
			name:   "unknown agreement",
			c:      func(e *env) *protocol.Cancel { return e.cancel("ag9", 1) },
			status: protocol.StatusDuplicate, phase: PhaseActive, // ag1 untouched
		},
		{
			name: "from another agbot",
			c: func(e *env) *protocol.Cancel {
				c := e.cancel(id, 1)
				c.From = "agbot2"
				return c
			},
			errText: `comes from "agbot2"`, phase: PhaseActive,
		},
		{
			name:    "containers will not stop: kept as cancelling",
			prep:    func(e *env) { e.runner.failStop = errors.New("engine unreachable") },
			c:       func(e *env) *protocol.Cancel { return e.cancel(id, 1) },
			errText: "stop containers: engine unreachable", phase: PhaseCancelling,
		},
		{
			name:    "invalid",
			c:       func(e *env) *protocol.Cancel { c := e.cancel(id, 1); c.Version = 9; return c },
			errText: "invalid cancel", phase: PhaseActive,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.accept(id, "1")
			if tc.prep != nil {
				tc.prep(e)
			}
			c := tc.c(e)
			rep, err := e.m.Cancel(e.ctx, c)
			if tc.status == "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("Cancel = %v, %v; want error containing %q", rep, err, tc.errText)
				}
			} else {
				if err != nil {
					t.Fatalf("Cancel: %v", err)
				}
				if rep.Status != tc.status || rep.Seq != c.Seq || rep.To != c.From {
					t.Fatalf("reply = %+v, want %s", rep, tc.status)
				}
				if err := rep.Validate(protocol.Limits{}); err != nil {
					t.Errorf("reply does not validate: %v", err)
				}
			}
			r := e.record(id)
			switch {
			case tc.phase == "" && r != nil:
				t.Errorf("record left in phase %s", r.Phase)
			case tc.phase != "" && (r == nil || r.Phase != tc.phase):
				t.Errorf("record = %v, want phase %s", r, tc.phase)
			}
			if tc.phase == "" {
				if ids := e.stores.ids(); len(ids) != 0 {
					t.Errorf("stores left: %v", ids)
				}
				if insts := e.runner.instances(); len(insts) != 0 {
					t.Errorf("containers left: %v", insts)
				}
			}
			if tc.phase == PhaseCancelling {
				// The retry (or the next start) finishes it.
				e.runner.failStop = nil
				if rep, err := e.m.Cancel(e.ctx, c); err != nil || rep.Status != protocol.StatusApplied {
					t.Fatalf("retried cancel = %v, %v", rep, err)
				}
				if e.record(id) != nil || len(e.stores.ids()) != 0 || len(e.runner.instances()) != 0 {
					t.Errorf("retried cancel left something")
				}
			}
			_ = inst
		})
	}
}

func TestEnd(t *testing.T) {
	e := newEnv(t)
	e.accept("ag1", "1")
	e.apply(e.update("ag1", 4, false, values("4", "api_token")))
	c, err := e.m.End(e.ctx, "ag1", "node unregistered")
	if err != nil {
		t.Fatal(err)
	}
	want := protocol.Meta{Version: protocol.ProtocolVersion, Type: protocol.TypeCancel, Agreement: "ag1", From: nodeID, To: agbotID, Seq: 4, Time: e.now}
	if !reflect.DeepEqual(c.Meta, want) || c.Reason != "node unregistered" {
		t.Errorf("cancel = %+v, want %+v", c, want)
	}
	if err := c.Validate(protocol.Limits{}); err != nil {
		t.Errorf("cancel does not validate: %v", err)
	}
	if e.record("ag1") != nil || len(e.stores.ids()) != 0 || len(e.runner.instances()) != 0 {
		t.Errorf("End left something")
	}
	if _, err := e.m.End(e.ctx, "ag1", "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("End again = %v, want ErrNotFound", err)
	}
}

func TestContainerDied(t *testing.T) {
	tests := []struct {
		name      string
		instance  string
		wantNote  string
		wantCalls []string
	}{
		{"of an agreement: noted", instanceID("ag1"), "container web exited with code 3 at 2026-11-28T12:00:00Z", nil},
		{"of no agreement: removed", "zz", "", []string{"stop zz"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.accept("ag1", "1")
			d := container.Death{Container: container.Container{ID: "c9", InstanceID: tc.instance, Spec: "web"}, ExitCode: 3, Time: e.now}
			if err := e.m.ContainerDied(e.ctx, d); err != nil {
				t.Fatal(err)
			}
			if got := e.record("ag1").Note; got != tc.wantNote {
				t.Errorf("note = %q, want %q", got, tc.wantNote)
			}
			if got := e.runner.takeCalls(); !reflect.DeepEqual(got, tc.wantCalls) {
				t.Errorf("runner calls = %q, want %q", got, tc.wantCalls)
			}
		})
	}
}
