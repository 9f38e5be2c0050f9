// Package packaging builds the project's Debian and RPM packages the way `make package` does
// (static binaries per architecture, then tools/package, the nested module that drives nfpm)
// and reads Debian packages back with dpkg-deb. Its test checks every package's contents; the
// systemd test (test/systemd) installs the amd64 .deb it builds.
//
// Only tests import it.
package packaging

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goArch is the Go target of each package architecture (GOARCH, GOARM) and the directory
// `make cross` puts its binaries in.
var goArch = map[string][3]string{
	"amd64": {"amd64", "", "linux-amd64"},
	"arm64": {"arm64", "", "linux-arm64"},
	"armhf": {"arm", "7", "linux-armv7"},
}

// Build compiles the binaries for arches (amd64, arm64, armhf) under dir and builds the
// packages in formats (deb, rpm) into dir/dist. It returns the packages' paths.
func Build(ctx context.Context, root, dir string, arches, formats []string) ([]string, error) {
	bin := filepath.Join(dir, "bin")
	for _, a := range arches {
		g, ok := goArch[a]
		if !ok {
			return nil, fmt.Errorf("architecture %q: want amd64, arm64 or armhf", a)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w",
			"-o", filepath.Join(bin, g[2])+"/", "./cmd/anax-agent", "./cmd/agbot", "./cmd/hzn")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+g[0], "GOARM="+g[1])
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build for %s: %v\n%s", a, err, out)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "run", ".", "-bin", bin, "-root", root, "-out", filepath.Join(dir, "dist"),
		"-arch", strings.Join(arches, ","), "-formats", strings.Join(formats, ","))
	cmd.Dir = filepath.Join(root, "tools", "package")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("tools/package: %v\n%s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("tools/package: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// Find returns the package of name for arch (deb naming: amd64, arm64, armhf) among paths.
func Find(paths []string, name, arch, format string) (string, error) {
	want := name + "_"
	for _, p := range paths {
		base := filepath.Base(p)
		if format == "deb" && strings.HasPrefix(base, want) && strings.HasSuffix(base, "_"+arch+".deb") {
			return p, nil
		}
		if format == "rpm" && strings.HasPrefix(base, name+"-") && strings.HasSuffix(base, "."+rpmArch[arch]+".rpm") {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s %s package for %s among %v", format, name, arch, paths)
}

var rpmArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "armhf": "armv7hl"}

// Entry is one line of dpkg-deb -c.
type Entry struct {
	Mode, Owner string // "-rw-------", "root/root"
	Path        string // "/etc/anax-agent/config.json", directories with a trailing /
}

// Contents lists a .deb's files (dpkg-deb -c), by path.
func Contents(ctx context.Context, deb string) (map[string]Entry, error) {
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-c", deb).Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -c %s: %w", deb, err)
	}
	entries := map[string]Entry{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			return nil, fmt.Errorf("dpkg-deb -c line %q", line)
		}
		e := Entry{Mode: f[0], Owner: f[1], Path: strings.TrimPrefix(f[5], ".")}
		entries[e.Path] = e
	}
	return entries, nil
}

// Control reads a .deb's control fields (dpkg-deb -f).
func Control(ctx context.Context, deb string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-f", deb).Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -f %s: %w", deb, err)
	}
	fields := map[string]string{}
	var last string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			last = k
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}

// Extract unpacks a .deb's files into dir (dpkg-deb -x) and its control files into dir/DEBIAN.
func Extract(ctx context.Context, deb, dir string) error {
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-e", deb, filepath.Join(dir, "DEBIAN")).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -e: %v: %s", err, out)
	}
	return nil
}
