package secretfs

import (
	"path/filepath"
	"strconv"
	"strings"
)

// layout names every path under the root. Inside the root (a small private tmpfs when the agent
// may mount):
//
//	stores/<id>/               the store: a private tmpfs per service instance, mode 0700 root
//	    v/<name>/<gen>         version gen of a secret, 0400 uid:gid, written once, never changed
//	    files/<name>           restart mode: hard link to the current version (renamed over)
//	    view/                  the directory view, 0500 uid:gid
//	        ..data -> ..g<N>   swapped with rename(2)
//	        ..g<N>/<name>      hard links to the current versions, directory 0500 uid:gid
//	        <name> -> ..data/<name>
//	feed/<id>/                 mount-swap: a shared bind of stores/<id>, the master of every
//	                           publish point; versions containers started with get the current
//	                           version mounted on them here
//	publish/<id>/<name>        publish point (empty file under the mounts), bind-mounted at /<name>
//	view/<id>/                 mount modes: read-only bind of stores/<id>/view
//	trash/<gen>/<n>            mount-swap: replaced publish-point mounts, moved here (cheap) and
//	                           detached in one umount per generation by the background loop
//	fix/<id>/<name>, .view     mount-swap recovery: the top of a publish point (or the view
//	                           mount) while the layers under it are detached; a run killed
//	                           there finds it here and puts it back
//	.probe/                    scratch directory for feature probes
type layout struct{ root string }

func (l layout) storesDir() string              { return filepath.Join(l.root, "stores") }
func (l layout) store(id string) string         { return filepath.Join(l.root, "stores", id) }
func (l layout) feed(id string) string          { return filepath.Join(l.root, "feed", id) }
func (l layout) publishDir(id string) string    { return filepath.Join(l.root, "publish", id) }
func (l layout) publish(id, name string) string { return filepath.Join(l.root, "publish", id, name) }
func (l layout) viewMount(id string) string     { return filepath.Join(l.root, "view", id) }
func (l layout) probe() string                  { return filepath.Join(l.root, ".probe") }
func (l layout) fixDir(id string) string        { return filepath.Join(l.root, "fix", id) }
func (l layout) trashDir() string               { return filepath.Join(l.root, "trash") }
func (l layout) trash(gen uint64) string {
	return filepath.Join(l.root, "trash", strconv.FormatUint(gen, 10))
}

// Paths inside a store, relative to its root (also the mount root that mountinfo shows).
func versionRel(name string, gen uint64) string {
	return "v/" + name + "/" + strconv.FormatUint(gen, 10)
}

func (l layout) version(id, name string, gen uint64) string {
	return filepath.Join(l.store(id), versionRel(name, gen))
}

func (l layout) feedPoint(id, name string, gen uint64) string {
	return filepath.Join(l.feed(id), versionRel(name, gen))
}

func (l layout) file(id, name string) string { return filepath.Join(l.store(id), "files", name) }
func (l layout) view(id string) string       { return filepath.Join(l.store(id), "view") }

const viewGenPrefix = "..g"

func viewGenName(gen uint64) string { return viewGenPrefix + strconv.FormatUint(gen, 10) }

// parseViewGen reads "..g<N>".
func parseViewGen(s string) (uint64, bool) {
	if !strings.HasPrefix(s, viewGenPrefix) {
		return 0, false
	}
	return parseGen(s[len(viewGenPrefix):])
}

// parseGen reads a version number: decimal, no sign, no leading zero, > 0.
func parseGen(s string) (uint64, bool) {
	if s == "" || s[0] == '0' || len(s) > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// parseVersionRoot reads a mount root "/v/<name>/<gen>" as mountinfo shows it.
func parseVersionRoot(root string) (name string, gen uint64, ok bool) {
	rest, found := strings.CutPrefix(root, "/v/")
	if !found {
		return "", 0, false
	}
	name, g, found := strings.Cut(rest, "/")
	if !found || name == "" || strings.Contains(g, "/") {
		return "", 0, false
	}
	if gen, ok = parseGen(g); !ok {
		return "", 0, false
	}
	return name, gen, true
}

// under reports whether path is dir or lies below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
