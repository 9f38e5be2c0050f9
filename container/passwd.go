package container

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Pure parsing of a Docker USER spec against an image's /etc/passwd and /etc/group. It follows
// runc's libcontainer/user.GetExecUser, because the ids we chown the secret files to must be
// the ids runc will run the process as: a numeric user is always a uid, a named user takes its
// primary gid from passwd unless a group is given, a numeric group with no entry is used as is.

// maxID is the largest uid or gid runc accepts.
const maxID = 1<<31 - 1

type passwdEntry struct {
	name     string
	uid, gid int
}

type groupEntry struct {
	name string
	gid  int
}

// parsePasswd returns the entries of an /etc/passwd file (name:pass:uid:gid:gecos:home:shell).
// Blank and comment lines are skipped; a line whose uid or gid is not a number is kept with
// ok=false in bad so a lookup that hits it can fail instead of guessing.
func parsePasswd(content []byte) (entries []passwdEntry, bad map[string]int) {
	bad = map[string]int{}
	eachLine(content, func(n int, fields []string) {
		if len(fields) < 4 {
			bad[fields[0]] = n
			return
		}
		uid, err1 := parseID(fields[2])
		gid, err2 := parseID(fields[3])
		if err1 != nil || err2 != nil {
			bad[fields[0]] = n
			return
		}
		entries = append(entries, passwdEntry{name: fields[0], uid: uid, gid: gid})
	})
	return entries, bad
}

// parseGroup returns the entries of an /etc/group file (name:pass:gid:members).
func parseGroup(content []byte) (entries []groupEntry, bad map[string]int) {
	bad = map[string]int{}
	eachLine(content, func(n int, fields []string) {
		if len(fields) < 3 {
			bad[fields[0]] = n
			return
		}
		gid, err := parseID(fields[2])
		if err != nil {
			bad[fields[0]] = n
			return
		}
		entries = append(entries, groupEntry{name: fields[0], gid: gid})
	})
	return entries, bad
}

func eachLine(content []byte, fn func(n int, fields []string)) {
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 4096), maxIDFileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(n, strings.Split(line, ":"))
	}
}

// parseID parses a decimal uid or gid in [0, maxID].
func parseID(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > maxID {
		return 0, fmt.Errorf("%d is outside 0..%d", n, maxID)
	}
	return int(n), nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// needsLookup reports whether spec can only be resolved with the image's passwd/group files:
// a name, or a bare uid (whose primary gid comes from passwd).
func needsLookup(spec string) bool {
	user, group, hasGroup := strings.Cut(spec, ":")
	return !isNumeric(user) || !hasGroup || !isNumeric(group)
}

// resolveUserSpec resolves spec ("name", "name:group", "uid", "uid:gid", "name:gid",
// "uid:group"; empty user part means uid 0) to the uid:gid runc will run as, in the
// container's id space. passwd or group may be nil when the image has no such file.
func resolveUserSpec(spec string, passwd, group []byte) (uid, gid int, err error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupPart == "" {
		return 0, 0, fmt.Errorf("user %q: empty group after ':': %w", spec, ErrInvalid)
	}
	if strings.ContainsAny(spec, "\x00\n") || strings.Count(spec, ":") > 1 {
		return 0, 0, fmt.Errorf("user %q: want name, uid, name:group or uid:gid: %w", spec, ErrInvalid)
	}

	// 1. The user: a number is always a uid (its passwd entry, if any, gives the primary gid);
	// a name must have an entry.
	users, badUsers := parsePasswd(passwd)
	matched := false
	switch {
	case userPart == "" || isNumeric(userPart):
		want := 0
		if userPart != "" {
			if want, err = parseID(userPart); err != nil {
				return 0, 0, fmt.Errorf("user %q: uid %w: %w", spec, err, ErrUserNotFound)
			}
		}
		uid = want
		for _, u := range users {
			if u.uid == want {
				gid, matched = u.gid, true
				break
			}
		}
	default:
		for _, u := range users {
			if u.name == userPart {
				uid, gid, matched = u.uid, u.gid, true
				break
			}
		}
		if !matched {
			if n, ok := badUsers[userPart]; ok {
				return 0, 0, fmt.Errorf("user %q: the image's /etc/passwd line %d is malformed: %w", spec, n, ErrUserNotFound)
			}
			return 0, 0, fmt.Errorf("user %q: no entry %q in the image's /etc/passwd: %w", spec, userPart, ErrUserNotFound)
		}
	}
	if !hasGroup {
		return uid, gid, nil
	}

	// 2. The group, when given: a number is always a gid; a name must have an entry.
	if isNumeric(groupPart) {
		if gid, err = parseID(groupPart); err != nil {
			return 0, 0, fmt.Errorf("user %q: gid %w: %w", spec, err, ErrUserNotFound)
		}
		return uid, gid, nil
	}
	groups, badGroups := parseGroup(group)
	for _, g := range groups {
		if g.name == groupPart {
			return uid, g.gid, nil
		}
	}
	if n, ok := badGroups[groupPart]; ok {
		return 0, 0, fmt.Errorf("user %q: the image's /etc/group line %d is malformed: %w", spec, n, ErrUserNotFound)
	}
	return 0, 0, fmt.Errorf("user %q: no entry %q in the image's /etc/group: %w", spec, groupPart, ErrUserNotFound)
}
