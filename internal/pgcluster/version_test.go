package pgcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindVersion(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("PGFEED_PG_CACHE", cache)
	for _, pkg := range []string{"17.9.0-beta.17", "17.10.0-beta.16", "16.14.0-beta.17"} {
		bin := filepath.Join(cache, pkg, "native", "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "postgres"), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The newest package of the major, by version, not by name.
	if d, err := FindVersion(17); err != nil || d != filepath.Join(cache, "17.10.0-beta.16", "native", "bin") {
		t.Errorf("FindVersion(17) = %q, %v", d, err)
	}
	t.Setenv("PGFEED_PG_BIN", "")
	t.Setenv("PGFEED_PG_VERSION", "16")
	if d, err := FindBinDir(); err != nil || d != filepath.Join(cache, "16.14.0-beta.17", "native", "bin") {
		t.Errorf("FindBinDir with PGFEED_PG_VERSION=16 = %q, %v", d, err)
	}
	if _, err := FindVersion(9); err == nil || !strings.Contains(err.Error(), "scripts/pg-versions.sh 9") {
		t.Errorf("FindVersion(9): %v, want the way to fetch it", err)
	}
	t.Setenv("PGFEED_PG_VERSION", "seventeen")
	if _, err := FindBinDir(); err == nil || !strings.Contains(err.Error(), "PGFEED_PG_VERSION") {
		t.Errorf("FindBinDir with a bad PGFEED_PG_VERSION: %v", err)
	}
}
