package pipeline

import (
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

// A source's row filter goes into the publication (PostgreSQL 15+): rows
// that do not match never leave the server; other tables are untouched.
func TestRowFilterInPublication(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "rowfilter")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	fs, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "rowfilter", Create: true,
			Filters: map[string]string{"public.items": "val >= 10"}}}},
		Sinks: []Sink{newSink(t, "files", "main", fs)},
		Store: openStore(t),
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(t.Context(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'rowfilter' AND active").Scan(&n)
		return n == 1
	})
	pgtest.Exec(t, db, "INSERT INTO items SELECT g, g FROM generate_series(1, 20) g", "INSERT INTO marker VALUES (1)")
	waitFor(t, "the marker", func() bool { _, m := readState(t, dir); return m })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got, _ := readState(t, dir)
	if len(got) != 11 {
		t.Fatalf("%d rows passed the filter val >= 10, want 11", len(got))
	}
	for id := range got {
		if id < 10 {
			t.Fatalf("row %d passed the filter", id)
		}
	}
}
