package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edge-secrets/anax-agent/protocol"
)

func TestParseSubIDs(t *testing.T) {
	content := []byte("# ranges\nalice:100000:65536\ndockremap:165536:65536\n\ndockremap:300000:10\n1001:500000:65536\n")
	tests := []struct {
		name    string
		content []byte
		user    string
		want    []idRange
		wantErr bool
	}{
		{name: "one range", content: content, user: "alice", want: []idRange{{100000, 65536}}},
		{name: "two ranges in file order", content: content, user: "dockremap", want: []idRange{{165536, 65536}, {300000, 10}}},
		{name: "by uid", content: content, user: "1001", want: []idRange{{500000, 65536}}},
		{name: "absent", content: content, user: "bob", want: nil},
		{name: "two fields", content: []byte("alice:1\n"), user: "alice", wantErr: true},
		{name: "bad start", content: []byte("alice:x:10\n"), user: "alice", wantErr: true},
		{name: "zero count", content: []byte("alice:10:0\n"), user: "alice", wantErr: true},
		{name: "past max id", content: []byte("alice:2147483000:1000\n"), user: "alice", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSubIDs(tc.content, tc.user)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseSubIDs = %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("parseSubIDs = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("range %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestIDMap(t *testing.T) {
	// Out of order on purpose: the map sorts by host start, as moby does.
	m := newIDMap([]idRange{{300000, 10}, {165536, 65536}})
	tests := []struct {
		name   string
		id     int
		want   int
		wantOK bool
	}{
		{"root", 0, 165536, true},
		{"1000", 1000, 166536, true},
		{"last of first range", 65535, 231071, true},
		{"first of second range", 65536, 300000, true},
		{"last of second range", 65545, 300009, true},
		{"unmapped", 65546, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := m.toHost(tc.id)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("toHost(%d) = %d, %v; want %d, %v", tc.id, got, ok, tc.want, tc.wantOK)
			}
		})
	}
	if got, ok := idMap(nil).toHost(1234); got != 1234 || !ok {
		t.Errorf("identity toHost(1234) = %d, %v; want 1234, true", got, ok)
	}
}

func TestUserIDMaps(t *testing.T) {
	passwd := []byte("root:x:0:0::/:\ndockremap:x:999:999::/:\n")
	tests := []struct {
		name           string
		subuid, subgid string
		wantRootUID    int
		wantRootGID    int
		wantErr        bool
	}{
		{name: "by name", subuid: "dockremap:100000:65536\n", subgid: "dockremap:200000:65536\n", wantRootUID: 100000, wantRootGID: 200000},
		{name: "uid lines win over name lines", subuid: "dockremap:100000:65536\n999:400000:65536\n", subgid: "dockremap:200000:65536\n", wantRootUID: 400000, wantRootGID: 200000},
		{name: "no uid ranges", subuid: "someone:100000:65536\n", subgid: "dockremap:200000:65536\n", wantErr: true},
		{name: "no gid ranges", subuid: "dockremap:100000:65536\n", subgid: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uids, gids, err := userIDMaps("dockremap", passwd, []byte(tc.subuid), []byte(tc.subgid))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("userIDMaps = %v %v, want an error", uids, gids)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, _ := uids.toHost(0)
			g, _ := gids.toHost(0)
			if u != tc.wantRootUID || g != tc.wantRootGID {
				t.Errorf("root maps to %d:%d, want %d:%d", u, g, tc.wantRootUID, tc.wantRootGID)
			}
		})
	}
}

func TestRemapRootFromDir(t *testing.T) {
	tests := []struct {
		dir      string
		uid, gid int
		ok       bool
	}{
		{"/var/lib/docker/100000.100000", 100000, 100000, true},
		{"/var/lib/docker/165536.165537", 165536, 165537, true},
		{"/var/lib/docker", 0, 0, false},
		{"/srv/docker.d", 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			uid, gid, ok := remapRootFromDir(tc.dir)
			if uid != tc.uid || gid != tc.gid || ok != tc.ok {
				t.Errorf("remapRootFromDir(%q) = %d, %d, %v; want %d, %d, %v", tc.dir, uid, gid, ok, tc.uid, tc.gid, tc.ok)
			}
		})
	}
}

