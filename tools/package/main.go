// Command package builds the Debian and RPM packages of anax-agent (the agent, hzn, the systemd
// unit, a default configuration) and of the agbot, for linux amd64, arm64 and armhf (GOARM=7),
// with github.com/goreleaser/nfpm/v2 as a library. `make package` runs it on the output of
// `make cross`; test/packaging checks what it builds.
//
// It is a nested module (its own go.mod) so that nfpm's dependencies stay out of the project's
// module; run it from this directory (go run . -h).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm"
)

// arch is one target: nfpm's name for it and the `make cross` directory with its binaries.
type arch struct{ nfpm, binDir string }

var arches = map[string]arch{
	"amd64": {"amd64", "linux-amd64"},
	"arm64": {"arm64", "linux-arm64"},
	"armhf": {"arm7", "linux-armv7"}, // deb armhf, rpm armv7hl
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "package:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("package", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory with linux-amd64/, linux-arm64/, linux-armv7/ from make cross (required)")
	root := fs.String("root", "../..", "the anax-agent repository (for the unit and the package files)")
	out := fs.String("out", "", "output directory (required)")
	version := fs.String("version", "0.1.0", "package version")
	archList := fs.String("arch", "amd64,arm64,armhf", "comma-separated: amd64, arm64, armhf")
	formats := fs.String("formats", "deb,rpm", "comma-separated: deb, rpm")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *out == "" {
		return errors.New("-bin and -out are required")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, name := range strings.Split(*archList, ",") {
		a, ok := arches[name]
		if !ok {
			return fmt.Errorf("-arch %q: want amd64, arm64 or armhf", name)
		}
		dir := filepath.Join(*bin, a.binDir)
		for _, format := range strings.Split(*formats, ",") {
			for _, build := range []func(string, string, string, string) *nfpm.Info{agentInfo, agbotInfo} {
				info := build(*root, dir, *version, format)
				info.Arch = a.nfpm
				path, err := write(info, format, *out)
				if err != nil {
					return fmt.Errorf("%s %s %s: %w", info.Name, name, format, err)
				}
				fmt.Println(path)
			}
		}
	}
	return nil
}

// write builds one package into dir and returns its path.
func write(info *nfpm.Info, format, dir string) (string, error) {
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	path := filepath.Join(dir, pkgr.ConventionalFileName(info))
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	err = pkgr.Package(info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, nil
}

func common(name, version, description string) *nfpm.Info {
	return &nfpm.Info{
		Name:          name,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "anax-agent maintainers <anax-agent@edge-secrets.invalid>",
		Description:   description,
		Homepage:      "https://github.com/edge-secrets/anax-agent",
		License:       "Apache-2.0",
		// Reproducible: the same inputs give the same package.
		MTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func file(src, dst string, mode os.FileMode) *files.Content {
	return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
}

func dir(dst string, mode os.FileMode) *files.Content {
	return &files.Content{Destination: dst, Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
}

// agentInfo is the node package. The binary goes to /usr/local/bin because the unit, shipped
// byte for byte as tested (platform/linux/anax-agent.service), starts it from there.
func agentInfo(root, bin, version, format string) *nfpm.Info {
	here := filepath.Join(root, "tools", "package")
	info := common("anax-agent", version,
		"node agent delivering secrets to edge containers\n"+
			" Accepts an agbot's agreements, starts the services' containers with Docker and keeps\n"+
			" their secrets current in per-service tmpfs stores. Includes the hzn command.")
	// The Docker engine as Debian (docker.io), Docker Inc. (docker-ce, formerly docker-engine)
	// and the RPM distributions (moby-engine, docker) package it.
	info.Depends = []string{"docker.io | docker-ce | docker-engine"}
	if format == "rpm" {
		info.Depends = []string{"(docker-ce or docker-engine or moby-engine or docker)"}
	}
	info.RPM.Summary = "node agent delivering secrets to edge containers"
	info.RPM.Group = "System Environment/Daemons"
	info.Contents = files.Contents{
		file(filepath.Join(bin, "anax-agent"), "/usr/local/bin/anax-agent", 0o755),
		file(filepath.Join(bin, "hzn"), "/usr/bin/hzn", 0o755),
		file(filepath.Join(root, "platform", "linux", "anax-agent.service"), "/usr/lib/systemd/system/anax-agent.service", 0o644),
		file(filepath.Join(here, "tmpfiles.conf"), "/usr/lib/tmpfiles.d/anax-agent.conf", 0o644),
		dir("/etc/anax-agent", 0o755),
		{Source: filepath.Join(here, "config.json"), Destination: "/etc/anax-agent/config.json", Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o600}},
		dir("/var/lib/anax-agent", 0o700),
	}
	info.Scripts = nfpm.Scripts{
		PostInstall: filepath.Join(here, "postinst.sh"),
		PreRemove:   filepath.Join(here, "prerm.sh"),
		PostRemove:  filepath.Join(here, "postrm.sh"),
	}
	return info
}

// agbotInfo is the agbot package: the binary and its data directory (`agbot init` fills it).
func agbotInfo(_, bin, version, _ string) *nfpm.Info {
	info := common("anax-agbot", version,
		"agreement bot for anax-agent nodes\n"+
			" Keeps the exchange of nodes, services and policies, proposes agreements to nodes and\n"+
			" pushes secret updates to them (agbot init, agbot serve).")
	info.RPM.Summary = "agreement bot for anax-agent nodes"
	info.Contents = files.Contents{
		file(filepath.Join(bin, "agbot"), "/usr/bin/agbot", 0o755),
		dir("/var/lib/anax-agbot", 0o700),
	}
	return info
}
