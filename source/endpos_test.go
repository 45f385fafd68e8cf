package source

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// With EndLSN the stream delivers every transaction committed up to it, and
// nothing after, then ends with io.EOF.
func TestEndLSN(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "endpos")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE t(id int primary key)")
	s := open(t, Config{DSN: dsn, Slot: "endpos", Create: true})
	s.Close()
	for i := 0; i < 50; i++ {
		_, err := db.Exec(context.Background(), "INSERT INTO t SELECT g FROM generate_series($1::int * 100 + 1, $1::int * 100 + 100) g", i)
		if err != nil {
			t.Fatal(err)
		}
	}
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, db, "INSERT INTO t VALUES (-1)") // after the end position
	endLSN, _ := event.ParseLSN(end)
	s = open(t, Config{DSN: dsn, Slot: "endpos", EndLSN: endLSN})
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		e, err := s.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if e.CommitLSN > endLSN {
			t.Fatalf("event after the end position: %s", e.AppendJSON(nil))
		}
		n++
	}
	if n != 5000 {
		t.Fatalf("got %d events up to %s, want 5000", n, end)
	}
}
