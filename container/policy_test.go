package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// The host's passwd decides: a container uid (after the userns-remap shift) that a host account
// has is refused, naming the uid and the account; root, allowed uids and free uids run.
func TestResolveUserRefusesHostAccounts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	files := hostFiles{
		passwd: write("passwd", "root:x:0:0::/root:/bin/sh\ndockremap:x:997:997::/:\nalice:x:1000:1000::/home/alice:/bin/sh\nshadow:x:102000:102000::/:\n"),
		subuid: write("subuid", "dockremap:100000:65536\n"),
		subgid: write("subgid", "dockremap:100000:65536\n"),
	}
	plain := system.Info{SecurityOptions: []string{"name=seccomp,profile=default"}, DockerRootDir: "/var/lib/docker"}
	remap := system.Info{SecurityOptions: []string{"name=userns"}, DockerRootDir: "/var/lib/docker/100000.100000"}
	tests := []struct {
		name     string
		info     system.Info
		user     string
		allow    []int
		passwd   string
		wantUID  int
		wantErr  error
		wantText []string
	}{
		{name: "uid of a host account", info: plain, user: "1000:1000", wantErr: ErrPolicy,
			wantText: []string{"container uid 1000 is the uid of host account \"alice\"", "/proc/<pid>/root", "allow_host_uids"}},
		{name: "uid no host account has", info: plain, user: "1234:1234", wantUID: 1234},
		{name: "gid of a host account only", info: plain, user: "1234:1000", wantUID: 1234},
		{name: "root", info: plain, user: "0:0", wantUID: 0},
		{name: "allowed uid", info: plain, user: "1000:1000", allow: []int{1000}, wantUID: 1000},
		{name: "remap shifts away from a host account", info: remap, user: "1000:1000", wantUID: 101000},
		{name: "remap shifts onto a host account", info: remap, user: "2000:2000", wantErr: ErrPolicy,
			wantText: []string{"container uid 2000 (host uid 102000 under userns-remap) is the uid of host account \"shadow\""}},
		{name: "remap root onto no account", info: remap, user: "0:0", wantUID: 100000},
		{name: "no host passwd", info: plain, user: "1234:1234", passwd: filepath.Join(dir, "absent"), wantErr: os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(fakeEngine{info: tc.info, user: tc.user}, Options{AgentID: "a", AllowHostUIDs: tc.allow})
			if err != nil {
				t.Fatal(err)
			}
			w.hostFS = files
			if tc.passwd != "" {
				w.hostFS.passwd = tc.passwd
			}
			uid, _, err := w.ResolveUser(context.Background(), "img", "")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ResolveUser = %d, %v; want %v", uid, err, tc.wantErr)
				}
				for _, s := range tc.wantText {
					mustContain(t, "error", err.Error(), s)
				}
				return
			}
			if err != nil || uid != tc.wantUID {
				t.Errorf("ResolveUser = %d, %v; want %d", uid, err, tc.wantUID)
			}
		})
	}
	if _, err := New(fakeEngine{}, Options{AgentID: "a", AllowHostUIDs: []int{-1}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with allowed uid -1 = %v, want ErrInvalid", err)
	}
}

func TestPinnedDigest(t *testing.T) {
	tests := []struct {
		ref    string
		want   string
		pinned bool
	}{
		{"nginx", "", false},
		{"nginx:1.27", "", false},
		{"nginx@" + testDigest, testDigest, true},
		{"registry.example:5000/team/app:1.0@" + testDigest, testDigest, true},
		{testDigest, "", false},         // an image id is local to one engine, not a pinned name
		{"nginx@sha256:abc", "", false}, // short digest: not a reference at all
		{"Bad Name@" + testDigest, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			got, pinned := pinnedDigest(tc.ref)
			if got != tc.want || pinned != tc.pinned {
				t.Errorf("pinnedDigest(%q) = %q, %v; want %q, %v", tc.ref, got, pinned, tc.want, tc.pinned)
			}
		})
	}
}

// countingEngine fails the test on any engine call: the policy refuses before the engine.
type countingEngine struct {
	fakeEngine
	calls *int
}

func (c countingEngine) Info(ctx context.Context) (system.Info, error) {
	*c.calls++
	return c.fakeEngine.Info(ctx)
}

// ImageInspect answers as an engine that has ref, pulled by that name.
func (c countingEngine) ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error) {
	*c.calls++
	img, err := c.fakeEngine.ImageInspect(ctx, ref, opts...)
	img.RepoDigests = []string{ref}
	return img, err
}

func TestRequireImageDigest(t *testing.T) {
	tests := []struct {
		name    string
		require bool
		ref     string
		wantErr error
	}{
		{"tag refused", true, "registry.example/app:1.0", ErrPolicy},
		{"image id refused", true, testDigest, ErrPolicy},
		{"digest runs", true, "registry.example/app@" + testDigest, nil},
		{"tag runs without the policy", false, "registry.example/app:1.0", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			w, err := New(countingEngine{fakeEngine: fakeEngine{user: "1234:1234"}, calls: &calls}, Options{AgentID: "a", RequireImageDigest: tc.require})
			if err != nil {
				t.Fatal(err)
			}
			w.hostFS.passwd = filepath.Join(t.TempDir(), "empty")
			if err := os.WriteFile(w.hostFS.passwd, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, rerr := w.ResolveUser(context.Background(), tc.ref, "")
			_, perr := w.plan(Instance{InstanceID: "agr", Service: testService, Containers: []Spec{{Name: "c", Image: tc.ref}}})
			for what, err := range map[string]error{"ResolveUser": rerr, "Start's plan": perr} {
				if tc.wantErr == nil {
					if err != nil {
						t.Errorf("%s = %v, want nil", what, err)
					}
					continue
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%s = %v, want %v", what, err, tc.wantErr)
				}
				mustContain(t, what, err.Error(), "is not pinned by digest")
				mustContain(t, what, err.Error(), tc.ref)
			}
			if tc.wantErr != nil && calls != 0 {
				t.Errorf("%d engine calls before refusing, want 0", calls)
			}
		})
	}
}

// An image the engine returns for name@digest must carry that digest.
func TestCheckResolvedDigest(t *testing.T) {
	other := "sha256:" + strings.Repeat("f", 64)
	tests := []struct {
		name    string
		ref     string
		digests []string
		wantErr bool
	}{
		{"matches", "app@" + testDigest, []string{"registry.example/app@" + other, "app@" + testDigest}, false},
		{"no such digest", "app@" + testDigest, []string{"app@" + other}, true},
		{"no repo digests", "app@" + testDigest, nil, true},
		{"tag is not checked", "app:1", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkResolvedDigest(tc.ref, image.InspectResponse{ID: "sha256:x", RepoDigests: tc.digests})
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("checkResolvedDigest = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrImageNotFound) {
				t.Errorf("error %v does not wrap ErrImageNotFound", err)
			}
		})
	}
}

// BenchmarkCheckHostUID: the per-container cost of the host-account check on a host with
// 1,000 accounts (the uid is free, so every line is read).
func BenchmarkCheckHostUID(b *testing.B) {
	var passwd strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&passwd, "user%d:x:%d:%d::/home/user%d:/bin/sh\n", i, 2000+i, 2000+i, i)
	}
	p := filepath.Join(b.TempDir(), "passwd")
	if err := os.WriteFile(p, []byte(passwd.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := New(fakeEngine{}, Options{AgentID: "a"})
	if err != nil {
		b.Fatal(err)
	}
	w.hostFS.passwd = p
	for b.Loop() {
		if err := w.checkHostUID(1000, 1000); err != nil {
			b.Fatal(err)
		}
	}
}
