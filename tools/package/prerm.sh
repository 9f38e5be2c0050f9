#!/bin/sh
# anax-agent prerm (deb: remove|upgrade|...; rpm: 0 remove, 1 upgrade). On removal the agent
# stops and is disabled; the service containers keep running (dockerd owns them) and the state
# in /var/lib/anax-agent stays, so a reinstall resumes the agreements.
set -e
case "$1" in
  remove|0) ;;
  *) exit 0 ;;
esac
[ -d /run/systemd/system ] || exit 0
systemctl disable --now anax-agent.service >/dev/null 2>&1 || true
