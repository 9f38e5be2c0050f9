#!/usr/bin/env bash
# Builds the OpenBao server the tests run (design §8) once, from the Go module proxy, into a cache
# outside the repository, and prints the binary's path on stdout. Later calls print the cached path.
#
#   test/openbao.sh            build if missing, print the path
#   OPENBAO_BIN=/path/to/bao   (read by the Go test helper test/openbaotest, not by this script)
#
# The nested module test/tools/openbao pins the version; never `go mod tidy` it.
set -euo pipefail

log() { printf 'openbao: %s\n' "$*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod="$here/tools/openbao"
version=$(awk '$1 == "require" && $2 == "github.com/openbao/openbao" { print $3 }' "$mod/go.mod")
[ -n "$version" ] || { log "no github.com/openbao/openbao requirement in $mod/go.mod"; exit 1; }
release=2.4.0 # the release tag of that commit, for `bao version`

dir="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/anax-agent/openbao-$version"
bin="$dir/bao"
mkdir -p "$dir"

works() { [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; }

if ! works; then
  # One build at a time: test packages may call this script in parallel.
  exec 9>"$dir/.lock"
  flock 9
  if ! works; then
    log "building OpenBao $version into $bin (several minutes on 2 cores)"
    start=$(date +%s)
    tmp="$bin.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    (cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -trimpath -buildvcs=false -o "$tmp" \
      -ldflags "-s -w -X github.com/openbao/openbao/version.fullVersion=$release -X github.com/openbao/openbao/version.GitCommit=${version##*-}" .)
    mv -f "$tmp" "$bin"
    log "built in $(( $(date +%s) - start ))s"
  fi
fi
printf '%s\n' "$bin"
