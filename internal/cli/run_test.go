package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
)

// `pgfeed run` with a file sink, killed with SIGKILL at random moments five
// times under concurrent writers, then stopped with SIGTERM: the files hold
// exactly the table's state, and the clean stop exits 0.
func TestRunSurvivesKill9(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "runkill")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	out := filepath.Join(dir, "out")
	cfg := fmt.Sprintf(`checkpoint = %q
[log]
level = "debug"
[sources.main]
dsn = "${TEST_DSN}"
slot = "runkill"
create = true
tables = ["public.items", "public.marker"]
[sinks.files]
type = "file"
sources = ["main"]
path = %q
rotate_bytes = "256KiB"
`, filepath.Join(dir, "state", "pgfeed.db"), out)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_DSN", dsn)
	if code, stdout, stderr := runCLI(t, "run", "--check", "--config", cfgPath); code != 0 || !strings.Contains(stdout, "ok") {
		t.Fatalf("--check: %d %s %s", code, stdout, stderr)
	}

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(seed, 7)))
		}(uint64(w))
	}
	for i := 0; i < 5; i++ {
		cmd := streamProcess(t, os.DevNull, "run", "--config", cfgPath)
		time.Sleep(time.Duration(400+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")

	cmd := streamProcess(t, os.DevNull, "run", "--config", cfgPath)
	deadline := time.Now().Add(2 * time.Minute)
	for !markerIn(t, out) {
		if time.Now().After(deadline) {
			t.Fatal("the marker never reached the file sink")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v (want exit 0)", err)
	}

	files, err := file.Files(out, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]map[string]any{}
	events := 0
	for _, f := range files {
		events += applyOutput(t, f, got)
	}
	want := itemsInTable(t, db)
	if len(want) == 0 {
		t.Fatal("the workload left no rows")
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken after kill -9 of pgfeed run: %d rows in files, %d in the table", len(got), len(want))
	}
	t.Logf("%d events in %d files, %d rows", events, len(files), len(want))
}

func markerIn(t *testing.T, dir string) bool {
	files, _ := file.Files(dir, "")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), `"table":"marker"`) {
			return true
		}
	}
	return false
}

// Config errors: one line per problem, each naming its field; nothing starts.
func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	bad := `[sources.main]
dsn = "postgres://x"
create = "yes"
[sinks.archive]
type = "file"
sources = ["mian"]
rotat_bytes = "1MB"
`
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "--config", path)
	if code == 0 {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"sources.main.create", "sinks.archive.sources[0]", "sinks.archive.rotat_bytes", "sinks.archive.path"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not name %s:\n%s", want, stderr)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(line, "pgfeed: ") {
			t.Errorf("line %q is not an error line", line)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pgfeed.db")); err == nil {
		t.Error("a checkpoint store was created for an invalid config")
	}
	code, _, stderr = runCLI(t, "run", "--config", filepath.Join(dir, "missing.toml"))
	expectOneLineError(t, code, stderr, "missing.toml")
}
