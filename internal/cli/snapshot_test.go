package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// pgfeed snapshot prints every row as a read event, quietly when piped, and
// refuses unknown or unreadable tables in one line.
func TestSnapshotCommand(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "snapcmd")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE a(id int PRIMARY KEY, v text)", "INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 500) g",
		"CREATE TABLE b(k text, n numeric)", "INSERT INTO b VALUES ('x', 1.50), ('y', NULL)",
		"CREATE ROLE reader LOGIN", "CREATE TABLE secret(id int)")
	code, stdout, stderr := runCLI(t, "snapshot", "--dsn", dsn, "a", "public.b")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 502 {
		t.Fatalf("%d lines, want 502", len(lines))
	}
	seen := map[string]int{}
	for _, l := range lines {
		var e struct {
			Op    string         `json:"op"`
			Table string         `json:"table"`
			After map[string]any `json:"after"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Op != "read" {
			t.Fatalf("bad line %q: %v", l, err)
		}
		seen[e.Table]++
		if e.Table == "b" && e.After["k"] == "x" && e.After["n"] != "1.50" {
			t.Fatalf("numeric not exact: %s", l)
		}
	}
	if seen["a"] != 500 || seen["b"] != 2 {
		t.Fatalf("rows per table: %v", seen)
	}

	code, _, stderr = runCLI(t, "snapshot", "--dsn", dsn, "nope")
	expectOneLineError(t, code, stderr, "nope", "does not exist")
	code, _, stderr = runCLI(t, "snapshot", "--dsn", strings.Replace(dsn, "user=postgres", "user=reader", 1), "secret")
	expectOneLineError(t, code, stderr, "secret", "SELECT")
}
