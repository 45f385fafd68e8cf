package cli

import (
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	code, out, stderr := runCLI(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: %d %s", code, stderr)
	}
	var b BuildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("version --json: %v: %s", err, out)
	}
	if b.Version == "" || b.Go != runtime.Version() || b.Platform != runtime.GOOS+"/"+runtime.GOARCH || !slices.Equal(b.PostgreSQL, []int{14, 15, 16, 17, 18}) {
		t.Errorf("version --json: %+v", b)
	}

	code, out, _ = runCLI(t, "version")
	for _, want := range []string{"pgfeed " + b.Version + "\n", "commit:", "go:         " + runtime.Version(), "postgresql: 14, 15, 16, 17, 18"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("version: %q lacks %q", out, want)
		}
	}
	if code, out, _ := runCLI(t, "--version"); code != 0 || !strings.HasPrefix(out, "pgfeed "+b.Version) {
		t.Errorf("--version: %d %q", code, out)
	}
}

// A version and commit set at link time (the Docker build) win over what
// the go command stamped.
func TestVersionFromLinker(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3", "0123456789abcdef0123"
	b := readBuildInfo()
	if b.Version != "v1.2.3" || b.Commit != "0123456789abcdef0123" || b.Modified {
		t.Fatalf("build info %+v", b)
	}
	if s := b.String(); s != "pgfeed v1.2.3 (0123456789ab)" {
		t.Errorf("one-line version %q", s)
	}
}
