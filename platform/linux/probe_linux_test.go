package linux

import (
	"os"
	"testing"

	"github.com/edge-secrets/anax-agent/test/testenv"
)

// TestProbe runs the probes on this machine's kernel. The expectations follow the kernel
// version, so the test also checks that no probe reports a feature the kernel cannot have.
func TestProbe(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	// Keep the scratch mounts from propagating anywhere: mount a private tmpfs first.
	if err := MountTmpfs(dir, "anax-probe-test", Tmpfs{Size: 1 << 20, Inodes: 128, Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnmountAll(dir) })
	if err := SetPropagation(dir, Private); err != nil {
		t.Fatal(err)
	}
	f := Probe(dir)
	t.Logf("features: %+v", f)
	kv, err := ParseKernelRelease(f.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name         string
		got          bool
		major, minor int
	}{
		{"MountPrivilege", f.MountPrivilege, 0, 0},
		{"Shared", f.Shared, 0, 0},
		{"NewMountAPI", f.NewMountAPI, 5, 12},
		{"SetGroup", f.SetGroup, 5, 15},
		{"TmpfsNoswap", f.TmpfsNoswap, 6, 4},
		{"MoveMountBeneath", f.MoveMountBeneath, 6, 5},
	}
	for _, c := range checks {
		if want := kv.AtLeast(c.major, c.minor); c.got != want {
			t.Errorf("%s = %v on kernel %s, want %v (as root)", c.name, c.got, f.Kernel, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("probe left %d entries behind in %s", len(entries), dir)
	}
	mounts, err := SelfMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(Stack(mounts, dir+"/m")); n != 0 {
		t.Errorf("probe left %d mounts at %s/m", n, dir)
	}
}

func TestForeignMountsSkipsSelf(t *testing.T) {
	testenv.RequireRoot(t)
	self, err := MountNS("self")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := ForeignMounts(self)
	if err != nil {
		t.Fatal(err)
	}
	own, err := SelfMountinfo()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[[2]int]bool{}
	for _, m := range own {
		ids[[2]int{m.ID, m.Parent}] = true
	}
	// Mount ids are global, so a foreign namespace never lists one of our (id, parent) pairs for
	// the same mountpoint; a scan that included our own namespace would list all of them.
	same := 0
	for _, m := range mounts {
		if ids[[2]int{m.ID, m.Parent}] {
			same++
		}
	}
	if len(own) > 0 && same == len(own) {
		t.Errorf("ForeignMounts returned our own namespace's %d mounts", same)
	}
}

func TestParseNSLink(t *testing.T) {
	tests := []struct {
		name    string
		link    string
		want    uint64
		wantErr bool
	}{
		{"mnt", "mnt:[4026531832]", 4026531832, false},
		{"no brackets", "mnt:4026531832", 0, true},
		{"not a number", "mnt:[x]", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNSLink(tc.link)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseNSLink(%q) = %d, %v; want %d, wantErr %v", tc.link, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
