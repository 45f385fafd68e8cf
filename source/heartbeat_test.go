package source

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// heartbeatsInWAL counts the heartbeat messages a test_decoding slot created
// before them has seen.
func heartbeatsInWAL(t *testing.T, db *pgx.Conn, probe string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_logical_slot_peek_changes($1, NULL, NULL) WHERE data LIKE '%prefix: '||$2::text||',%'", probe, HeartbeatPrefix).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func currentWAL(t *testing.T, db *pgx.Conn) event.LSN {
	t.Helper()
	var s string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := event.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// A heartbeat is written only when the slot would not advance otherwise:
// nothing in flight, the confirmed position unchanged since the last look,
// and the server's WAL past it. Each case is checked against the messages
// that really reach the WAL.
func TestHeartbeatOnlyWhenTheSlotStalls(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "beat")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "SELECT pg_create_logical_replication_slot('beat_probe', 'test_decoding')")
	t.Cleanup(func() { pgtest.Exec(t, db, "SELECT pg_drop_replication_slot('beat_probe')") })
	pgtest.Exec(t, db, "CREATE TABLE noise(x int)", "INSERT INTO noise VALUES (1)")

	ctx := context.Background()
	cfg := &Config{DSN: dsn, Slot: "beat"}
	start := currentWAL(t, db) - 1 // the WAL is ahead of this slot
	tr := newTracker(start)
	h := &heartbeat{cfg: cfg, tracker: tr, last: start}
	want := 0
	check := func(what string, wrote, wantWrote bool) {
		t.Helper()
		if wantWrote {
			want++
		}
		if wrote != wantWrote {
			t.Errorf("%s: wrote %v, want %v", what, wrote, wantWrote)
		}
		// A non-transactional message is not flushed by its own
		// statement: the WAL writer makes it visible shortly after.
		deadline := time.Now().Add(10 * time.Second)
		for got := heartbeatsInWAL(t, db, "beat_probe"); got != want; got = heartbeatsInWAL(t, db, "beat_probe") {
			if got > want || time.Now().After(deadline) {
				t.Fatalf("%s: %d heartbeats in the WAL, want %d", what, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	check("stalled slot, WAL ahead", h.tick(ctx), true)
	check("still stalled", h.tick(ctx), true)

	// A transaction in flight to the consumer: it will move the slot.
	tr.begin(start + 10)
	check("a transaction being received", h.tick(ctx), false)
	tr.commit(start+10, start+20)
	check("a transaction received, not acked", h.tick(ctx), false)
	if err := tr.ack(start + 10); err != nil {
		t.Fatal(err)
	}
	// The ack moved the confirmed position: no heartbeat this time.
	check("the slot moved since the last look", h.tick(ctx), false)

	// Confirmed at the server's end: nothing is held back.
	tr.serverEnd(currentWAL(t, db) + 1<<20)
	h.tick(ctx) // the move
	check("nothing held back", h.tick(ctx), false)
	if h.written.Load() != 2 {
		t.Errorf("written = %d, want 2", h.written.Load())
	}
}

// A stream never returns heartbeats, its own or another pgfeed's, and they
// do not hold back the confirmed position: an idle stream whose server
// wrote one confirms past it.
func TestHeartbeatsAreSwallowed(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "swallow")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE data(id int primary key)")
	s := open(t, Config{DSN: dsn, Slot: "swallow", Create: true, StatusInterval: 100 * time.Millisecond, Heartbeat: 50 * time.Millisecond})
	pgtest.Exec(t, db,
		"SELECT pg_logical_emit_message(false, 'pgfeed.heartbeat', '')",
		"INSERT INTO data VALUES (1)",
		"SELECT pg_logical_emit_message(false, 'pgfeed.heartbeat', '')")
	beat := currentWAL(t, db)
	e := next(t, s)
	if e.Op != event.OpInsert {
		t.Fatalf("first event %s, want the insert", e.AppendJSON(nil))
	}
	if err := s.Ack(e.CommitLSN); err != nil {
		t.Fatal(err)
	}
	nothingFor(t, s, 300*time.Millisecond)
	deadline := time.Now().Add(20 * time.Second)
	for s.Confirmed() < beat {
		if time.Now().After(deadline) {
			t.Fatalf("confirmed %s never passed the heartbeat at %s", s.Confirmed(), beat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
