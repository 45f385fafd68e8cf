package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var (
	pg  *pgcluster.Cluster
	bin string // the pgfeed binary, built once for the tests that kill it
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgfeed-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "pgfeed")
	build := exec.Command("go", "build", "-race", "-o", bin, "github.com/pgfeed/pgfeed/cmd/pgfeed")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pgfeed: %v\n%s", err, out)
		return 1
	}
	return pgtest.Main(m, &pg, pgcluster.Options{})
}

// runCLI runs the command line in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- Main(args, &out, &errOut) }()
	select {
	case code := <-done:
		return code, out.String(), errOut.String()
	case <-ctx.Done():
		t.Fatalf("pgfeed %s did not finish", strings.Join(args, " "))
		return 0, "", ""
	}
}

// expectOneLineError asserts a non-zero exit with exactly one line on
// stderr that contains every fragment.
func expectOneLineError(t *testing.T, code int, stderr string, fragments ...string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("exit code 0, want failure; stderr: %q", stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "pgfeed: ") {
		t.Fatalf("want one line starting with 'pgfeed: ', got %q", stderr)
	}
	for _, f := range fragments {
		if !strings.Contains(lines[0], f) {
			t.Fatalf("error %q does not mention %q", lines[0], f)
		}
	}
}
