package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

// runUntilError runs p and returns Run's error, failing the test if Run
// is still going after a minute.
func runUntilError(t *testing.T, p *Pipeline) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		<-done
		t.Fatal("the pipeline went on instead of stopping")
		return nil
	}
}

// waitSlot waits until the pipeline created its slot: changes before it
// are not in the stream.
func waitSlot(t *testing.T, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, slot string) {
	t.Helper()
	waitFor(t, "slot "+slot, func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&n)
		return n == 1
	})
}

func fileSink(t *testing.T) (Sink, string) {
	t.Helper()
	dir := t.TempDir()
	fs, err := file.Open(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return newSink(t, "out", "main", fs), dir
}

// runningPipeline runs a pipeline from a fresh database (named like its
// slot) to a file sink, until it delivered a first row, and returns the
// database and Run's result.
func runningPipeline(t *testing.T, slot string) (*pgx.Conn, <-chan error) {
	t.Helper()
	dsn := pgtest.CreateDB(t, pg, slot)
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)")
	k, dir := fileSink(t)
	src := Source{Name: "main", Stream: source.Config{DSN: dsn, Slot: slot, Create: true}}
	p := &Pipeline{Sources: []Source{src}, Sinks: []Sink{k}, Store: openStore(t), MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	waitSlot(t, db, slot)
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1, 1)")
	waitFor(t, "the first row", func() bool { s, _ := readState(t, dir); return len(s) == 1 })
	return db, done
}

// Item 9 of "nothing lost": a slot dropped under a running pipeline stops
// it with one line that names the gap and the way out; the slot is not
// created again behind the user's back.
func TestSlotDroppedUnderRunningPipeline(t *testing.T) {
	db, done := runningPipeline(t, "slotgone")

	// Take the slot away: end its walsender, then drop it before the
	// pipeline reconnects (it may win a few times).
	waitFor(t, "the slot dropped", func() bool {
		_, _ = db.Exec(context.Background(), "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'slotgone' AND active_pid IS NOT NULL")
		_, err := db.Exec(context.Background(), "SELECT pg_drop_replication_slot('slotgone')")
		return err == nil
	})
	pgtest.Exec(t, db, "INSERT INTO items VALUES (2, 2)")
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the pipeline went on without its slot")
	}
	if !errors.Is(err, source.ErrGap) || !strings.Contains(err.Error(), "vanished") || !strings.Contains(err.Error(), "--resnapshot") ||
		!strings.Contains(err.Error(), "every sink has everything up to") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("want one line naming the lost slot, the gap and the way out, got: %v", err)
	}
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slotgone'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the slot was created again (%d)", n)
	}
}

// Item 8: a checkpoint written against one cluster, with the DSN moved to
// another (a new or restored server), stops the source with one line.
func TestCheckpointFromAnotherCluster(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "othercluster")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)")
	store := openStore(t)
	k, dir := fileSink(t)
	src := Source{Name: "main", Stream: source.Config{DSN: dsn, Slot: "moved", Create: true}}
	p := &Pipeline{Sources: []Source{src}, Sinks: []Sink{k}, Store: store}
	stop := run(t, p)
	waitSlot(t, db, "moved")
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1, 1)")
	waitFor(t, "the first row", func() bool { s, _ := readState(t, dir); return len(s) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	other, err := pgcluster.Start(context.Background(), pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Remove() })
	otherDSN := pgtest.CreateDB(t, other, "othercluster")
	pgtest.Exec(t, pgtest.Connect(t, otherDSN), "CREATE TABLE items(id int PRIMARY KEY, val int)")
	k2, _ := fileSink(t)
	src.Stream.DSN = otherDSN
	p = &Pipeline{Sources: []Source{src}, Sinks: []Sink{k2}, Store: store}
	err = runUntilError(t, p)
	if !errors.Is(err, source.ErrGap) || !strings.Contains(err.Error(), "written against PostgreSQL system") || !strings.Contains(err.Error(), "--resnapshot") {
		t.Fatalf("want one line about another cluster, got: %v", err)
	}
	var n int
	if err := pgtest.Connect(t, otherDSN).QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots").Scan(&n); err != nil || n != 0 {
		t.Fatalf("a slot was created on the other cluster (%d)", n)
	}
}

// Item 19: a publication dropped under a running pipeline stops it with
// one line saying the slot must be created again, instead of retrying
// forever.
func TestPublicationDroppedUnderRunningPipeline(t *testing.T) {
	db, done := runningPipeline(t, "pubgone")
	pgtest.Exec(t, db, "DROP PUBLICATION pubgone", "INSERT INTO items VALUES (2, 2)")
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the pipeline kept retrying a slot whose publication is gone")
	}
	if !errors.Is(err, source.ErrGap) || !strings.Contains(err.Error(), "was dropped while slot") || !strings.Contains(err.Error(), "slot drop") {
		t.Fatalf("want one line saying the slot must be created again, got: %v", err)
	}
}
