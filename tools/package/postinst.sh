#!/bin/sh
# anax-agent postinst (deb: configure [old-version]; rpm: 1 install, 2 upgrade).
# Nothing is enabled or started until /etc/anax-agent/config.json names an agbot (agbot_url):
# an agent without one has nothing to do, and an operator may need to add the agbot's CA first.
# On an upgrade a running agent is restarted (its containers and secret stores stay: the unit's
# KillMode=mixed and RuntimeDirectoryPreserve=yes); a stopped or disabled one is left alone.
set -e
conf=/etc/anax-agent/config.json
case "$1" in
  configure) upgrade=${2:+yes} ;;
  1) upgrade= ;;
  2) upgrade=yes ;;
  *) exit 0 ;;
esac
[ -d /run/systemd/system ] || exit 0
systemd-tmpfiles --create anax-agent.conf >/dev/null 2>&1 || true
systemctl daemon-reload >/dev/null 2>&1 || true
if [ -n "$upgrade" ]; then
  systemctl try-restart anax-agent.service || true
  exit 0
fi
if grep -Eq '"agbot_url"[[:space:]]*:[[:space:]]*"[^"]+"' "$conf" 2>/dev/null; then
  systemctl enable --now anax-agent.service
else
  echo "anax-agent: set agbot_url (and agbot_ca, org) in $conf, then: systemctl enable --now anax-agent" >&2
fi
