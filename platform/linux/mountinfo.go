package linux

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
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

// ParseMountinfo reads every line of a mountinfo file.
func ParseMountinfo(r io.Reader) ([]MountInfo, error) {
	var out []MountInfo
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		m, err := ParseMountinfoLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// ParseMountinfoLine parses one mountinfo line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func ParseMountinfoLine(line string) (MountInfo, error) {
	var m MountInfo
	fields := strings.Fields(line)
	sep := -1
	for i := 6; i < len(fields); i++ {
		if fields[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(fields) < sep+3 {
		return m, fmt.Errorf("malformed mountinfo line %q", line)
	}
	var err error
	if m.ID, err = strconv.Atoi(fields[0]); err != nil {
		return m, fmt.Errorf("mount id %q: %w", fields[0], err)
	}
	if m.Parent, err = strconv.Atoi(fields[1]); err != nil {
		return m, fmt.Errorf("parent id %q: %w", fields[1], err)
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	if !ok {
		return m, fmt.Errorf("device %q: want major:minor", fields[2])
	}
	if m.Major, err = strconv.Atoi(maj); err != nil {
		return m, fmt.Errorf("device %q: %w", fields[2], err)
	}
	if m.Minor, err = strconv.Atoi(min); err != nil {
		return m, fmt.Errorf("device %q: %w", fields[2], err)
	}
	m.Root = unescapeOctal(fields[3])
	m.Mountpoint = unescapeOctal(fields[4])
	m.Options = fields[5]
	for _, f := range fields[6:sep] {
		tag, val, _ := strings.Cut(f, ":")
		var dst *int
		switch tag {
		case "shared":
			dst = &m.Shared
		case "master":
			dst = &m.Master
		case "propagate_from":
			dst = &m.PropagateFrom
		case "unbindable":
			m.Unbindable = true
			continue
		default:
			continue // fields added by future kernels are ignored, as proc(5) asks
		}
		if *dst, err = strconv.Atoi(val); err != nil {
			return m, fmt.Errorf("optional field %q: %w", f, err)
		}
	}
	m.FSType = fields[sep+1]
	m.Source = unescapeOctal(fields[sep+2])
	if len(fields) > sep+3 {
		m.SuperOptions = fields[sep+3]
	}
	return m, nil
}

// unescapeOctal undoes the kernel's mangling of space, tab, newline and backslash as \ooo.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

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
