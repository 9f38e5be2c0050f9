#!/usr/bin/env bash
# Prepares a machine for the test suite: a Docker engine that answers, and qemu-user-static for
# the ARM unit tests. Idempotent; safe to call before every `make test`. Needs root for installs.
#
#   test/prepare.sh            everything below
#   test/prepare.sh docker     only the Docker engine
#   test/prepare.sh qemu       only qemu-user-static
#   test/prepare.sh openbao    only the OpenBao server binary (test/openbao.sh)
#   test/prepare.sh systemd    only the Debian root file system of the systemd test (test/systemd)
#   test/prepare.sh browser    only Debian's chromium and its driver (the agbot page test)
#   test/prepare.sh postgres   only Debian's PostgreSQL server (the agbot's PostgreSQL tests)
set -euo pipefail

log() { printf 'prepare: %s\n' "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { log "$1 needs root; run as root or install it yourself"; exit 1; }; }

apt_updated=
apt_install() {
  need_root "installing $*"
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  # With recommends, as installed and tried on this kind of machine (docker.io recommends
  # cgroupfs-mount, needed where nothing mounted the cgroup hierarchies).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

docker_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

ensure_docker() {
  if docker_answers; then
    log "docker engine answers ($(docker version --format '{{.Server.Version}}'))"
    return
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "no dockerd: installing Debian's docker.io"
    apt_install docker.io
  fi
  if docker_answers; then return; fi
  need_root "starting dockerd"
  # Started by hand rather than through systemd: CI machines may not run systemd as PID 1.
  log "starting dockerd (log: /var/log/anax-test-dockerd.log)"
  nohup dockerd --host unix:///var/run/docker.sock >/var/log/anax-test-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do
    if docker_answers; then
      log "docker engine answers ($(docker version --format '{{.Server.Version}}'))"
      return
    fi
    sleep 0.5
  done
  log "dockerd did not answer within 60s; last lines of its log:"
  tail -n 20 /var/log/anax-test-dockerd.log >&2 || true
  exit 1
}

ensure_qemu() {
  if command -v qemu-aarch64-static >/dev/null 2>&1 && command -v qemu-arm-static >/dev/null 2>&1; then
    return
  fi
  log "installing Debian's qemu-user-static"
  apt_install qemu-user-static
}

# Host programs the e2e suite copies into FROM-scratch images (an anax-style service script
# runs bash, curl and jq), setpriv and ldd (util-linux and libc-bin are essential in Debian).
ensure_tools() {
  local missing=()
  for tool in curl jq setpriv ldd; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Debian's curl, jq and util-linux for: ${missing[*]}"
  apt_install curl jq util-linux libc-bin
}

# OpenBao for the agbot's Vault tests: built once from the Go module proxy into a cache outside
# the repository (several minutes the first time); no root needed.
ensure_openbao() { log "openbao: $("$(dirname "$0")/openbao.sh")"; }

# The root file system test/systemd boots systemd in: Debian bookworm with systemd, dbus and
# docker.io, built with mmdebstrap from Debian's packages into a tarball cached under
# ~/.cache/anax-agent (the name carries a hash of this recipe: change the recipe, get a new one).
# The test imports it into the engine as an image. A few minutes the first time, then nothing.
systemd_suite=bookworm
systemd_packages=systemd,systemd-sysv,dbus,docker.io,procps
systemd_rootfs() {
  local key
  key=$(printf '%s\n' "$systemd_suite" "$systemd_packages" "$(declare -f systemd_hooks)" | sha256sum | cut -c1-12)
  printf '%s/anax-agent/systemd-rootfs-%s.tar\n' "${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}" "$key"
}
# Run by mmdebstrap in the new root ($1): the inner dockerd makes no bridge and no iptables rules
# (the machine's network namespace has only loopback; the test relays the agbot into it), and
# nothing waits for a console or a network that is not there.
systemd_hooks() {
  mkdir -p "$1/etc/docker"
  printf '{"bridge": "none", "iptables": false, "ip6tables": false, "ip-masq": false}\n' >"$1/etc/docker/daemon.json"
  for unit in getty@tty1.service console-getty.service systemd-networkd-wait-online.service \
    systemd-resolved.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$1/etc/systemd/system/$unit"
  done
  echo anax-systemd >"$1/etc/hostname"
}
ensure_systemd_rootfs() {
  local out
  out=$(systemd_rootfs)
  if [ -s "$out" ]; then
    log "systemd root fs cached: $out"
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    # Not fatal: test/systemd then skips (fails with CI=true, which runs as root).
    log "building the systemd root fs needs root; skipped"
    return
  fi
  command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
  mkdir -p "$(dirname "$out")"
  # One build at a time (make test and a developer may prepare at once).
  exec 8>"$out.lock"
  flock 8
  if [ -s "$out" ]; then
    log "systemd root fs cached: $out"
    return
  fi
  log "building the systemd root fs ($systemd_suite: $systemd_packages) into $out"
  local start
  start=$(date +%s)
  mmdebstrap --quiet --format=tar --variant=apt --aptopt='Apt::Install-Recommends "false"' \
    --include="$systemd_packages" --customize-hook="$(declare -f systemd_hooks); systemd_hooks \"\$1\"" \
    "$systemd_suite" "$out.tmp" >&2
  mv -f "$out.tmp" "$out"
  log "built in $(( $(date +%s) - start ))s ($(du -h "$out" | cut -f1))"
}

# Debian's chromium, driven headless by the agbot's page test (agbot/page_browser_test.go,
# through github.com/chromedp/chromedp); chromium-driver for WebDriver clients.
ensure_browser() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return
  fi
  log "installing Debian's chromium and chromium-driver"
  apt_install chromium chromium-driver
}

# Debian's PostgreSQL server for the agbot's PostgreSQL store tests (test/postgrestest runs
# initdb and postgres from /usr/lib/postgresql/<v>/bin in a temporary directory, as the
# package's unprivileged postgres user). The cluster the package may start is not used.
ensure_postgres() {
  if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    return
  fi
  log "installing Debian's postgresql"
  apt_install postgresql
}

case "${1:-all}" in
  docker) ensure_docker ;;
  qemu) ensure_qemu ;;
  openbao) ensure_openbao ;;
  tools) ensure_tools ;;
  systemd) ensure_systemd_rootfs ;;
  systemd-path) systemd_rootfs ;;
  browser) ensure_browser ;;
  postgres) ensure_postgres ;;
  all) ensure_docker; ensure_qemu; ensure_tools; ensure_openbao; ensure_systemd_rootfs; ensure_browser; ensure_postgres ;;
  *) log "usage: $0 [docker|qemu|tools|openbao|systemd|systemd-path|browser|postgres|all]"; exit 2 ;;
esac
