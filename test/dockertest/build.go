package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// Spec is a FROM-scratch image around one static program at /prog (its entrypoint). Build and
// Ref need no *testing.T, so programs that are not tests (test/demo, through test/e2e) build
// their images with the same code as the tests.
type Spec struct {
	Prog   []byte            // the static binary run as /prog
	User   string            // Dockerfile USER; empty: root
	Files  map[string][]byte // extra files by path inside the image, e.g. "etc/passwd"
	Exec   map[string]bool   // paths of Files that are executable (mode 0755)
	Cmd    []string          // default arguments to /prog
	Labels map[string]string // image labels, so a clean-up finds what a harness built
}

// Ref is name:hash, the hash covering everything the image holds.
func (s Spec) Ref(name string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00", name, s.User, s.Cmd)
	h.Write(s.Prog)
	for _, n := range sortedKeys(s.Files) {
		fmt.Fprintf(h, "\x00%s\x00%d\x00%v\x00", n, len(s.Files[n]), s.Exec[n])
		h.Write(s.Files[n])
	}
	return name + ":" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Build builds s as ref unless the engine already has ref.
func Build(ctx context.Context, cli *client.Client, ref string, s Spec) error {
	if _, err := cli.ImageInspect(ctx, ref); err == nil {
		return nil
	}
	buildCtx, err := s.context()
	if err != nil {
		return fmt.Errorf("image %s: build context: %w", ref, err)
	}
	resp, err := cli.ImageBuild(ctx, bytes.NewReader(buildCtx), build.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // dockerd 20.10 without BuildKit
		Labels:      s.Labels,
	})
	if err != nil {
		return fmt.Errorf("image %s: build: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := readBuildStream(resp.Body); err != nil {
		return fmt.Errorf("image %s: build: %w", ref, err)
	}
	return nil
}

// dockerfile is the image's recipe: extra files, /prog, USER, ENTRYPOINT and CMD.
func (s Spec) dockerfile() (string, error) {
	var df strings.Builder
	df.WriteString("FROM scratch\n")
	if len(s.Files) > 0 {
		df.WriteString("COPY rootfs/ /\n")
	}
	df.WriteString("COPY prog /prog\n")
	if s.User != "" {
		fmt.Fprintf(&df, "USER %s\n", s.User)
	}
	df.WriteString("ENTRYPOINT [\"/prog\"]\n")
	if len(s.Cmd) > 0 {
		cmd, err := json.Marshal(s.Cmd)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&df, "CMD %s\n", cmd)
	}
	return df.String(), nil
}

// context returns the tar build context: Dockerfile, /prog and the extra files under rootfs/.
func (s Spec) context() ([]byte, error) {
	df, err := s.dockerfile()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", 0o644, []byte(df)); err != nil {
		return nil, err
	}
	if err := add("prog", 0o755, s.Prog); err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(s.Files) {
		mode := int64(0o644)
		if s.Exec[name] {
			mode = 0o755
		}
		if err := add("rootfs/"+strings.TrimPrefix(name, "/"), mode, s.Files[name]); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
