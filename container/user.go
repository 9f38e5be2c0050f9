package container

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
)

// maxIDFileSize bounds what is read of an image's /etc/passwd or /etc/group.
const maxIDFileSize = 1 << 20

// ResolveUser returns the host uid:gid that must own the secret files of a container of image
// run as user: user if not empty, else the image's Config.User, else root. Names resolve
// through the image's own /etc/passwd and /etc/group, read through the engine without running
// the image; when dockerd runs with userns-remap the ids are shifted into the remap user's
// subordinate ranges, so the process inside sees its own ids. The image is pulled if absent.
// A name that does not resolve is ErrUserNotFound. A host uid that an account in the host's
// /etc/passwd has (but root and Options.AllowHostUIDs) is ErrPolicy, as is, under
// Options.RequireImageDigest, an image not pinned by digest.
func (w *Worker) ResolveUser(ctx context.Context, ref, user string) (uid, gid int, err error) {
	if err := w.checkImagePolicy(ref); err != nil {
		return 0, 0, err
	}
	img, err := w.ensureImage(ctx, ref)
	if err != nil {
		return 0, 0, err
	}
	spec := user
	if spec == "" && img.Config != nil {
		spec = img.Config.User
	}
	if spec == "" {
		uid, gid = 0, 0
	} else {
		var passwd, group []byte
		if needsLookup(spec) {
			if passwd, group, err = w.readIDFiles(ctx, ref); err != nil {
				return 0, 0, fmt.Errorf("image %q: user %q: %w", ref, spec, err)
			}
		}
		if uid, gid, err = resolveUserSpec(spec, passwd, group); err != nil {
			return 0, 0, fmt.Errorf("image %q: %w", ref, err)
		}
	}
	hu, hg, err := w.toHostIDs(ctx, uid, gid)
	if err != nil {
		return 0, 0, err
	}
	if err := w.checkHostUID(uid, hu); err != nil {
		return 0, 0, fmt.Errorf("image %q: %w", ref, err)
	}
	return hu, hg, nil
}

// ensureImage inspects ref and pulls it when absent.
func (w *Worker) ensureImage(ctx context.Context, ref string) (image.InspectResponse, error) {
	img, err := w.api.ImageInspect(ctx, ref)
	if err == nil {
		return img, checkResolvedDigest(ref, img)
	}
	if !cerrdefs.IsNotFound(err) {
		return img, fmt.Errorf("image %q: inspect: %w", ref, err)
	}
	if perr := w.pull(ctx, ref); perr != nil {
		return img, fmt.Errorf("image %q is not present locally and could not be pulled (is a registry reachable?): %v: %w", ref, perr, ErrImageNotFound)
	}
	img, err = w.api.ImageInspect(ctx, ref)
	if err != nil {
		return img, fmt.Errorf("image %q: pulled but inspect failed: %v: %w", ref, err, ErrImageNotFound)
	}
	w.log.Info("pulled image", "image", ref)
	return img, checkResolvedDigest(ref, img)
}

// pull pulls ref and returns the first error the engine's progress stream reports.
func (w *Worker) pull(ctx context.Context, ref string) error {
	rc, err := w.api.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// readIDFiles copies /etc/passwd and /etc/group out of a created, never started, container of
// ref, then removes it. A missing file reads as nil.
func (w *Worker) readIDFiles(ctx context.Context, ref string) (passwd, group []byte, err error) {
	created, err := w.api.ContainerCreate(ctx, &container.Config{
		Image: ref,
		// Never run: any entrypoint lets create succeed for images without one.
		Entrypoint:      []string{"/.anax-agent-user-probe"},
		Cmd:             []string{},
		Labels:          map[string]string{labelAgent: w.agent, labelRole: roleProbe},
		NetworkDisabled: true,
	}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return nil, nil, fmt.Errorf("create probe container: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := w.api.ContainerRemove(rctx, created.ID, container.RemoveOptions{Force: true}); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("remove probe container %s: %w", created.ID, rerr))
		}
	}()
	if passwd, err = w.copyFile(ctx, created.ID, "/etc/passwd"); err != nil {
		return nil, nil, err
	}
	if group, err = w.copyFile(ctx, created.ID, "/etc/group"); err != nil {
		return nil, nil, err
	}
	return passwd, group, nil
}

// copyFile returns the content of the regular file p in container id, following up to four
// absolute or relative symlinks; nil if it does not exist.
func (w *Worker) copyFile(ctx context.Context, id, p string) ([]byte, error) {
	for hops := 0; hops < 5; hops++ {
		rc, _, err := w.api.CopyFromContainer(ctx, id, p)
		if cerrdefs.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("copy %s out of the image: %w", p, err)
		}
		data, link, err := readSingleFile(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("copy %s out of the image: %w", p, err)
		}
		if link == "" {
			return data, nil
		}
		if !path.IsAbs(link) {
			link = path.Join(path.Dir(p), link)
		}
		p = path.Clean(link)
	}
	return nil, fmt.Errorf("%s: too many symlinks in the image", p)
}

