package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// MoveMountBeneath is MOVE_MOUNT_BENEATH (Linux 6.5): mount beneath the top mount at the target,
// so that unmounting or moving the top reveals the new mount atomically. golang.org/x/sys does
// not define it yet.
const MoveMountBeneath = 0x200

// SecretAttrs are the per-mount flags of every mount that exposes a secret.
const SecretAttrs = unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC

// Propagation types for SetPropagation and Detached.SetAttr.
const (
	Private = unix.MS_PRIVATE
	Shared  = unix.MS_SHARED
	Slave   = unix.MS_SLAVE
)

// Detached is a mount that is not attached anywhere yet (open_tree(OPEN_TREE_CLONE)): it can be
// configured completely before anyone can see it, then attached with MoveTo.
type Detached struct {
	fd   int
	path string
}

// Clone returns a detached, non-recursive copy of the mount at path (which may be a file).
func Clone(path string) (*Detached, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, &os.PathError{Op: "open_tree", Path: path, Err: err}
	}
	return &Detached{fd: fd, path: path}, nil
}

// SetAttr sets mount attributes (MOUNT_ATTR_*) and, when propagation is not 0, the propagation
// type (Private, Shared, Slave) with one mount_setattr(2).
func (d *Detached) SetAttr(attrs uint64, propagation uint64) error {
	attr := unix.MountAttr{Attr_set: attrs, Propagation: propagation}
	if err := unix.MountSetattr(d.fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return &os.PathError{Op: "mount_setattr", Path: d.path, Err: err}
	}
	return nil
}

// JoinGroup puts the detached mount into the peer group of the mount at group
// (move_mount(MOVE_MOUNT_SET_GROUP), Linux 5.15). Both must be of the same filesystem and the
// detached mount's root must lie inside the other's root.
func (d *Detached) JoinGroup(group string) error {
	err := unix.MoveMount(unix.AT_FDCWD, group, d.fd, "", unix.MOVE_MOUNT_T_EMPTY_PATH|unix.MOVE_MOUNT_SET_GROUP)
	if err != nil {
		return &os.PathError{Op: "move_mount(set_group) " + d.path + " into group of", Path: group, Err: err}
	}
	return nil
}

// MoveTo attaches the detached mount at target, on top of whatever is mounted there, or beneath
// the top mount when beneath is set. It closes d.
func (d *Detached) MoveTo(target string, beneath bool) error {
	flags := unix.MOVE_MOUNT_F_EMPTY_PATH
	if beneath {
		flags |= MoveMountBeneath
	}
	err := unix.MoveMount(d.fd, "", unix.AT_FDCWD, target, flags)
	d.Close()
	if err != nil {
		return &os.PathError{Op: "move_mount " + d.path + " to", Path: target, Err: err}
	}
	return nil
}

// Close releases the mount if it was never attached.
func (d *Detached) Close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// Move moves the top mount at from to to (both attached). The kernel refuses it when the
// mount's parent is shared.
func Move(from, to string) error {
	if err := unix.MoveMount(unix.AT_FDCWD, from, unix.AT_FDCWD, to, 0); err != nil {
		return &os.PathError{Op: "move_mount " + from + " to", Path: to, Err: err}
	}
	return nil
}

// MountTmpfs mounts a tmpfs named source at target with nodev, nosuid and noexec.
func MountTmpfs(target, source string, t Tmpfs) error {
	opts, err := t.Options()
	if err != nil {
		return err
	}
	if err := unix.Mount(source, target, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID|unix.MS_NOEXEC, opts); err != nil {
		return &os.PathError{Op: "mount tmpfs " + opts + " on", Path: target, Err: err}
	}
	return nil
}

// SetPropagation changes the propagation type of the top mount at path (Private, Shared, Slave).
func SetPropagation(path string, propagation uintptr) error {
	if err := unix.Mount("", path, "", propagation, ""); err != nil {
		return &os.PathError{Op: "mount(propagation " + strconv.Itoa(int(propagation)) + ")", Path: path, Err: err}
	}
	return nil
}

// Unmount lazily detaches the top mount at path (umount2(MNT_DETACH|UMOUNT_NOFOLLOW)).
func Unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
		return &os.PathError{Op: "umount", Path: path, Err: err}
	}
	return nil
}

// UnmountAll detaches every mount stacked at path and returns how many there were. A path that
// is not a mount point, or does not exist, is not an error.
func UnmountAll(path string) (int, error) {
	for n := 0; ; n++ {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return n, nil
		default:
			return n, &os.PathError{Op: "umount", Path: path, Err: err}
		}
	}
}

