package container

import (
	"fmt"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/image"
)

// The node's rules about what a service container may be: checked before the engine is asked
// to create it, refused with ErrPolicy.

// checkHostUID refuses to run a container whose process, and so whose secret files, would have
// the uid of an account in the host's /etc/passwd: that account could read the files through
// /proc/<pid>/root/<name> and signal or trace the process. Host uid 0 is allowed: host root
// reads every file anyway. Uids in Options.AllowHostUIDs are allowed. Only the uid matters:
// secret files are 0400 and their directories 0700, so a shared gid grants nothing.
func (w *Worker) checkHostUID(uid, hostUID int) error {
	if hostUID == 0 || w.allowUIDs[hostUID] {
		return nil
	}
	content, err := os.ReadFile(w.hostFS.passwd)
	if err != nil {
		return fmt.Errorf("host account check: %w", err)
	}
	users, _ := parsePasswd(content)
	for _, u := range users {
		if u.uid != hostUID {
			continue
		}
		via := ""
		if hostUID != uid {
			via = fmt.Sprintf(" (host uid %d under userns-remap)", hostUID)
		}
		return fmt.Errorf("container uid %d%s is the uid of host account %q in %s: that account could read the container's secret files through /proc/<pid>/root and signal its processes; "+
			"run the service as a uid no host account has, or allow uid %d in the agent's allow_host_uids: %w",
			uid, via, u.name, w.hostFS.passwd, hostUID, ErrPolicy)
	}
	return nil
}

// checkImagePolicy refuses an image not pinned by digest when the node requires digests.
func (w *Worker) checkImagePolicy(ref string) error {
	if !w.requireDigest {
		return nil
	}
	if _, pinned := pinnedDigest(ref); !pinned {
		return fmt.Errorf("image %q is not pinned by digest: this node requires name@sha256:<digest> (require_image_digest): %w", ref, ErrPolicy)
	}
	return nil
}

// pinnedDigest returns the digest of a reference of the form name[:tag]@<algorithm>:<hex>.
func pinnedDigest(ref string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", false
	}
	c, ok := named.(reference.Canonical)
	if !ok {
		return "", false
	}
	return c.Digest().String(), true
}

// checkResolvedDigest makes sure an image the engine returned for a pinned reference carries
// that digest among its repository digests.
func checkResolvedDigest(ref string, img image.InspectResponse) error {
	want, pinned := pinnedDigest(ref)
	if !pinned {
		return nil
	}
	for _, rd := range img.RepoDigests {
		if _, d, ok := strings.Cut(rd, "@"); ok && d == want {
			return nil
		}
	}
	return fmt.Errorf("image %q: the engine's image %s has repository digests %q, none with %s: %w", ref, img.ID, img.RepoDigests, want, ErrImageNotFound)
}
