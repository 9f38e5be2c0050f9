package linux

import (
	"reflect"
	"testing"
)

func TestParseOptional(t *testing.T) {
	tests := []struct {
		name                 string
		in                   string
		shared, master, from int
		unbindable, wantErr  bool
	}{
		{"none", "", 0, 0, 0, false, false},
		{"slave", "master:1", 0, 1, 0, false, false},
		{"shared and slave and propagate_from", "shared:7 master:2 propagate_from:3", 7, 2, 3, false, false},
		{"unbindable and unknown field", "unbindable future:9", 0, 0, 0, true, false},
		{"bad group", "shared:x", 0, 0, 0, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sh, ma, pf, ub, err := parseOptional(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && (sh != tc.shared || ma != tc.master || pf != tc.from || ub != tc.unbindable) {
				t.Errorf("parseOptional(%q) = %d %d %d %v", tc.in, sh, ma, pf, ub)
			}
		})
	}
}

func TestStack(t *testing.T) {
	// Kernel order is not stack order: 47 sits on 48, which sits on 45.
	mounts := []MountInfo{
		{ID: 45, Parent: 43, Mountpoint: "/p", Root: "/v1"},
		{ID: 47, Parent: 48, Mountpoint: "/p", Root: "/v2"},
		{ID: 48, Parent: 45, Mountpoint: "/p", Root: "/v3"},
		{ID: 50, Parent: 43, Mountpoint: "/q", Root: "/w"},
	}
	tests := []struct {
		name       string
		mountpoint string
		want       []string
	}{
		{"three deep", "/p", []string{"/v1", "/v3", "/v2"}},
		{"one", "/q", []string{"/w"}},
		{"none", "/r", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, m := range Stack(mounts, tc.mountpoint) {
				got = append(got, m.Root)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Stack(%q) roots = %v, want %v", tc.mountpoint, got, tc.want)
			}
		})
	}
}

func TestHasOption(t *testing.T) {
	m := MountInfo{Options: "ro,nosuid,nodev,noexec,relatime", SuperOptions: "rw,size=1024k,mode=700,noswap"}
	tests := []struct {
		name  string
		super bool
		opt   string
		want  bool
	}{
		{"ro", false, "ro", true},
		{"noexec", false, "noexec", true},
		{"not a prefix match", false, "no", false},
		{"noswap", true, "noswap", true},
		{"mode", true, "mode=700", true},
		{"rw not per mount", false, "rw", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.HasOption(tc.opt)
			if tc.super {
				got = m.HasSuperOption(tc.opt)
			}
			if got != tc.want {
				t.Errorf("option %q = %v, want %v", tc.opt, got, tc.want)
			}
		})
	}
}

func TestHidesPIDs(t *testing.T) {
	tests := []struct {
		name, opts string
		want       bool
	}{
		{"default", "rw", false},
		{"hidepid=0", "rw,hidepid=0", false},
		{"hidepid=off", "rw,hidepid=off", false},
		{"hidepid=1", "rw,hidepid=1", true},
		{"hidepid=2 with gid", "rw,gid=4,hidepid=2", true},
		{"invisible", "rw,hidepid=invisible", true},
		{"noaccess", "rw,hidepid=noaccess", true},
		{"subset only", "rw,subset=pid", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hidesPIDs(tc.opts); got != tc.want {
				t.Errorf("hidesPIDs(%q) = %v, want %v", tc.opts, got, tc.want)
			}
		})
	}
}
