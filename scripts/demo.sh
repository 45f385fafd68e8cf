#!/usr/bin/env bash
# Runs `pgfeed demo`: a throwaway PostgreSQL, a demo table, live changes on the screen.
# Ctrl-C stops it cleanly, with exit code 0. PGFEED_SKIP_SETUP=1 skips
# scripts/setup.sh (for machines set up already, and the script's test).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${PGFEED_SKIP_SETUP:-}" ] || bash scripts/setup.sh
# Built, not `go run`: go run exits 1 when Ctrl-C reaches it too, whatever
# the demo's own exit code. Bash waits for the demo, which stops cleanly on
# SIGINT and exits 0; so does this script then.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/pgfeed" ./cmd/pgfeed
"$bin/pgfeed" demo "$@"
