package source

import (
	"context"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// The scenarios of the pylogicaldecoding proof of concept, in order.
func TestProofOfConcept(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "poc")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE data(id serial primary key, data text)")
	s := open(t, Config{DSN: dsn, Slot: "poc", Create: true, Transactions: true})

	// An insert, with its column values.
	pgtest.Exec(t, db, "INSERT INTO data(data) VALUES('1')")
	begin := next(t, s)
	if begin.Op != event.OpBegin || begin.XID == 0 {
		t.Fatalf("want begin, got %s", begin.AppendJSON(nil))
	}
	ins := next(t, s)
	if got := jsonOf(asMap(t, ins)["after"]); ins.Op != event.OpInsert || got != `{"data":"1","id":1}` {
		t.Fatalf("insert: %s", ins.AppendJSON(nil))
	}
	if ins.CommitLSN != begin.CommitLSN || ins.Seq != 1 || ins.Schema != "public" || ins.Table != "data" {
		t.Fatalf("insert positions: %s", ins.AppendJSON(nil))
	}
	commit := next(t, s)
	if commit.Op != event.OpCommit || commit.EndLSN <= commit.CommitLSN {
		t.Fatalf("want commit, got %s", commit.AppendJSON(nil))
	}

	// Update and delete in one transaction; a rolled-back one is invisible.
	pgtest.Exec(t, db,
		"BEGIN", "UPDATE data SET data='2' WHERE id=1", "DELETE FROM data WHERE id=1", "COMMIT",
		"BEGIN", "INSERT INTO data(data) VALUES('rolled back')", "ROLLBACK")
	next(t, s) // begin
	up := next(t, s)
	m := asMap(t, up)
	if up.Op != event.OpUpdate || jsonOf(m["after"]) != `{"data":"2","id":1}` || m["before"] != nil || jsonOf(m["key"]) != `{"id":1}` {
		t.Fatalf("update: %s", up.AppendJSON(nil))
	}
	del := next(t, s)
	m = asMap(t, del)
	if del.Op != event.OpDelete || jsonOf(m["before"]) != `{"id":1}` || m["after"] != nil || jsonOf(m["key"]) != `{"id":1}` || del.Seq != 2 {
		t.Fatalf("delete (key-only before under REPLICA IDENTITY DEFAULT): %s", del.AppendJSON(nil))
	}
	next(t, s) // commit
	nothingFor(t, s, 500*time.Millisecond)

	// REPLICA IDENTITY FULL: the whole old row on update and delete.
	pgtest.Exec(t, db, "ALTER TABLE data REPLICA IDENTITY FULL",
		"BEGIN", "INSERT INTO data(id, data) VALUES(2, '1')", "UPDATE data SET data='2' WHERE id=2", "DELETE FROM data WHERE id=2", "COMMIT")
	if major, err := pg.Major(); err != nil {
		t.Fatal(err)
	} else if major < 15 {
		// PostgreSQL 14's pgoutput sends the ALTER's transaction, empty;
		// 15 and later skip empty transactions.
		if b, c := next(t, s), next(t, s); b.Op != event.OpBegin || c.Op != event.OpCommit {
			t.Fatalf("want the empty transaction of the ALTER on PostgreSQL 14, got %s %s", b.AppendJSON(nil), c.AppendJSON(nil))
		}
	}
	next(t, s) // begin
	if e := next(t, s); e.Op != event.OpInsert {
		t.Fatalf("want insert, got %s", e.AppendJSON(nil))
	}
	up = next(t, s)
	if m := asMap(t, up); jsonOf(m["before"]) != `{"data":"1","id":2}` || jsonOf(m["after"]) != `{"data":"2","id":2}` {
		t.Fatalf("update under FULL: %s", up.AppendJSON(nil))
	}
	del = next(t, s)
	if m := asMap(t, del); jsonOf(m["before"]) != `{"data":"2","id":2}` {
		t.Fatalf("delete under FULL: %s", del.AppendJSON(nil))
	}
	next(t, s) // commit
}

// What is not acked comes again after a restart; what changed while the
// consumer was away arrives when it comes back; what is acked never returns.
func TestRedeliveryAfterRestart(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "redeliver")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE data(id serial primary key, data text)")
	s := open(t, Config{DSN: dsn, Slot: "redeliver", Create: true})

	pgtest.Exec(t, db, "INSERT INTO data(data) VALUES('a')")
	first := next(t, s)
	if err := s.Ack(first.CommitLSN); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO data(data) VALUES('b')", "INSERT INTO data(data) VALUES('c')")
	b, c := next(t, s), next(t, s)
	if err := s.Ack(b.CommitLSN); err != nil {
		t.Fatal(err)
	}
	// c is delivered but not acked when the consumer stops.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO data(data) VALUES('d')")

	s = open(t, Config{DSN: dsn, Slot: "redeliver"})
	again := next(t, s)
	if again.CommitLSN != c.CommitLSN || again.Seq != c.Seq || string(again.After[1].Raw) != "c" {
		t.Fatalf("want c again (commit %s), got %s", c.CommitLSN, again.AppendJSON(nil))
	}
	d := next(t, s)
	if string(d.After[1].Raw) != "d" {
		t.Fatalf("want d, got %s", d.AppendJSON(nil))
	}
	nothingFor(t, s, 300*time.Millisecond)

	// An ack of a position never sent is refused and changes nothing.
	if err := s.Ack(d.CommitLSN + 1000); err == nil {
		t.Fatal("ack of a position never delivered was accepted")
	}
}

// An idle slot still advances: with everything acked, keepalives move the
// confirmed position to the server's WAL end.
func TestIdleSlotAdvances(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "idle")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE data(id int primary key)")
	s := open(t, Config{DSN: dsn, Slot: "idle", Create: true, StatusInterval: 100 * time.Millisecond})
	pgtest.Exec(t, db, "INSERT INTO data VALUES (1)")
	e := next(t, s)
	if err := s.Ack(e.CommitLSN); err != nil {
		t.Fatal(err)
	}
	// Changes to another database produce WAL this slot does not decode.
	other := pgtest.Connect(t, pg.DSN(""))
	pgtest.Exec(t, other, "CREATE TABLE IF NOT EXISTS noise(x int)", "INSERT INTO noise SELECT generate_series(1, 1000)")
	var current string
	if err := other.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&current); err != nil {
		t.Fatal(err)
	}
	want, _ := event.ParseLSN(current)
	deadline := time.Now().Add(20 * time.Second)
	for s.Confirmed() < want {
		if time.Now().After(deadline) {
			t.Fatalf("confirmed %s never reached %s", s.Confirmed(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
