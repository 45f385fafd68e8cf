#!/usr/bin/env bash
# The focused suite on every supported PostgreSQL version (CI's matrix):
# core streaming, every type, large streamed transactions with savepoints,
# snapshot + stream, schema changes, reconnects and slot health, against
# the server programs scripts/pg-versions.sh fetches and caches.
#
#   scripts/test-versions.sh [MAJOR...]    # default: 14 15 16 17 18
#
# Prints one line per version (ok or FAIL) and exits non-zero if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -eq 0 ]]; then set -- 14 15 16 17 18; fi
bash scripts/pg-versions.sh "$@" >/dev/null

# One regular expression per package; each names whole tests.
declare -A FOCUS=(
	[./source]='^(TestProofOfConcept|TestRedeliveryAfterRestart|TestIdleSlotAdvances|TestEveryType|TestUnchangedToast|TestKeyEveryIdentity|TestOtherOps|TestLargeTransactions|TestStreamedSavepoints|TestInitialSnapshotJoinsStream|TestEachSlotHasItsOwnPublication|TestSlotHealth|TestSlotInvalidatedByKeepSize|TestSlotInvalidatedByIdleTimeout|TestFailoverSlot)$'
	[./pipeline]='^(TestReconnectAfterPostgresRestart|TestInitialSnapshotInterrupted|TestSlotDroppedUnderRunningPipeline|TestSlotInvalidatedStopsPipeline)$'
	[./internal/cli]='^(TestSlotCommands|TestStreamSnapshotReadAgainAfterKill|TestInvalidatedSlot|TestSlotCreateFailover)$'
)

failed=0
summary=()
for major in "$@"; do
	status=ok
	for pkg in "${!FOCUS[@]}"; do
		echo "== PostgreSQL $major: $pkg" >&2
		if ! PGFEED_PG_VERSION=$major go test -race -count=1 -timeout 20m -run "${FOCUS[$pkg]}" "$pkg"; then
			status=FAIL
		fi
	done
	[[ $status == ok ]] || failed=1
	summary+=("PostgreSQL $major: $status")
done
printf '%s\n' "${summary[@]}"
exit $failed
