package secretfs

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/edge-secrets/anax-agent/platform/linux"
)

// Mount recipes, one function per step. Every mount that exposes a secret is read-only,
// nosuid, nodev and noexec, and is configured completely while still detached.

// slaveClone returns a detached read-only clone of a version file (or the view directory, rel
// "view") that is a slave of the store's feed: a container's copy of it is then a slave of the
// feed too, so whatever the feed mounts on that version later reaches the container.
//
// It clones through the feed itself: a clone of a shared mount is a peer of it (and read-only
// like the feed), so one mount_setattr makes it a slave. A version that is new has nothing
// mounted on it in the feed yet, so the clone is the version itself.
func (f *FS) slaveClone(st *store, rel string) (*linux.Detached, error) {
	d, err := linux.Clone(filepath.Join(f.lay.feed(st.id), rel))
	if err != nil {
		return nil, err
	}
	if err := d.SetAttr(linux.SecretAttrs, linux.Slave); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// clone returns a detached read-only clone of src with the given propagation (0: unchanged).
func clone(src string, propagation uint64) (*linux.Detached, error) {
	d, err := linux.Clone(src)
	if err != nil {
		return nil, err
	}
	if err := d.SetAttr(linux.SecretAttrs, propagation); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// mountFeed creates the feed of a mount-swap store: a read-only bind of the whole store, made
// shared, that every publish point is a slave of. It returns the feed's peer group.
func (f *FS) mountFeed(st *store) (int, error) {
	feed := f.lay.feed(st.id)
	if err := os.Mkdir(feed, 0o700); err != nil {
		return 0, err
	}
	d, err := clone(f.lay.store(st.id), 0)
	if err != nil {
		return 0, err
	}
	if err := d.MoveTo(feed, false); err != nil {
		return 0, err
	}
	f.crashPoint("create: feed mounted")
	if err := linux.SetPropagation(feed, linux.Shared); err != nil {
		return 0, err
	}
	f.crashPoint("create: feed shared")
	mounts, err := linux.SelfMountinfo()
	if err != nil {
		return 0, err
	}
	stack := linux.Stack(mounts, feed)
	if len(stack) == 0 || stack[len(stack)-1].Shared == 0 {
		return 0, fmt.Errorf("feed %s: not a shared mount after mounting it", feed)
	}
	return stack[len(stack)-1].Shared, nil
}

// publishFirst attaches version gen of name at its (new, empty) publish point.
func (f *FS) publishFirst(st *store, name string, gen uint64) error {
	p := f.lay.publish(st.id, name)
	if err := os.WriteFile(p, nil, 0o400); err != nil {
		return err
	}
	f.crashPoint("create: publish file made")
	var d *linux.Detached
	var err error
	if st.mode == ModeMountSwap {
		d, err = f.slaveClone(st, versionRel(name, gen))
	} else {
		d, err = clone(f.lay.version(st.id, name, gen), linux.Shared)
	}
	if err != nil {
		return err
	}
	return d.MoveTo(p, false)
}

// mountView binds the store's view directory read-only at view/<id>.
func (f *FS) mountView(st *store) error {
	target := f.lay.viewMount(st.id)
	if err := os.Mkdir(target, 0o700); err != nil {
		return err
	}
	var d *linux.Detached
	var err error
	if st.mode == ModeMountSwap {
		d, err = f.slaveClone(st, "view")
	} else {
		d, err = clone(f.lay.view(st.id), linux.Shared)
	}
	if err != nil {
		return err
	}
	return d.MoveTo(target, false)
}

// swapPublish makes version gen the one visible at the publish point of name.
//
//	mount-swap:  mount gen beneath the top, then move the top to the trash: one deep.
//	mount-stack: mount gen on top: containers see it through propagation; the stack grows.
//	restart:     link gen to files/.tmp.<name> and rename it over files/<name>.
func (f *FS) swapPublish(st *store, name string, gen uint64) error {
	src := f.lay.version(st.id, name, gen)
	p := f.lay.publish(st.id, name)
	switch st.mode {
	case ModeMountSwap:
		d, err := f.slaveClone(st, versionRel(name, gen))
		if err != nil {
			return err
		}
		if err := d.MoveTo(p, true); err != nil {
			return err
		}
		f.crashPoint("publish: new version mounted beneath")
		// The old top's parent is the new mount, a slave (not shared), so it may be moved.
		return f.toTrash(p)
	case ModeMountStack:
		d, err := clone(src, 0)
		if err != nil {
			return err
		}
		return d.MoveTo(p, false)
	default:
		return linkOver(src, f.lay.file(st.id, name))
	}
}

// unstack removes the top of a mount-stack publish point (undo of swapPublish).
func (f *FS) unstack(st *store, name string) error {
	return linux.Unmount(f.lay.publish(st.id, name))
}

// feed mounts version gen on the version base of name through the feed, so that containers
// that started with base see gen. The first time it stacks; later it mounts beneath the
// previous feed mount and unmounts that, so the container's stack stays two deep.
func (f *FS) feed(st *store, name string, base, gen uint64, fed bool) error {
	st.mut++
	d, err := clone(f.lay.version(st.id, name, gen), 0)
	if err != nil {
		return err
	}
	fp := f.lay.feedPoint(st.id, name, base)
	if err := d.MoveTo(fp, fed); err != nil {
		return err
	}
	f.crashPoint("feed: new version mounted")
	if fed {
		if err := linux.Unmount(fp); err != nil {
			return err
		}
		f.crashPoint("feed: old version unmounted")
	}
	return nil
}

// unfeed removes every feed mount from base: containers that started with it see the base's
// own content again.
func (f *FS) unfeed(st *store, name string, base uint64) error {
	st.mut++
	_, err := linux.UnmountAll(f.lay.feedPoint(st.id, name, base))
	return err
}

// linkOver atomically makes dst a hard link to src.
func linkOver(src, dst string) error {
	tmp := filepath.Join(filepath.Dir(dst), ".tmp."+filepath.Base(dst))
	if err := unix.Unlink(tmp); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "unlink", Path: tmp, Err: err}
	}
	if err := os.Link(src, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
