package dockertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

const manifestType = "application/vnd.docker.distribution.manifest.v2+json"

// PinnedImage serves the local image ref from a registry on 127.0.0.1 (which dockerd treats as
// insecure, so plain HTTP) and pulls it by digest, so the engine holds it with a repository
// digest. It returns that reference, "127.0.0.1:<port>/<name>@sha256:<hex>", and its repository
// without the digest. The registry serves until the test ends.
func PinnedImage(t testing.TB, cli *client.Client, ref string) (pinned, repo string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	blobs, manifest, err := saveAsRegistryBlobs(ctx, cli, ref)
	if err != nil {
		t.Fatalf("serve %s from a registry: %v", ref, err)
	}
	digest := sha256Digest(manifest)
	srv := httptest.NewServer(registryHandler(blobs, manifest, digest))
	t.Cleanup(srv.Close)
	name, _, _ := strings.Cut(ref, ":")
	repo = strings.TrimPrefix(srv.URL, "http://") + "/" + name
	pinned = repo + "@" + digest
	rc, err := cli.ImagePull(ctx, pinned, image.PullOptions{})
	if err != nil {
		t.Fatalf("pull %s: %v", pinned, err)
	}
	defer rc.Close()
	if err := readBuildStream(rc); err != nil {
		t.Fatalf("pull %s: %v", pinned, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cli.ImageRemove(ctx, pinned, image.RemoveOptions{}) // untags; the image keeps ref
	})
	return pinned, repo
}

// registryHandler answers the Registry v2 pull API for one manifest and its blobs.
func registryHandler(blobs map[string][]byte, manifest []byte, digest string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only registry", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == "/v2/" {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			fmt.Fprint(w, "{}")
			return
		}
		i := strings.LastIndex(r.URL.Path, "/")
		kind, ref := r.URL.Path[:i], r.URL.Path[i+1:]
		var body []byte
		switch {
		case strings.HasSuffix(kind, "/manifests") && ref == digest:
			body = manifest
			w.Header().Set("Content-Type", manifestType)
			w.Header().Set("Docker-Content-Digest", digest)
		case strings.HasSuffix(kind, "/blobs") && blobs[ref] != nil:
			body = blobs[ref]
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Docker-Content-Digest", ref)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}`)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	})
}

// saveAsRegistryBlobs exports ref with `docker save` and returns its config and gzipped layers
// by digest, and a schema 2 manifest naming them.
func saveAsRegistryBlobs(ctx context.Context, cli *client.Client, ref string) (map[string][]byte, []byte, error) {
	rc, err := cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, nil, err
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if hdr.Typeflag == tar.TypeReg {
			if files[hdr.Name], err = io.ReadAll(tr); err != nil {
				return nil, nil, err
			}
		}
	}
	var saved []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(files["manifest.json"], &saved); err != nil || len(saved) != 1 {
		return nil, nil, fmt.Errorf("docker save manifest.json: %v (%d images)", err, len(saved))
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Size      int    `json:"size"`
		Digest    string `json:"digest"`
	}
	blobs := map[string][]byte{}
	add := func(mediaType string, b []byte) desc {
		d := sha256Digest(b)
		blobs[d] = b
		return desc{MediaType: mediaType, Size: len(b), Digest: d}
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{SchemaVersion: 2, MediaType: manifestType,
		Config: add("application/vnd.docker.container.image.v1+json", files[saved[0].Config])}
	for _, l := range saved[0].Layers {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(files[l])
		zw.Close()
		m.Layers = append(m.Layers, add("application/vnd.docker.image.rootfs.diff.tar.gzip", gz.Bytes()))
	}
	manifest, err := json.Marshal(m)
	return blobs, manifest, err
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
