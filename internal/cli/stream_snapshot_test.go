package cli

import (
	"bufio"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// Item 1 of "nothing lost": `pgfeed stream --create --snapshot` killed in
// the middle of its snapshot and started again with the same flags prints
// the whole snapshot again, instead of streaming on from a slot whose
// snapshot nobody finished.
func TestStreamSnapshotReadAgainAfterKill(t *testing.T) {
	const rows = 50_000
	dsn := pgtest.CreateDB(t, pg, "streamsnapkill")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)",
		"INSERT INTO items SELECT g, g, repeat('x', 100) FROM generate_series(1, 50000) g")
	args := []string{"stream", "--dsn", dsn, "--slot", "snapkill", "--tables", "public.items", "--create", "--snapshot"}

	// A consumer that reads a few lines and dies: pgfeed blocks on the pipe
	// mid-snapshot and is killed there.
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := filepath.Join(t.TempDir(), "first.jsonl")
	f, err := os.Create(first)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for n := 0; n < 1000 && sc.Scan(); n++ {
		f.Write(append(sc.Bytes(), '\n'))
	}
	f.Close()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// Rows the partial snapshot printed are deleted: they must not linger.
	pgtest.Exec(t, db, "UPDATE items SET val = -1 WHERE id % 1000 = 0", "DELETE FROM items WHERE id <= 100 OR id > 49000")
	got := map[int]map[string]any{}
	applyOutput(t, first, got)
	if len(got) >= rows || len(got) == 0 {
		t.Fatalf("the first run was meant to die mid-snapshot, but printed %d rows", len(got))
	}
	second := filepath.Join(t.TempDir(), "second.jsonl")
	cmd = streamProcess(t, second, args...)
	want := itemsInTable(t, db)
	deadline := time.Now().Add(time.Minute)
	for {
		state := maps.Clone(got)
		applyOutput(t, second, state)
		if reflect.DeepEqual(state, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the output holds %d rows, the table %d", len(state), len(want))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("second run: %v", err)
	}
}
