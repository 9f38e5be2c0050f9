package container

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Pure parsing for dockerd's userns-remap: container ids map onto the remap user's subordinate
// id ranges in /etc/subuid and /etc/subgid, the way moby's pkg/idtools builds its maps: lines
// for the user's uid, else for its name, sorted by start and stacked from container id 0.

type idRange struct{ start, length int }

// idMap maps container ids to host ids; the zero idMap is the identity.
type idMap []idMapEntry

type idMapEntry struct{ container, host, size int }

// parseSubIDs returns the ranges /etc/subuid or /etc/subgid content grants to user (name or uid
// as text).
func parseSubIDs(content []byte, user string) ([]idRange, error) {
	var ranges []idRange
	var err error
	eachLine(content, func(line int, fields []string) {
		if err != nil {
			return
		}
		if len(fields) != 3 {
			err = fmt.Errorf("line %d: want name:start:count", line)
			return
		}
		if fields[0] != user {
			return
		}
		start, err1 := parseID(fields[1])
		length, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || length <= 0 || int64(start)+int64(length)-1 > maxID {
			err = fmt.Errorf("line %d: bad range %s:%s", line, fields[1], fields[2])
			return
		}
		ranges = append(ranges, idRange{start: start, length: length})
	})
	return ranges, err
}

// newIDMap stacks ranges from container id 0, lowest host start first.
func newIDMap(ranges []idRange) idMap {
	sorted := append([]idRange(nil), ranges...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].start < sorted[j].start })
	m := make(idMap, 0, len(sorted))
	next := 0
	for _, r := range sorted {
		m = append(m, idMapEntry{container: next, host: r.start, size: r.length})
		next += r.length
	}
	return m
}

// toHost returns the host id of container id; ok is false when the map does not cover it.
func (m idMap) toHost(id int) (host int, ok bool) {
	if m == nil {
		return id, true
	}
	for _, e := range m {
		if id >= e.container && id-e.container < e.size {
			return e.host + id - e.container, true
		}
	}
	return 0, false
}

// remapRootFromDir reads the host uid and gid of container root from dockerd's root directory
// under userns-remap, which dockerd names "<root>/<uid>.<gid>".
func remapRootFromDir(dir string) (uid, gid int, ok bool) {
	u, g, found := strings.Cut(path.Base(dir), ".")
	if !found {
		return 0, 0, false
	}
	uid, err1 := parseID(u)
	gid, err2 := parseID(g)
	return uid, gid, err1 == nil && err2 == nil
}

// userIDMaps builds the uid and gid maps for remapUser from the host's passwd, subuid and subgid
// content. Like moby, it looks ranges up by the user's uid first, then by name.
func userIDMaps(remapUser string, hostPasswd, subuid, subgid []byte) (uids, gids idMap, err error) {
	keys := []string{remapUser}
	if users, _ := parsePasswd(hostPasswd); users != nil {
		for _, u := range users {
			if u.name == remapUser {
				keys = []string{strconv.Itoa(u.uid), remapUser}
				break
			}
		}
	}
	lookup := func(file string, content []byte) (idMap, error) {
		for _, key := range keys {
			ranges, err := parseSubIDs(content, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if len(ranges) > 0 {
				return newIDMap(ranges), nil
			}
		}
		return nil, fmt.Errorf("%s: no ranges for remap user %q", file, remapUser)
	}
	if uids, err = lookup("/etc/subuid", subuid); err != nil {
		return nil, nil, err
	}
	if gids, err = lookup("/etc/subgid", subgid); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}
