#!/usr/bin/env bash
# Installs what pgfeed's demo and tests need and this machine lacks:
# PostgreSQL server programs (initdb, pg_ctl, pg_recvlogical), the wal2json
# output plugin (the wal2json format is compared with it), redis-server and
# nats-server. Debian/Ubuntu via apt-get; elsewhere it says what to install.
set -euo pipefail

missing=()
have_pg_server() {
  [ -n "${PGFEED_PG_BIN:-}" ] && [ -x "$PGFEED_PG_BIN/initdb" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
  command -v initdb >/dev/null && command -v pg_ctl >/dev/null
}
have_pg_server || missing+=(postgresql postgresql-contrib)
# wal2json goes into the lib folder of the server the tests run (the newest
# /usr/lib/postgresql/N, as pgcluster picks it); with no server yet, into
# the one that "postgresql" brings, found once the package lists are read.
# A server of one's own (PGFEED_PG_BIN) brings its own plugin.
pg_major=""
wal2json_missing=false
if [ -z "${PGFEED_PG_BIN:-}" ]; then
  for initdb in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$initdb" ] || continue
    major=${initdb#/usr/lib/postgresql/}
    major=${major%%/*}
    if [ -z "$pg_major" ] || [ "$major" -gt "$pg_major" ]; then
      pg_major=$major
    fi
  done
  if [ -z "$pg_major" ] || [ ! -e "/usr/lib/postgresql/$pg_major/lib/wal2json.so" ]; then
    wal2json_missing=true
  fi
fi
if [ -n "$pg_major" ] && $wal2json_missing; then
  missing+=("postgresql-$pg_major-wal2json")
fi
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
# Headless Chromium renders the admin status page in the server tests.
command -v chromium >/dev/null || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ] && ! $wal2json_missing; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
if ! command -v apt-get >/dev/null; then
  what="${missing[*]}"
  if [ -z "$pg_major" ] && $wal2json_missing; then
    what="$what wal2json (the output plugin, for your PostgreSQL version)"
  fi
  echo "setup: please install $what with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if [ -z "$pg_major" ] && $wal2json_missing; then
  # "postgresql" depends on postgresql-N, the distribution's default server.
  pg_major=$( (apt-cache depends postgresql 2>/dev/null || true) | sed -n '/Depends: postgresql-[0-9][0-9]*$/{s/.*Depends: postgresql-//p;q;}')
  missing+=("postgresql-${pg_major:-15}-wal2json")
fi

# The packages must not start services of their own on the standard ports:
# tests and the demo start their own servers on free ports. A policy-rc.d
# that says so is in place while apt-get installs; one the machine already
# had (a container's, an administrator's) is put back afterwards, also when
# the installation fails or is interrupted. PGFEED_POLICY_RC_D moves the
# file, for the script's own test.
policy=${PGFEED_POLICY_RC_D:-/usr/sbin/policy-rc.d}
saved=""
restore_policy() {
  if [ -n "$saved" ]; then
    $sudo mv -f "$saved" "$policy"
  else
    $sudo rm -f "$policy"
  fi
}
if [ -e "$policy" ] || [ -L "$policy" ]; then
  saved=$($sudo mktemp "$policy.pgfeed-saved.XXXXXX")
  $sudo cp -a "$policy" "$saved" # -a: the same mode, and a symlink stays one
fi
trap restore_policy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy.pgfeed-new" >/dev/null
$sudo chmod +x "$policy.pgfeed-new"
$sudo mv -f "$policy.pgfeed-new" "$policy" # replaces a symlink, not its target
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
