#!/usr/bin/env bash
# install-deps.sh — install the Debian packages the integration tests (internal/testenv)
# need, non-interactively and idempotently. Used by `make test`.
#
#  * apt-get update only when something is missing; nothing is done when all is present.
#  * postfix is preconfigured "No configuration" (no /etc/postfix/main.cf, no prompt).
#  * A policy-rc.d guard (exit 101) is put in place for the install so that no system
#    service starts; it is removed again if we created it. If a system daemon started
#    anyway, it is stopped via its own pid file (never by name).
#  * Needs root (or sudo); without it, prints what is missing and exits 1.
#
#
#   Usage: scripts/install-deps.sh [EXTRA_PACKAGE...]
# Peer-only packages (spamassassin, rspamd, postgrey, ...) are NOT here: `make bench` uses
# scripts/install-bench-deps.sh, which calls this script with them as extra packages.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(slapd ldap-utils postfix swaks dovecot-core dovecot-imapd dovecot-lmtpd
          dovecot-sieve dovecot-ldap redis-server python3 systemd "$@")

log() { printf '[install-deps] %s\n' "$*" >&2; }

missing=()
for p in "${PACKAGES[@]}"; do
  # "install ok installed" only; half-configured or removed-with-config counts as missing
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

# stop_system_daemons: if a package's own service got started, stop it by ITS pid file.
stop_system_daemons() {
  local pf pid
  for pf in /run/slapd/slapd.pid /run/dovecot/master.pid /run/redis/redis-server.pid \
            /var/spool/postfix/pid/master.pid /run/spamd.pid /run/rspamd/rspamd.pid \
            /run/postgrey.pid; do
    [[ -s $pf ]] || continue
    pid=$(tr -d ' \n' <"$pf")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || continue
    log "system service running (pid $pid from $pf) — stopping it"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
}

# Nothing missing: do nothing at all (a developer's own running services are not ours).
((${#missing[@]} == 0)) && exit 0

SUDO=()
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
  else
    log "missing packages: ${missing[*]} — run this script as root to install them"
    exit 1
  fi
fi

log "installing: ${missing[*]}"
created_guard=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  "${SUDO[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
  created_guard=1
fi
cleanup() {
  if ((created_guard)); then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi
}
trap cleanup EXIT

echo "postfix postfix/main_mailer_type select No configuration" | "${SUDO[@]}" debconf-set-selections

apt_install() {
  "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}
# apt lists may be absent (fresh image) or stale: update, then install; if the install
# still fails, update once more and retry.
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q
apt_install || { "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -q && apt_install; }

stop_system_daemons
log "done"
