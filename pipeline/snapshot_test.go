package pipeline

import (
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

// An initial snapshot stopped halfway is read again, whole, on the next
// run; with the changes after it, the sink holds exactly the table.
func TestInitialSnapshotInterrupted(t *testing.T) {
	const rows = 30_000
	dsn := pgtest.CreateDB(t, pg, "snapstop")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)",
		"INSERT INTO items SELECT g, g FROM generate_series(1, 30000) g")
	store := openStore(t)
	src := Source{Name: "main", Snapshot: true, Stream: source.Config{DSN: dsn, Slot: "snapstop", Create: true}}

	// First run: a slow sink, stopped long before the snapshot is through.
	slow := &slowSink{delay: 100 * time.Millisecond}
	k := newSink(t, "out", "main", slow)
	k.MaxBatch = 200
	p := &Pipeline{Sources: []Source{src}, Sinks: []Sink{k}, Store: store}
	stop := run(t, p)
	waitFor(t, "part of the snapshot", func() bool { return slow.count() > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if slow.count() >= rows {
		t.Fatalf("the first run was meant to stop mid-snapshot, but wrote %d rows", slow.count())
	}
	pgtest.Exec(t, db, "UPDATE items SET val = -1 WHERE id <= 10", "DELETE FROM items WHERE id > 29990")

	// Second run, to files: the whole snapshot again, then the changes.
	dir := t.TempDir()
	fs, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p = &Pipeline{Sources: []Source{src}, Sinks: []Sink{newSink(t, "out", "main", fs)}, Store: store}
	stop = run(t, p)
	waitFor(t, "the whole snapshot again", func() bool { return p.Stats("out").Events.Load() >= rows-10 })
	pgtest.Exec(t, db, "UPDATE items SET val = -2 WHERE id = 20", "INSERT INTO marker VALUES (2)")
	waitFor(t, "the marker", func() bool { _, m := readState(t, dir); return m })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got, _ := readState(t, dir)
	t.Logf("second run: %d events written, %d skipped", p.Stats("out").Events.Load(), p.Stats("out").SkippedReplayed.Load())
	compareState(t, got, tableState(t, db))
	done, ok, err := store.Progress("main", initialSnapshotKey)
	if err != nil || !ok || !done.Done {
		t.Fatalf("snapshot not recorded as done: %+v %v %v", done, ok, err)
	}

	// Third run: no snapshot again.
	fs2, err := file.Open(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p = &Pipeline{Sources: []Source{src}, Sinks: []Sink{newSink(t, "out", "main", fs2)}, Store: store}
	stop = run(t, p)
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := p.Stats("out").Events.Load(); n != 0 {
		t.Fatalf("third run wrote %d events; the snapshot was done", n)
	}
}
