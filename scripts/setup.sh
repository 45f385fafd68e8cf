#!/usr/bin/env bash
# Installs what pgfeed's demo and tests need and this machine lacks:
# PostgreSQL server programs (initdb, pg_ctl, pg_recvlogical), redis-server
# and nats-server. Debian/Ubuntu via apt-get; elsewhere it says what to install.
set -euo pipefail

missing=()
have_pg_server() {
  [ -n "${PGFEED_PG_BIN:-}" ] && [ -x "$PGFEED_PG_BIN/initdb" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null
}
have_pg_server || missing+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null; then
  echo "setup: please install ${missing[*]} with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The packages must not start services of their own on the standard ports:
# tests and the demo start their own servers on free ports.
printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
$sudo chmod +x /usr/sbin/policy-rc.d
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
$sudo rm -f /usr/sbin/policy-rc.d