// TestOnUpdateLabel: the container takes protocol's parsed onUpdate and writes its label;
// a typed value that protocol would not produce is refused.
func TestOnUpdateLabel(t *testing.T) {
	tests := []struct {
		name    string
		in      protocol.OnUpdate
		want    string
		wantErr bool
	}{
		{name: "none", in: protocol.OnUpdate{}, want: "none"},
		{name: "restart", in: protocol.OnUpdate{Kind: protocol.OnUpdateRestart}, want: "restart"},
		{name: "hup", in: protocol.OnUpdate{Kind: protocol.OnUpdateSignal, Signal: "SIGHUP"}, want: "signal:SIGHUP"},
		{name: "kill", in: protocol.OnUpdate{Kind: protocol.OnUpdateSignal, Signal: "SIGKILL"}, wantErr: true},
		{name: "empty signal", in: protocol.OnUpdate{Kind: protocol.OnUpdateSignal}, wantErr: true},
		{name: "unknown kind", in: protocol.OnUpdate{Kind: 9}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := onUpdateLabel(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("onUpdateLabel(%+v) = %q, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("onUpdateLabel(%+v) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// fakeEngine answers Info and ImageInspect only: enough for ResolveUser on a numeric user,
// to check the userns-remap shift without reconfiguring the machine's dockerd.
type fakeEngine struct {
	Docker // nil: any other call panics
	info   system.Info
	user   string
}

func (f fakeEngine) Info(context.Context) (system.Info, error) { return f.info, nil }
func (f fakeEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (image.InspectResponse, error) {
	return image.InspectResponse{Config: &dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{User: f.user}}}, nil
}

func TestResolveUserUsernsRemap(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := hostFiles{
		passwd: write("passwd", "root:x:0:0::/:\ndockremap:x:997:997::/:\n"),
		subuid: write("subuid", "dockremap:100000:65536\n"),
		subgid: write("subgid", "dockremap:200000:65536\n"),
	}
	userns := []string{"name=seccomp,profile=default", "name=userns"}
	tests := []struct {
		name             string
		info             system.Info
		user             string
		wantUID, wantGID int
		wantErr          string
	}{
		{name: "no remap", info: system.Info{SecurityOptions: []string{"name=seccomp,profile=default"}, DockerRootDir: "/var/lib/docker"},
			user: "1000:1000", wantUID: 1000, wantGID: 1000},
		{name: "remap", info: system.Info{SecurityOptions: userns, DockerRootDir: "/var/lib/docker/100000.200000"},
			user: "1000:1000", wantUID: 101000, wantGID: 201000},
		{name: "remap root", info: system.Info{SecurityOptions: userns, DockerRootDir: "/var/lib/docker/100000.200000"},
			user: "0:0", wantUID: 100000, wantGID: 200000},
		{name: "outside the range", info: system.Info{SecurityOptions: userns, DockerRootDir: "/var/lib/docker/100000.200000"},
			user: "70000:1", wantErr: "outside the ranges"},
		{name: "dockerd disagrees", info: system.Info{SecurityOptions: userns, DockerRootDir: "/var/lib/docker/300000.300000"},
			user: "1000:1000", wantErr: "set Options.RemapUser"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(fakeEngine{info: tc.info, user: tc.user}, Options{AgentID: "a"})
			if err != nil {
				t.Fatal(err)
			}
			w.hostFS = files
			uid, gid, err := w.ResolveUser(context.Background(), "img", "")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ResolveUser = %d:%d, %v; want an error saying %q", uid, gid, err, tc.wantErr)
				}
				return
			}
			if err != nil || uid != tc.wantUID || gid != tc.wantGID {
				t.Errorf("ResolveUser = %d:%d, %v; want %d:%d", uid, gid, err, tc.wantUID, tc.wantGID)
			}
		})
	}
}
