package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// runUntilMarker starts `pgfeed <args>`, inserts a marker row once the slot
// is active, waits until the file sink in out shows it, then stops the
// process with SIGTERM and expects exit code 0. It returns stdout.
func runUntilMarker(t *testing.T, dsn, slot, out string, marker int, args ...string) string {
	t.Helper()
	db := pgtest.Connect(t, dsn)
	stdout := filepath.Join(t.TempDir(), "stdout")
	cmd, stderr := startProcess(t, stdout, args...)
	waitUntil(t, "slot "+slot, func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", slot).Scan(&n)
		return n == 1 || cmd.ProcessState != nil
	})
	_, err := db.Exec(context.Background(), "INSERT INTO marker VALUES ($1)", marker)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the marker", func() bool { return markerIDIn(t, out, marker) })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	b, _ := os.ReadFile(stdout)
	return string(b)
}

func markerIDIn(t *testing.T, dir string, id int) bool {
	found := false
	scanEvents(t, dir, func(op, table string, after map[string]any) {
		if table == "marker" && op == "insert" && after["id"] == float64(id) {
			found = true
		}
	})
	return found
}

// The example pipeline of the repository runs as it is: an initial
// snapshot and the changes to files with masked columns, and a Debezium
// view of one table on stdout.
func TestExamplePipeline(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "example")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE users(id int PRIMARY KEY, name text, email text, password text)",
		"INSERT INTO users VALUES (1, 'ada', 'ada@example.com', 'secret')",
		"CREATE TABLE orders(id int PRIMARY KEY, user_id int, total numeric)",
		"CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	t.Setenv("PGFEED_DSN", dsn)
	t.Setenv("PGFEED_STATE", filepath.Join(dir, "state"))
	t.Setenv("PGFEED_OUT", out)
	cfg, err := filepath.Abs("../../examples/pipeline.toml")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO orders VALUES (1, 1, 9.90)")
	stdout := runUntilMarker(t, dsn, "pgfeed_app", out, 1, "run", "--config", cfg)

	var userRead, orderInsert bool
	scanEvents(t, out, func(op, table string, after map[string]any) {
		switch {
		case table == "users" && op == "read":
			userRead = after["email"] == "***" && after["password"] == "***" && after["name"] == "ada"
		case table == "orders" && op == "read":
			orderInsert = after["total"] == "9.90"
		}
	})
	if !userRead {
		t.Error("the snapshot row of users is missing or not masked")
	}
	if !orderInsert {
		t.Error("the snapshot row of orders is missing from the files")
	}
	if !strings.Contains(stdout, `"op":"r"`) || !strings.Contains(stdout, `"table":"orders"`) || strings.Contains(stdout, `"table":"users"`) {
		t.Errorf("stdout should hold Debezium events of orders only:\n%s", stdout)
	}
}

// retain keeps the slot's confirmed position behind, and replay sends again
// from a position inside that window; a position outside it is refused.
func TestRetainAndReplay(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "replay")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cfg := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, cfg, `checkpoint = "`+filepath.Join(dir, "pgfeed.db")+`"
[sources.main]
dsn = "`+dsn+`"
slot = "replay"
create = true
retain = "1h"
[sinks.files]
type = "file"
sources = ["main"]
path = "`+out+`"
`)
	// Create the slot, then write: every change is in the slot's window.
	if code, _, stderr := runCLI(t, "run", "--config", cfg, "--endpos", "0/1"); code != 0 {
		t.Fatalf("first run: %s", stderr)
	}
	var start string
	if err := db.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'replay'").Scan(&start); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1, 1, 'first')")
	var firstEnd string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&firstEnd); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO items VALUES (2, 2, 'second')")
	runUntilMarker(t, dsn, "replay", out, 1, "run", "--config", cfg)

	var confirmed string
	if err := db.QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'replay'").Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	if confirmed != start {
		t.Fatalf("with retain = 1h the slot moved from %s to %s", start, confirmed)
	}
	inserts := func(id int) int {
		n := 0
		scanEvents(t, out, func(op, table string, after map[string]any) {
			if table == "items" && op == "insert" && after["id"] == float64(id) {
				n++
			}
		})
		return n
	}
	if inserts(1) != 1 || inserts(2) != 1 {
		t.Fatalf("before replay: %d and %d copies of the inserts, want 1 each", inserts(1), inserts(2))
	}

	// Replay from after the first insert: the second one comes again, not the first.
	from, _ := event.ParseLSN(firstEnd)
	runUntilMarker(t, dsn, "replay", out, 2, "replay", "--config", cfg, "--from", from.String())
	if inserts(1) != 1 || inserts(2) != 2 {
		t.Fatalf("after replay: %d and %d copies of the inserts, want 1 and 2", inserts(1), inserts(2))
	}

	code, _, stderr := runCLI(t, "replay", "--config", cfg, "--from", "0/10")
	expectOneLineError(t, code, stderr, "0/10 is no longer retained", "retain")

	// Item 7 of "nothing lost": a position beyond what the sink received
	// would move its checkpoint forward and skip changes: refused, and the
	// checkpoint stays.
	pgtest.Exec(t, db, "INSERT INTO items VALUES (3, 3, 'not yet delivered')")
	var ahead string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&ahead); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "replay", "--config", cfg, "--from", ahead)
	expectOneLineError(t, code, stderr, "is beyond what sink files has received", "would skip")
	runUntilMarker(t, dsn, "replay", out, 3, "run", "--config", cfg)
	if n := inserts(3); n != 1 {
		t.Fatalf("after a refused replay: %d copies of the insert that came after, want 1", n)
	}
}

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