// readSingleFile reads the first entry of a tar stream: its content if a regular file (at most
// maxIDFileSize), or its target if a symlink.
func readSingleFile(r io.Reader) (data []byte, link string, err error) {
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil {
		return nil, "", err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		return nil, hdr.Linkname, nil
	case tar.TypeReg:
		if hdr.Size > maxIDFileSize {
			return nil, "", fmt.Errorf("%d bytes, more than %d", hdr.Size, maxIDFileSize)
		}
		data, err = io.ReadAll(io.LimitReader(tr, maxIDFileSize))
		return data, "", err
	default:
		return nil, "", fmt.Errorf("not a regular file (tar type %q)", hdr.Typeflag)
	}
}

// toHostIDs shifts container ids into host ids when dockerd runs with userns-remap.
func (w *Worker) toHostIDs(ctx context.Context, uid, gid int) (int, int, error) {
	info, err := w.api.Info(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("docker info: %w", err)
	}
	uids, gids, err := w.idMaps(info)
	if err != nil {
		return 0, 0, err
	}
	hu, ok1 := uids.toHost(uid)
	hg, ok2 := gids.toHost(gid)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("userns-remap: container %d:%d is outside the ranges of %q: %w", uid, gid, w.remap, ErrUserNotFound)
	}
	return hu, hg, nil
}

// idMaps returns the engine's id maps: nil (identity) without userns-remap.
func (w *Worker) idMaps(info system.Info) (uids, gids idMap, err error) {
	opts, err := system.DecodeSecurityOptions(info.SecurityOptions)
	if err != nil {
		return nil, nil, fmt.Errorf("docker info security options: %w", err)
	}
	remapped := false
	for _, o := range opts {
		if o.Name == "userns" {
			remapped = true
		}
	}
	if !remapped {
		return nil, nil, nil
	}
	read := func(p string) ([]byte, error) {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("userns-remap: %w", err)
		}
		return b, nil
	}
	hostPasswd, _ := os.ReadFile(w.hostFS.passwd) // lookup by name still works without it
	subuid, err := read(w.hostFS.subuid)
	if err != nil {
		return nil, nil, err
	}
	subgid, err := read(w.hostFS.subgid)
	if err != nil {
		return nil, nil, err
	}
	if uids, gids, err = userIDMaps(w.remap, hostPasswd, subuid, subgid); err != nil {
		return nil, nil, fmt.Errorf("userns-remap: %w", err)
	}
	// Cross-check with what dockerd itself says root maps to, so a wrong RemapUser is an
	// error instead of files nobody in the container can read.
	if ru, rg, ok := remapRootFromDir(info.DockerRootDir); ok {
		hu, _ := uids.toHost(0)
		hg, _ := gids.toHost(0)
		if hu != ru || hg != rg {
			return nil, nil, fmt.Errorf("userns-remap: dockerd root dir %q maps root to %d:%d but the ranges of %q map it to %d:%d (set Options.RemapUser)", info.DockerRootDir, ru, rg, w.remap, hu, hg)
		}
	}
	return uids, gids, nil
}
