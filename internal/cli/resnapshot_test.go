package cli

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
)

// Item 9 of "nothing lost", the way out: after the slot vanished, run
// refuses with one line naming --resnapshot, and run --resnapshot creates
// the slot again and reads every row, so the files hold the table.
func TestRunResnapshotAfterLostSlot(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "resnapshot")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)",
		"INSERT INTO items SELECT g, g, NULL FROM generate_series(1, 100) g")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfg := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, cfg, fmt.Sprintf(`checkpoint = %q
[log]
level = "error"
[sources.main]
dsn = %q
slot = "resnapshot"
create = true
[sinks.files]
type = "file"
sources = ["main"]
path = %q
`, filepath.Join(dir, "pgfeed.db"), dsn, out))
	runUntilMarker(t, dsn, "resnapshot", out, 1, "run", "--config", cfg)

	// The slot goes, and with it the changes made meanwhile.
	pgtest.Exec(t, db, "SELECT pg_drop_replication_slot('resnapshot')", "UPDATE items SET val = -1 WHERE id <= 10", "DELETE FROM items WHERE id > 90")
	code, _, stderr := runCLI(t, "run", "--config", cfg)
	expectOneLineError(t, code, stderr, `replication slot "resnapshot" vanished`, "--resnapshot")

	runUntilMarker(t, dsn, "resnapshot", out, 2, "run", "--config", cfg, "--resnapshot")
	files, _ := file.Files(out, "")
	got := map[int]map[string]any{}
	for _, f := range files {
		applyOutput(t, f, got)
	}
	// Rows deleted while the slot was gone linger from the first run's
	// files: a consumer that starts over replaces its state with the
	// snapshot. What the snapshot delivered is the table.
	for id := 91; id <= 100; id++ {
		delete(got, id)
	}
	if want := itemsInTable(t, db); !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("after --resnapshot: %d rows in files, %d in the table", len(got), len(want))
	}
}