// ParseMountinfo reads a mountinfo file with github.com/moby/sys/mountinfo's parser (no need
// for one of our own) and the propagation fields secretfs needs (fromInfo).
func ParseMountinfo(r io.Reader) ([]MountInfo, error) {
	infos, err := mountinfo.GetMountsFromReader(r, nil)
	if err != nil {
		return nil, err
	}
	out := make([]MountInfo, len(infos))
	for i, info := range infos {
		if out[i], err = fromInfo(info); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SelfMountTable reads and indexes /proc/self/mountinfo.
func SelfMountTable() (*MountTable, error) {
	mounts, err := SelfMountinfo()
	if err != nil {
		return nil, err
	}
	return NewMountTable(mounts), nil
}

// SelfMountinfo parses /proc/self/mountinfo.
func SelfMountinfo() ([]MountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountinfo(f)
}

// IsMemoryFS reports whether path lies on tmpfs or ramfs, where files never reach a disk.
func IsMemoryFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	t := int64(st.Type) // int32 on some 32-bit targets
	return t == unix.TMPFS_MAGIC || t == unix.RAMFS_MAGIC, nil
}

// KernelRelease returns uname -r.
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// MountNS returns the inode number of the mount namespace of pid ("self" for the caller).
func MountNS(pid string) (uint64, error) {
	link, err := os.Readlink("/proc/" + pid + "/ns/mnt")
	if err != nil {
		return 0, err
	}
	return parseNSLink(link)
}

// parseNSLink reads "mnt:[4026531832]".
func parseNSLink(link string) (uint64, error) {
	i, j := strings.IndexByte(link, '['), strings.IndexByte(link, ']')
	if i < 0 || j < i {
		return 0, fmt.Errorf("namespace link %q: want type:[inode]", link)
	}
	return strconv.ParseUint(link[i+1:j], 10, 64)
}

// ErrScanIncomplete marks a scan of other mount namespaces that could not read all of them:
// its caller must not conclude that a mount is unused because the scan did not list it.
var ErrScanIncomplete = errors.New("mount namespace scan incomplete")

// PIDMountinfo parses /proc/<pid>/mountinfo: the mounts of pid's mount namespace as pid sees
// them. Unlike /proc/<pid>/ns/mnt it needs no privilege over the process (no CAP_SYS_PTRACE for
// another user's process). An error for a process that is gone wraps os.ErrNotExist.
func PIDMountinfo(pid int) ([]MountInfo, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		return nil, goneAsNotExist(err)
	}
	defer f.Close()
	mounts, err := ParseMountinfo(f)
	if err != nil {
		return nil, goneAsNotExist(err)
	}
	return mounts, nil
}

// goneAsNotExist makes ESRCH (the process exited between open and read) and EINVAL (a zombie
// or exiting process, which has no mount namespace left) an os.ErrNotExist.
func goneAsNotExist(err error) error {
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (%w)", err, os.ErrNotExist)
	}
	return err
}

// ForeignMounts returns the mounts of every mount namespace other than self, one process per
// namespace. Namespaces are told apart by /proc/<pid>/ns/mnt where the caller may read it, and
// otherwise by the first mount a process lists (no two namespaces share a mount id), so the
// scan works without CAP_SYS_PTRACE. Processes that exit during the scan are skipped. Any other
// failure to read a process's mounts, or a /proc that hides processes (hidepid), returns the
// mounts read so far with an error wrapping ErrScanIncomplete.
func ForeignMounts(self uint64) ([]MountInfo, error) {
	if opts, err := procMountOptions(); err == nil && hidesPIDs(opts) {
		return nil, fmt.Errorf("%w: /proc is mounted with %s: other users' processes are invisible", ErrScanIncomplete, opts)
	}
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScanIncomplete, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrScanIncomplete, err)
	}
	own, err := SelfMountinfo()
	if err != nil || len(own) == 0 {
		return nil, fmt.Errorf("%w: own mountinfo: %v", ErrScanIncomplete, err)
	}
	seenNS := map[uint64]bool{self: true}
	seenFirst := map[int]bool{own[0].ID: true}
	var out []MountInfo
	var errs []error
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		ns, nsErr := MountNS(name)
		if nsErr == nil {
			if seenNS[ns] {
				continue
			}
			seenNS[ns] = true
		}
		mounts, err := PIDMountinfo(pid)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // exited during the scan: its namespace is gone or listed by another process
		case err != nil:
			errs = append(errs, fmt.Errorf("pid %d: %w", pid, err))
			continue
		case len(mounts) == 0 || seenFirst[mounts[0].ID]:
			continue
		}
		seenFirst[mounts[0].ID] = true
		out = append(out, mounts...)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%w: %w", ErrScanIncomplete, errors.Join(errs...))
	}
	return out, nil
}

// procMountOptions returns the superblock options of the /proc mount the caller sees.
func procMountOptions() (string, error) {
	mounts, err := SelfMountinfo()
	if err != nil {
		return "", err
	}
	st := Stack(mounts, "/proc")
	if len(st) == 0 {
		return "", fmt.Errorf("no /proc mount")
	}
	return st[len(st)-1].SuperOptions, nil
}

// Umask returns the process umask from /proc/self/status (reading it with umask(2) would have
// to change it), or 0o777 when unknown so that callers always chmod.
func Umask() uint32 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o777
	}
	return parseUmask(string(b))
}
