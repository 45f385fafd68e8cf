package cli

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/checkpoint"
)

// A checkpoint file cut short after its meta pages (a copy interrupted, a
// disk full) made bbolt panic inside pgfeed run, with a stack trace. Now
// the binary exits non-zero with one line that names the file and the way
// out, before it touches the database; run --check says the same.
func TestRunCorruptCheckpoint(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "pgfeed.db")
	s, err := checkpoint.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := s.SetPosition("main", fmt.Sprintf("sink%d", i), 100); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := os.Truncate(store, 2*4096); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = %q
slot = "corrupt_checkpoint"
create = true
[sinks.out]
type = "stdout"
sources = ["main"]
`, store, pg.DSN("postgres"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Stderr = &stderr
	err = cmd.Run()
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("pgfeed run: %v, want a non-zero exit; stderr %s", err, &stderr)
	}
	for _, bad := range []string{"panic", "goroutine"} {
		if strings.Contains(stderr.String(), bad) {
			t.Fatalf("stderr has %q:\n%s", bad, &stderr)
		}
	}
	expectOneLineError(t, cmd.ProcessState.ExitCode(), stderr.String(), "checkpoint file "+store+" is corrupt", "move it away and restart")
	// run --check reads the file as run does, and says the same.
	code, _, checkErr := runCLI(t, "run", "--check", "--config", cfgPath)
	expectOneLineError(t, code, checkErr, "checkpoint file "+store+" is corrupt")
	if checkErr != stderr.String() {
		t.Errorf("run --check and run differ:\n--check: %srun:     %s", checkErr, &stderr)
	}
}
