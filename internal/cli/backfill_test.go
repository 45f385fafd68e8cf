package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
)

// `pgfeed backfill` asks a running `pgfeed run` to backfill a 200k-row
// table while writers change it; the pipeline is killed with SIGKILL
// mid-backfill and started again: it resumes from the progress in its
// checkpoint store, and the files hold exactly the table.
func TestBackfillThroughRunWithKill9(t *testing.T) {
	const rows = 200_000
	dsn := pgtest.CreateDB(t, pg, "runbackfill")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)",
		fmt.Sprintf("INSERT INTO items SELECT g, 0, NULL FROM generate_series(1, %d) g", rows),
		"CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	store := filepath.Join(dir, "pgfeed.db")
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = %q
slot = "runbackfill"
publication = "runbackfill"
create = true
tables = ["public.items", "public.marker"]
[sinks.files]
type = "file"
sources = ["main"]
path = %q
`, store, dsn, out)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	run := streamProcess(t, os.DevNull, "run", "--config", cfgPath)
	waitForSlot(t, db, "runbackfill")

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stopWriters(); wg.Wait() })
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(uint64(w), 11)))
		}()
	}
	if code, _, stderr := runCLI(t, "backfill", "--dsn", dsn, "--slot", "runbackfill", "--publication", "runbackfill", "items"); code != 0 {
		t.Fatalf("pgfeed backfill: %s", stderr)
	}
	// Kill early in the backfill: a few MB of the table's ~25 MB of events.
	for outputBytes(out) < 3<<20 {
		time.Sleep(10 * time.Millisecond)
	}
	_ = run.Process.Signal(syscall.SIGKILL)
	_ = run.Wait()

	st, err := checkpoint.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	mid, ok, err := st.Progress("runbackfill", "public.items")
	st.Close()
	if err != nil || !ok || mid.Rows == 0 || mid.Done {
		t.Fatalf("progress after the kill: %+v %v %v", mid, ok, err)
	}
	readsBefore := countReads(t, out)

	run, stderr := startProcess(t, os.DevNull, "run", "--config", cfgPath)
	waitUntil(t, "the backfill to finish", func() bool { return strings.Contains(stderr.String(), "backfill done") })
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
	waitUntil(t, "the marker", func() bool { return markerIn(t, out) })
	_ = run.Process.Signal(syscall.SIGTERM)
	if err := run.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v", err)
	}

	st, err = checkpoint.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	end, _, _ := st.Progress("runbackfill", "public.items")
	st.Close()
	if !end.Done {
		t.Fatalf("backfill not done: %+v", end)
	}
	if second := countReads(t, out) - readsBefore; second > rows-int(mid.Rows)+10_000 {
		t.Fatalf("the second run read %d rows; resuming after %d should read about %d", second, mid.Rows, rows-int(mid.Rows))
	}

	files, _ := file.Files(out, "")
	got := map[int]map[string]any{}
	for _, f := range files {
		applyOutput(t, f, got)
	}
	want := itemsInTable(t, db)
	if len(got) != len(want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken: %d rows in files, %d in the table", len(got), len(want))
	}
	for id, w := range want {
		if fmt.Sprint(got[id]) != fmt.Sprint(w) {
			reportDiff(t, got, want)
			t.Fatalf("state invariant broken at id %d", id)
		}
	}
	t.Logf("killed after %d of %d rows; resumed there", mid.Rows, rows)
}

// waitForSlot waits until a stream is active on the slot.
func waitForSlot(t *testing.T, db *pgx.Conn, slot string) {
	t.Helper()
	waitUntil(t, "slot "+slot, func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot).Scan(&n)
		return n == 1
	})
}

// waitUntil polls cond for up to three minutes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scanEvents calls fn for each complete event line of a file sink's folder.
func scanEvents(t *testing.T, dir string, fn func(op, table string, after map[string]any)) {
	files, _ := file.Files(dir, "")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e struct {
				Op    string         `json:"op"`
				Table string         `json:"table"`
				After map[string]any `json:"after"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				fn(e.Op, e.Table, e.After)
			}
		}
	}
}

func outputBytes(dir string) int64 {
	files, _ := file.Files(dir, "")
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func countReads(t *testing.T, dir string) int {
	n := 0
	scanEvents(t, dir, func(op, table string, _ map[string]any) {
		if op == "read" && table == "items" {
			n++
		}
	})
	return n
}
