package linux

import (
	"errors"
	"os"
	"path/filepath"
)

// Features is what Probe found the kernel and our privileges allow.
type Features struct {
	Kernel           string // uname -r
	MountPrivilege   bool   // we may mount a tmpfs
	NewMountAPI      bool   // open_tree, move_mount and mount_setattr (5.12+)
	SetGroup         bool   // move_mount(MOVE_MOUNT_SET_GROUP) (5.15+) and slave mounts of that group
	MoveMountBeneath bool   // move_mount(MOVE_MOUNT_BENEATH) in both ways secretfs uses it (6.5+)
	TmpfsNoswap      bool   // tmpfs accepts "noswap" (6.4+)
	Shared           bool   // a mount under the probe directory can be made shared
}

// Probe tries each feature on scratch mounts under dir (which must exist, be empty, and lie in a
// private mount so nothing propagates out) and removes them again. It never fails: a feature
// that does not work is reported false.
func Probe(dir string) Features {
	f := Features{Kernel: KernelRelease()}
	scratch := filepath.Join(dir, "m")
	if err := os.Mkdir(scratch, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return f
	}
	defer os.Remove(scratch)
	small := Tmpfs{Size: 64 << 10, Inodes: 64, Mode: 0o700}
	if MountTmpfs(scratch, "anax-probe", small) != nil {
		return f
	}
	f.MountPrivilege = true
	defer UnmountAll(scratch)

	noswap := filepath.Join(scratch, "noswap")
	if os.Mkdir(noswap, 0o700) == nil {
		t := small
		t.NoSwap = true
		if MountTmpfs(noswap, "anax-probe", t) == nil {
			f.TmpfsNoswap = true
			UnmountAll(noswap)
		}
	}

	f.Shared = SetPropagation(scratch, Private) == nil && probeShared(scratch)
	f.NewMountAPI = probeNewAPI(scratch)
	if !f.NewMountAPI || !f.Shared {
		return f
	}
	f.SetGroup, f.MoveMountBeneath = probeGroupAndBeneath(scratch)
	return f
}

// probeShared makes a bind of a sub-directory shared.
func probeShared(scratch string) bool {
	dir := filepath.Join(scratch, "shared")
	if os.Mkdir(dir, 0o700) != nil {
		return false
	}
	d, err := Clone(scratch)
	if err != nil {
		return false
	}
	if d.MoveTo(dir, false) != nil {
		return false
	}
	defer UnmountAll(dir)
	return SetPropagation(dir, Shared) == nil
}

func probeNewAPI(scratch string) bool {
	src, dst := filepath.Join(scratch, "src"), filepath.Join(scratch, "dst")
	if os.WriteFile(src, nil, 0o400) != nil || os.WriteFile(dst, nil, 0o400) != nil {
		return false
	}
	d, err := Clone(src)
	if err != nil {
		return false
	}
	if d.SetAttr(SecretAttrs, 0) != nil {
		d.Close()
		return false
	}
	if d.MoveTo(dst, false) != nil {
		return false
	}
	UnmountAll(dst)
	return true
}

// probeGroupAndBeneath replays, on scratch files, the two patterns secretfs uses:
//  1. a publish point: slave mounts of a shared group bind, replaced by mounting the next one
//     beneath and unmounting the top;
//  2. a feed point on the shared group bind itself: the same beneath-and-unmount.
func probeGroupAndBeneath(scratch string) (setGroup, beneath bool) {
	group := filepath.Join(scratch, "group")
	pub := filepath.Join(scratch, "pub")
	v1, v2 := filepath.Join(scratch, "v1"), filepath.Join(scratch, "v2")
	for _, p := range []string{pub, v1, v2} {
		if os.WriteFile(p, nil, 0o400) != nil {
			return false, false
		}
	}
	if os.Mkdir(group, 0o700) != nil {
		return false, false
	}
	d, err := Clone(scratch)
	if err != nil || d.MoveTo(group, false) != nil {
		return false, false
	}
	defer UnmountAll(group)
	if SetPropagation(group, Shared) != nil {
		return false, false
	}
	slave := func(src string) (*Detached, error) {
		d, err := Clone(src)
		if err != nil {
			return nil, err
		}
		if err := d.JoinGroup(group); err != nil {
			d.Close()
			return nil, err
		}
		if err := d.SetAttr(SecretAttrs, Slave); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	d, err = slave(v1)
	if err != nil || d.MoveTo(pub, false) != nil {
		return false, false
	}
	defer UnmountAll(pub)
	setGroup = true

	// Pattern 1: publish point.
	d, err = slave(v2)
	if err != nil || d.MoveTo(pub, true) != nil || Unmount(pub) != nil {
		return setGroup, false
	}
	// Pattern 2: feed point on the shared group mount.
	feed := filepath.Join(group, "v1")
	for i, src := range []string{v2, v1} {
		d, err := Clone(src)
		if err != nil || d.SetAttr(SecretAttrs, 0) != nil || d.MoveTo(feed, i > 0) != nil {
			return setGroup, false
		}
	}
	if Unmount(feed) != nil {
		return setGroup, false
	}
	UnmountAll(feed)
	return setGroup, true
}
