package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

// anywhereChange updates, deletes or inserts one random row of items.
func anywhereChange(rows int) func(context.Context, *pgx.Conn, *rand.Rand) error {
	return func(ctx context.Context, conn *pgx.Conn, r *rand.Rand) error {
		id := 1 + r.IntN(rows)
		var err error
		switch op := r.IntN(10); {
		case op < 5:
			_, err = conn.Exec(ctx, "UPDATE items SET val = val + 1 WHERE id = $1", id)
		case op < 7:
			_, err = conn.Exec(ctx, "DELETE FROM items WHERE id = $1", id)
		default:
			_, err = conn.Exec(ctx, "INSERT INTO items VALUES ($1, $2, NULL) ON CONFLICT (id) DO UPDATE SET val = excluded.val", id, r.IntN(1000))
		}
		return err
	}
}

// The fault test of "nothing lost" for initial snapshots: `pgfeed run` with
// snapshot = true, under writers that update, delete and insert rows all
// over the table, is killed with SIGKILL and PostgreSQL is crashed
// (-m immediate) at random moments of the snapshot; the files it wrote,
// applied in order, hold exactly the table.
func TestInitialSnapshotUnderFaults(t *testing.T) {
	const rows = 40_000
	dsn := pgtest.CreateDB(t, pg, "snapfaults")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)",
		fmt.Sprintf("INSERT INTO items SELECT g, 0, repeat('x', 50) FROM generate_series(1, %d) g", rows),
		"CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, cfgPath, fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = %q
slot = "snapfaults"
create = true
snapshot = true
tables = ["public.items", "public.marker"]
[sinks.files]
type = "file"
sources = ["main"]
path = %q
`, filepath.Join(dir, "pgfeed.db"), dsn, out))

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stopWriters(); wg.Wait() })
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeThroughCrashes(ctx, dsn, rand.New(rand.NewPCG(uint64(w), 29)), anywhereChange(rows))
		}()
	}
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 5 {
		run := streamProcess(t, os.DevNull, "run", "--config", cfgPath)
		time.Sleep(time.Duration(200+r.IntN(1200)) * time.Millisecond)
		if round%2 == 1 {
			// PostgreSQL crashes; pgfeed reconnects on its own, then dies too.
			if err := pg.Restart(context.Background(), "immediate"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(200+r.IntN(800)) * time.Millisecond)
		}
		_ = run.Process.Signal(syscall.SIGKILL)
		_ = run.Wait()
	}

	db = pgtest.Connect(t, dsn)
	run, stderr := startProcess(t, os.DevNull, "run", "--config", cfgPath)
	waitUntil(t, "the snapshot done", func() bool {
		var done bool
		_ = db.QueryRow(context.Background(), "SELECT done FROM "+source.SnapshotTable+" WHERE slot = 'snapfaults'").Scan(&done)
		return done
	})
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
	waitUntil(t, "the marker", func() bool { return markerIn(t, out) })
	_ = run.Process.Signal(syscall.SIGTERM)
	if err := run.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v (%s)", err, stderr.String())
	}
	files, _ := file.Files(out, "")
	got := map[int]map[string]any{}
	for _, f := range files {
		applyOutput(t, f, got)
	}
	want := itemsInTable(t, db)
	if len(got) != len(want) || fmt.Sprint(got) != fmt.Sprint(want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken: %d rows in files, %d in the table", len(got), len(want))
	}
}
