package linux

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// MountInfo is one line of /proc/<pid>/mountinfo (proc(5)).
type MountInfo struct {
	ID, Parent     int
	Major, Minor   int
	Root           string // path of the mount's root inside its filesystem, e.g. "/v/token/3"
	Mountpoint     string
	Options        string // per-mount options, e.g. "ro,nosuid,nodev,noexec,relatime"
	Shared         int    // peer group id ("shared:N"), 0 when not shared
	Master         int    // peer group this mount is a slave of ("master:N"), 0 when none
	PropagateFrom  int    // "propagate_from:N", 0 when absent
	Unbindable     bool
	FSType, Source string
	SuperOptions   string
}

// HasOption reports whether the per-mount options contain opt ("ro", "nosuid", ...).
func (m MountInfo) HasOption(opt string) bool { return hasOption(m.Options, opt) }

// HasSuperOption reports whether the superblock options contain opt ("noswap", "mode=700", ...).
func (m MountInfo) HasSuperOption(opt string) bool { return hasOption(m.SuperOptions, opt) }

func hasOption(list, opt string) bool {
	for _, o := range strings.Split(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// fromInfo converts a line that github.com/moby/sys/mountinfo parsed (it also undoes the
// kernel's octal escapes) into a MountInfo, reading the propagation fields.
func fromInfo(i *mountinfo.Info) (MountInfo, error) {
	m := MountInfo{ID: i.ID, Parent: i.Parent, Major: i.Major, Minor: i.Minor, Root: i.Root,
		Mountpoint: i.Mountpoint, Options: i.Options, FSType: i.FSType, Source: i.Source, SuperOptions: i.VFSOptions}
	var err error
	m.Shared, m.Master, m.PropagateFrom, m.Unbindable, err = parseOptional(i.Optional)
	if err != nil {
		return m, fmt.Errorf("mount %d at %s: %w", i.ID, i.Mountpoint, err)
	}
	return m, nil
}

// parseOptional reads mountinfo's optional fields ("shared:7 master:2 unbindable ...");
// fields added by future kernels are ignored, as proc(5) asks.
func parseOptional(fields string) (shared, master, propagateFrom int, unbindable bool, err error) {
	for _, f := range strings.Fields(fields) {
		tag, val, _ := strings.Cut(f, ":")
		var dst *int
		switch tag {
		case "shared":
			dst = &shared
		case "master":
			dst = &master
		case "propagate_from":
			dst = &propagateFrom
		case "unbindable":
			unbindable = true
			continue
		default:
			continue
		}
		if *dst, err = strconv.Atoi(val); err != nil {
			return 0, 0, 0, false, fmt.Errorf("optional field %q: %w", f, err)
		}
	}
	return shared, master, propagateFrom, unbindable, nil
}

// Stack returns the mounts stacked at mountpoint, bottom first. Mounts whose parent is at the
// same mountpoint are stacked on it; the bottom one has its parent elsewhere.
func Stack(mounts []MountInfo, mountpoint string) []MountInfo {
	var at []MountInfo
	byID := map[int]int{}
	for _, m := range mounts {
		if m.Mountpoint == mountpoint {
			byID[m.ID] = len(at)
			at = append(at, m)
		}
	}
	if len(at) < 2 {
		return at
	}
	child := map[int]int{} // parent id -> index of the mount stacked on it
	bottom := -1
	for i, m := range at {
		if _, ok := byID[m.Parent]; ok && m.Parent != m.ID {
			child[m.Parent] = i
		} else {
			bottom = i
		}
	}
	if bottom < 0 {
		return at // a cycle cannot happen in a real mount tree; keep the kernel's order
	}
	out := []MountInfo{at[bottom]}
	for seen := 1; seen < len(at); seen++ {
		i, ok := child[out[len(out)-1].ID]
		if !ok {
			break
		}
		out = append(out, at[i])
	}
	return out
}

// hidesPIDs reports whether proc superblock options hide other users' processes (proc(5):
// hidepid=1|2|noaccess|invisible; 0 and off show everything).
func hidesPIDs(superOptions string) bool {
	for _, o := range strings.Split(superOptions, ",") {
		if v, ok := strings.CutPrefix(o, "hidepid="); ok && v != "0" && v != "off" {
			return true
		}
	}
	return false
}

// MountTable is a mount table indexed by mount point, for many Stack lookups in one table:
// with thousands of mounts (a node with a thousand services), scanning the whole list for
// each lookup made start-up quadratic.
type MountTable struct {
	all []MountInfo
	at  map[string][]MountInfo
}

// NewMountTable indexes mounts.
func NewMountTable(mounts []MountInfo) *MountTable {
	t := &MountTable{all: mounts, at: make(map[string][]MountInfo, len(mounts))}
	for _, m := range mounts {
		t.at[m.Mountpoint] = append(t.at[m.Mountpoint], m)
	}
	return t
}

// Stack is Stack(mounts, mountpoint) on the table's mounts.
func (t *MountTable) Stack(mountpoint string) []MountInfo { return Stack(t.at[mountpoint], mountpoint) }

// All returns every mount of the table, in the kernel's order.
func (t *MountTable) All() []MountInfo { return t.all }
