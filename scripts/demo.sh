#!/usr/bin/env bash
# Runs `pgfeed demo`: a throwaway PostgreSQL, a demo table, live changes on the screen.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec go run ./cmd/pgfeed demo "$@"
