package pipeline

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink"
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
	var done bool
	if err := db.QueryRow(context.Background(), "SELECT done FROM "+source.SnapshotTable+" WHERE slot = 'snapstop'").Scan(&done); err != nil || !done {
		t.Fatalf("snapshot not recorded as done: %v %v", done, err)
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

// delayedSink slows another sink down, so that a snapshot is still being
// read when the test interrupts it.
type delayedSink struct {
	sink.Sink
	delay   time.Duration
	records atomic.Int64
}

func (d *delayedSink) Write(ctx context.Context, batch []sink.Record) error {
	time.Sleep(d.delay)
	if err := d.Sink.Write(ctx, batch); err != nil {
		return err
	}
	d.records.Add(int64(len(batch)))
	return nil
}

// Item 1 of "nothing lost": PostgreSQL crashing in the middle of an initial
// snapshot does not cut it short: the reconnected source reads it again
// (from a new slot), and with the changes after it the sink holds exactly
// the table.
func TestInitialSnapshotSurvivesPostgresCrash(t *testing.T) {
	const rows = 30_000
	dsn := pgtest.CreateDB(t, pg, "snapcrash")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)",
		"INSERT INTO items SELECT g, g FROM generate_series(1, 30000) g")
	store := openStore(t)
	dir := t.TempDir()
	fs, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	slow := &delayedSink{Sink: fs, delay: 50 * time.Millisecond}
	k := newSink(t, "out", "main", slow)
	k.MaxBatch = 500
	src := Source{Name: "main", Snapshot: true, Stream: source.Config{DSN: dsn, Slot: "snapcrash", Create: true}}
	p := &Pipeline{Sources: []Source{src}, Sinks: []Sink{k}, Store: store, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	stop := run(t, p)
	waitFor(t, "part of the snapshot", func() bool { return slow.records.Load() > 0 })
	if err := pg.Restart(context.Background(), "immediate"); err != nil {
		t.Fatal(err)
	}
	if slow.records.Load() >= rows {
		t.Fatalf("the crash was meant to cut the snapshot, but %d rows were written", slow.records.Load())
	}
	db = pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "UPDATE items SET val = -1 WHERE id <= 10", "DELETE FROM items WHERE id > 29990")
	waitFor(t, "the snapshot read again and acked", func() bool {
		var done bool
		_ = db.QueryRow(context.Background(), "SELECT done FROM "+source.SnapshotTable+" WHERE slot = 'snapcrash'").Scan(&done)
		return done
	})
	pgtest.Exec(t, db, "UPDATE items SET val = -2 WHERE id = 20", "INSERT INTO marker VALUES (1)")
	waitFor(t, "the marker", func() bool { _, m := readState(t, dir); return m })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got, _ := readState(t, dir)
	t.Logf("%d records written in all", slow.records.Load())
	compareState(t, got, tableState(t, db))
}
