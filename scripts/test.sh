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
# The focused suite on every supported PostgreSQL version (needs npm and
# the network once; the packages are cached): PGFEED_PG_MATRIX=1.
if [ "${PGFEED_PG_MATRIX:-0}" = 1 ]; then
  bash scripts/test-versions.sh
fi
