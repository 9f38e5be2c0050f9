package container

import (
	"errors"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// The host configuration Start asks the engine for: every capability dropped but those the
// deployment declares, no-new-privileges, a pids limit, the deployment's memory limit.
func TestPlanHostConfig(t *testing.T) {
	tests := []struct {
		name       string
		extraCaps  []string
		spec       Spec
		wantCapAdd []string
		wantMemory int64
		wantErr    string
		wantIs     error // default ErrInvalid
	}{
		{name: "defaults", spec: Spec{}},
		{name: "declared capabilities", spec: Spec{CapAdd: []string{"net_bind_service", "CAP_CHOWN", "NET_BIND_SERVICE"}},
			wantCapAdd: []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN"}},
		{name: "memory limit without swap", spec: Spec{MemoryMB: 64}, wantMemory: 64 << 20},
		{name: "ALL refused", spec: Spec{CapAdd: []string{"ALL"}}, wantErr: `capability "ALL": ALL is refused`},
		{name: "unknown capability", spec: Spec{CapAdd: []string{"CAP_ROOT"}}, wantErr: "not a Linux capability"},
		{name: "capability beyond Docker's defaults", spec: Spec{CapAdd: []string{"CHOWN", "SYS_ADMIN"}},
			wantErr: "CAP_SYS_ADMIN is not among Docker's default capabilities", wantIs: ErrPolicy},
		{name: "extra capability the node allows", extraCaps: []string{"sys_time"}, spec: Spec{CapAdd: []string{"SYS_TIME"}},
			wantCapAdd: []string{"CAP_SYS_TIME"}},
		{name: "memory too small", spec: Spec{MemoryMB: 1}, wantErr: "memory limit 1 MiB"},
		{name: "negative memory", spec: Spec{MemoryMB: -5}, wantErr: "memory limit -5 MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Any engine call would panic: the host configuration is planned without one.
			w, err := New(&recorder{}, Options{AgentID: "a", ExtraCapabilities: tc.extraCaps})
			if err != nil {
				t.Fatal(err)
			}
			spec := tc.spec
			spec.Name, spec.Image = "c", "img"
			plans, err := w.plan(Instance{InstanceID: "agr", Service: testService, Containers: []Spec{spec}})
			if tc.wantErr != "" {
				want := tc.wantIs
				if want == nil {
					want = ErrInvalid
				}
				if !errors.Is(err, want) {
					t.Fatalf("plan = %v, want %v", err, want)
				}
				mustContain(t, "error", err.Error(), tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkHardened(t, plans[0].host, tc.wantCapAdd, tc.wantMemory)
		})
	}
}

// checkHardened checks a host configuration, planned or as the engine reports it.
func checkHardened(t *testing.T, h *container.HostConfig, wantCapAdd []string, wantMemory int64) {
	t.Helper()
	if !slices.Equal(h.CapDrop, []string{"ALL"}) {
		t.Errorf("CapDrop = %q, want [ALL]", h.CapDrop)
	}
	if !slices.Equal(h.CapAdd, wantCapAdd) {
		t.Errorf("CapAdd = %q, want %q", h.CapAdd, wantCapAdd)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges") && !slices.Contains(h.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("SecurityOpt = %q, want no-new-privileges", h.SecurityOpt)
	}
	if h.PidsLimit == nil || *h.PidsLimit != DefaultPidsLimit {
		t.Errorf("PidsLimit = %v, want %d", h.PidsLimit, DefaultPidsLimit)
	}
	if h.Memory != wantMemory || h.MemorySwap != wantMemory {
		t.Errorf("Memory, MemorySwap = %d, %d; want %d for both", h.Memory, h.MemorySwap, wantMemory)
	}
	if h.Privileged {
		t.Errorf("Privileged = true")
	}
}

func TestNewRefusesBadExtraCapability(t *testing.T) {
	for _, name := range []string{"ALL", "CAP_NOPE"} {
		if _, err := New(&recorder{}, Options{AgentID: "a", ExtraCapabilities: []string{name}}); !errors.Is(err, ErrInvalid) {
			t.Errorf("New with extra capability %q = %v, want ErrInvalid", name, err)
		}
	}
}
