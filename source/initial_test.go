package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// The initial snapshot under concurrent writers: its read events and the
// stream's changes, applied in order to a map, give SELECT * exactly.
func TestInitialSnapshotJoinsStream(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "initial")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE items(id int PRIMARY KEY, val int)",
		"INSERT INTO items SELECT g, g FROM generate_series(1, 20000) g",
		"CREATE TABLE other(k text PRIMARY KEY)", "INSERT INTO other VALUES ('a'), ('b')")

	stop := startWriters(t, dsn, 3, 1, func(conn *pgx.Conn, r *rand.Rand) {
		id := 1 + r.IntN(25000)
		switch r.IntN(3) {
		case 0:
			_, _ = conn.Exec(context.Background(), "INSERT INTO items VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET val = $2", id, r.IntN(1000))
		case 1:
			_, _ = conn.Exec(context.Background(), "UPDATE items SET val = val + 1 WHERE id = $1", id)
		default:
			_, _ = conn.Exec(context.Background(), "DELETE FROM items WHERE id = $1", id)
		}
	})
	time.Sleep(200 * time.Millisecond) // writers are busy when the slot is created

	s := open(t, Config{DSN: dsn, Slot: "initial", Create: true, InitialSnapshot: true, Transactions: true, Tables: []string{"public.items", "public.other"}})
	got := map[string]string{}
	reads, changes := 0, 0
	apply := func(e *event.Event) {
		row := e.After
		if row == nil {
			row = e.Before
		}
		if e.Table != "items" {
			return
		}
		id := string(row[0].Raw)
		switch e.Op {
		case event.OpRead, event.OpInsert, event.OpUpdate:
			got[id] = string(e.After[1].Raw)
		case event.OpDelete:
			delete(got, id)
		}
	}
	deadline, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	snapshotDone := false
	var consistent event.LSN
	for !snapshotDone {
		e, err := s.Next(deadline)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case e.Op == event.OpRead:
			reads++
			if changes > 0 {
				t.Fatalf("read event after a change: %s", e.AppendJSON(nil))
			}
			consistent = e.CommitLSN
		case e.Op == event.OpCommit:
			snapshotDone = e.CommitLSN == consistent && e.XID == 0
			if snapshotDone {
				// Acked: the snapshot is done, never to be read again.
				if err := s.Ack(e.CommitLSN); err != nil {
					t.Fatal(err)
				}
			}
		case e.Op.IsRowChange():
			changes++
		}
		apply(e)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	endLSN, _ := event.ParseLSN(end)
	s.Close()
	s = open(t, Config{DSN: dsn, Slot: "initial", EndLSN: endLSN})
	for {
		e, err := s.Next(deadline)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.Op == event.OpRead {
			t.Fatalf("a second snapshot from a slot whose snapshot was acked: %s", e.AppendJSON(nil))
		}
		changes++
		apply(e)
	}
	want := map[string]string{}
	rows, _ := db.Query(context.Background(), "SELECT id, val FROM items")
	for rows.Next() {
		var id, val int
		_ = rows.Scan(&id, &val)
		want[fmt.Sprint(id)] = fmt.Sprint(val)
	}
	if reads < 15000 || changes == 0 {
		t.Fatalf("too little happened: %d reads, %d changes", reads, changes)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot + stream: %d rows, table: %d rows", len(got), len(want))
	}
}
