package container

import (
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/client"

	"github.com/edge-secrets/anax-agent/test/dockertest"
)

// A started container is hardened as the engine reports it and as the process sees it: every
// capability dropped but the declared one, no-new-privileges, pids and memory limits.
func TestHardenedContainer(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	got, err := h.Start(ctx, Instance{InstanceID: "agr-hard", Service: testService, Containers: []Spec{
		{Name: "plain", Image: ref},
		{Name: "bind", Image: ref, CapAdd: []string{"net_bind_service"}, MemoryMB: 64},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		id         string
		wantCapAdd []string
		wantMemory int64
		wantCapBnd string // /proc/self/status: the bounding set
	}{
		{"plain", got[0].ID, nil, 0, "0000000000000000"},
		{"cap_add and max_memory_mb", got[1].ID, []string{"CAP_NET_BIND_SERVICE"}, 64 << 20, "0000000000000400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			waitLog(t, cli, tc.id, "ready")
			checkHardened(t, inspect(t, cli, tc.id).HostConfig, tc.wantCapAdd, tc.wantMemory)
			status, code := execIn(t, cli, tc.id, "", "cat", "/proc/self/status")
			if code != 0 {
				t.Fatalf("cat /proc/self/status: %q", status)
			}
			mustContain(t, "/proc/self/status", status, "NoNewPrivs:\t1\n")
			mustContain(t, "/proc/self/status", status, "CapBnd:\t"+tc.wantCapBnd+"\n")
			if out := cgroupFile(t, cli, tc.id, "pids/pids.max", "pids.max"); out != "1024\n" {
				t.Errorf("pids.max = %q, want 1024", out)
			}
		})
	}
	if out := cgroupFile(t, cli, got[1].ID, "memory/memory.limit_in_bytes", "memory.max"); out != "67108864\n" {
		t.Errorf("memory limit = %q, want 67108864", out)
	}
}

// cgroupFile reads a cgroup file inside the container: its cgroup v1 path, else its v2 one.
func cgroupFile(t *testing.T, cli *client.Client, id, v1, v2 string) string {
	t.Helper()
	if out, code := execIn(t, cli, id, "", "cat", "/sys/fs/cgroup/"+v1); code == 0 {
		return out
	}
	out, _ := execIn(t, cli, id, "", "cat", "/sys/fs/cgroup/"+v2)
	return out
}

// A container uid that a host account has is refused, naming both; a free uid and root run.
func TestHostAccountUIDRefused(t *testing.T) {
	cli := dockertest.Client(t)
	h := testWorker(t, cli)
	h.hostFS.passwd = hostPasswd(t, "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
	ctx := bg(t)
	ref := testImage(t, cli, "1000:1000", nil)
	tests := []struct {
		name    string
		user    string
		wantUID int
		wantErr bool
	}{
		{"image USER of a host account", "", 0, true},
		{"service user of a host account", "1000:5", 0, true},
		{"free uid", "1234:1234", 1234, false},
		{"root", "0:0", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, _, err := h.ResolveUser(ctx, ref, tc.user)
			if tc.wantErr {
				if !errors.Is(err, ErrPolicy) {
					t.Fatalf("ResolveUser = %d, %v; want ErrPolicy", uid, err)
				}
				mustContain(t, "error", err.Error(), `container uid 1000 is the uid of host account "alice"`)
				t.Logf("error as reported: %v", err)
				return
			}
			if err != nil || uid != tc.wantUID {
				t.Errorf("ResolveUser = %d, %v; want %d", uid, err, tc.wantUID)
			}
		})
	}
	allowed := testWorkerOpts(t, cli, Options{AllowHostUIDs: []int{1000}})
	allowed.hostFS.passwd = h.hostFS.passwd
	if uid, _, err := allowed.ResolveUser(ctx, ref, ""); err != nil || uid != 1000 {
		t.Errorf("with uid 1000 allowed: ResolveUser = %d, %v; want 1000", uid, err)
	}
}

// Images pinned by digest resolve and run; with RequireImageDigest an image by tag is refused
// before the engine is asked, and a digest the registry does not have is not found.
func TestImageDigestPinning(t *testing.T) {
	cli := dockertest.Client(t)
	ref := testImage(t, cli, "1000:1000", nil)
	pinned, repo := dockertest.PinnedImage(t, cli, ref)
	h := testWorkerOpts(t, cli, Options{RequireImageDigest: true})
	ctx := bg(t)

	if uid, _, err := h.ResolveUser(ctx, pinned, ""); err != nil || uid != 1000 {
		t.Fatalf("ResolveUser(%s) = %d, %v; want 1000", pinned, uid, err)
	}
	got, err := h.Start(ctx, Instance{InstanceID: "agr-pinned", Service: testService, Containers: []Spec{{Name: "web", Image: pinned}}})
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, cli, got[0].ID, "ready")
	local, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if c := inspect(t, cli, got[0].ID); c.Config.Image != pinned || c.Image != local.ID {
		t.Errorf("container image %q (%s), want %q (%s)", c.Config.Image, c.Image, pinned, local.ID)
	}

	t.Run("tag refused", func(t *testing.T) {
		calls := h.rec.total()
		if _, _, err := h.ResolveUser(ctx, ref, ""); !errors.Is(err, ErrPolicy) {
			t.Errorf("ResolveUser(%s) = %v, want ErrPolicy", ref, err)
		}
		_, err := h.Start(ctx, Instance{InstanceID: "agr-tag", Service: testService, Containers: []Spec{{Name: "web", Image: ref}}})
		if !errors.Is(err, ErrPolicy) {
			t.Fatalf("Start(%s) = %v, want ErrPolicy", ref, err)
		}
		mustContain(t, "error", err.Error(), "is not pinned by digest")
		if n := h.rec.total() - calls; n != 0 {
			t.Errorf("%d engine calls before refusing, want 0", n)
		}
	})
	t.Run("unknown digest", func(t *testing.T) {
		absent := repo + "@sha256:" + strings.Repeat("0", 64)
		if _, _, err := h.ResolveUser(ctx, absent, ""); !errors.Is(err, ErrImageNotFound) {
			t.Errorf("ResolveUser(%s) = %v, want ErrImageNotFound", absent, err)
		}
	})
	if n := countContainers(t, cli, h.agent); n != 1 {
		t.Errorf("%d containers, want only the pinned one", n)
	}
}
