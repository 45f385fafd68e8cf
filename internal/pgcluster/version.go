package pgcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// FindVersion locates the server programs of one PostgreSQL major version:
// in the cache that scripts/pg-versions.sh fills (the newest package of that
// major), else in /usr/lib/postgresql/MAJOR/bin.
func FindVersion(major int) (string, error) {
	pattern := filepath.Join(CacheDir(), strconv.Itoa(major)+".*", "native", "bin", "postgres")
	matches, _ := filepath.Glob(pattern)
	sort.Slice(matches, func(i, j int) bool { return packageLess(matches[j], matches[i]) })
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	d := fmt.Sprintf("/usr/lib/postgresql/%d/bin", major)
	if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
		return d, nil
	}
	return "", fmt.Errorf("PostgreSQL %d server programs not found (in %s or %s): run scripts/pg-versions.sh %d", major, CacheDir(), d, major)
}

// CacheDir is where scripts/pg-versions.sh keeps the packages:
// $PGFEED_PG_CACHE, else /var/cache/pgfeed-postgres as root, else
// ~/.cache/pgfeed-postgres.
func CacheDir() string {
	if d := os.Getenv("PGFEED_PG_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/pgfeed-postgres"
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "pgfeed-postgres")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "pgfeed-postgres")
}

// packageLess orders package folders (".../17.9.0-beta.17/...") by version.
func packageLess(a, b string) bool {
	va, vb := packageVersion(a), packageVersion(b)
	for i := range min(len(va), len(vb)) {
		if va[i] != vb[i] {
			return va[i] < vb[i]
		}
	}
	return len(va) < len(vb)
}

func packageVersion(path string) []int {
	dir := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(path)))) // 17.9.0-beta.17
	var v []int
	for _, f := range strings.FieldsFunc(dir, func(r rune) bool { return r == '.' || r == '-' }) {
		if n, err := strconv.Atoi(f); err == nil {
			v = append(v, n)
		}
	}
	return v
}

// Major is the cluster's PostgreSQL major version, from its data folder.
func (c *Cluster) Major() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "PG_VERSION"))
	if err != nil {
		return 0, fmt.Errorf("reading the cluster's version: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
