package source

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/snapshot"
)

// The event's key (DESIGN.md) is the replica identity index or the primary
// key whenever the table has one, whatever its REPLICA IDENTITY, and every
// column only when it has no key at all: on inserts, updates and deletes,
// and on the reads of an initial snapshot and of a backfill alike.
func TestKeyEveryIdentity(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "keys")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE dflt(id int PRIMARY KEY, v text)",
		"CREATE TABLE fullpk(id int PRIMARY KEY, v text)",
		"ALTER TABLE fullpk REPLICA IDENTITY FULL",
		"CREATE TABLE fullnopk(id int, v text)",
		"ALTER TABLE fullnopk REPLICA IDENTITY FULL",
		"CREATE TABLE idx(id int NOT NULL, v text)",
		"CREATE UNIQUE INDEX idx_id ON idx(id)",
		"ALTER TABLE idx REPLICA IDENTITY USING INDEX idx_id",
		// with both, the replica identity index: the old rows carry its columns
		"CREATE TABLE idxpk(n int PRIMARY KEY, id int NOT NULL, v text)",
		"CREATE UNIQUE INDEX idxpk_id ON idxpk(id)",
		"ALTER TABLE idxpk REPLICA IDENTITY USING INDEX idxpk_id",
		"CREATE TABLE nothingpk(id int PRIMARY KEY, v text)",
		"ALTER TABLE nothingpk REPLICA IDENTITY NOTHING",
		"CREATE TABLE nothingnopk(id int, v text)",
		"ALTER TABLE nothingnopk REPLICA IDENTITY NOTHING",
		"CREATE TABLE dfltnopk(id int, v text)")
	// Tables without replica identity take inserts only (Postgres refuses
	// updates and deletes of published tables that have none).
	full := []string{"dflt", "fullpk", "fullnopk", "idx", "idxpk"}
	insertOnly := []string{"nothingpk", "nothingnopk", "dfltnopk"}
	wantKey := map[string]func(id, v string) string{
		"dflt":        func(id, _ string) string { return `{"id":` + id + `}` },
		"fullpk":      func(id, _ string) string { return `{"id":` + id + `}` },
		"fullnopk":    func(id, v string) string { return `{"id":` + id + `,"v":"` + v + `"}` },
		"idx":         func(id, _ string) string { return `{"id":` + id + `}` },
		"idxpk":       func(id, _ string) string { return `{"id":` + id + `}` },
		"nothingpk":   func(id, _ string) string { return `{"id":` + id + `}` },
		"nothingnopk": func(id, v string) string { return `{"id":` + id + `,"v":"` + v + `"}` },
		"dfltnopk":    func(id, v string) string { return `{"id":` + id + `,"v":"` + v + `"}` },
	}
	var tables []string
	for _, table := range append(append([]string(nil), full...), insertOnly...) {
		tables = append(tables, "public."+table)
		if table == "idxpk" {
			pgtest.Exec(t, db, "INSERT INTO idxpk VALUES (-1, 100, 'r')")
		} else {
			pgtest.Exec(t, db, "INSERT INTO "+table+" VALUES (100, 'r')")
		}
	}
	progress := &snapshot.MemoryProgress{}
	s := open(t, Config{DSN: dsn, Slot: "keys", Create: true, InitialSnapshot: true, Tables: tables, BackfillProgress: progress})
	check := func(e *event.Event, id, v string) {
		t.Helper()
		if got, want := jsonOf(asMap(t, e)["key"]), wantKey[e.Table](id, v); got != want {
			t.Errorf("%s of %s: key %s, want %s: %s", e.Op, e.Table, got, want, e.AppendJSON(nil))
		}
	}
	for range tables {
		e := next(t, s)
		if e.Op != event.OpRead {
			t.Fatalf("want a read, got %s", e.AppendJSON(nil))
		}
		check(e, "100", "r")
	}

	for _, table := range full {
		cols := "(id, v)"
		if table == "idxpk" {
			cols = "(n, id, v)"
		}
		ins := "INSERT INTO " + table + " " + cols + " VALUES (" + map[bool]string{true: "1, ", false: ""}[table == "idxpk"] + "1, 'a')"
		pgtest.Exec(t, db, ins,
			"UPDATE "+table+" SET v = 'b' WHERE id = 1",
			"UPDATE "+table+" SET id = 2, v = 'c' WHERE id = 1",
			"DELETE FROM "+table+" WHERE id = 2")
		for _, w := range []struct {
			op    event.Op
			id, v string
		}{{event.OpInsert, "1", "a"}, {event.OpUpdate, "1", "b"}, {event.OpUpdate, "2", "c"}, {event.OpDelete, "2", "c"}} {
			e := next(t, s)
			if e.Op != w.op || e.Table != table {
				t.Fatalf("want %s of %s, got %s", w.op, table, e.AppendJSON(nil))
			}
			check(e, w.id, w.v)
		}
	}
	for _, table := range insertOnly {
		pgtest.Exec(t, db, "INSERT INTO "+table+" VALUES (1, 'a')")
		e := next(t, s)
		if e.Op != event.OpInsert || e.Table != table {
			t.Fatalf("want insert of %s, got %s", table, e.AppendJSON(nil))
		}
		check(e, "1", "a")
	}

	// A key added later counts from then on.
	pgtest.Exec(t, db, "ALTER TABLE fullnopk ADD PRIMARY KEY (id)", "INSERT INTO fullnopk VALUES (3, 'x')", "UPDATE fullnopk SET v = 'y' WHERE id = 3")
	wantKey["fullnopk"] = wantKey["fullpk"]
	for _, op := range []event.Op{event.OpInsert, event.OpUpdate} {
		e := next(t, s)
		if e.Op != op {
			t.Fatalf("want %s, got %s", op, e.AppendJSON(nil))
		}
		check(e, "3", map[event.Op]string{event.OpInsert: "x", event.OpUpdate: "y"}[op])
	}
	wantKey["fullnopk"] = func(id, v string) string { return `{"id":` + id + `}` }

	s.Backfill(tables...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := func() bool {
		for _, table := range tables {
			if p, _, _ := progress.Progress("keys", table); !p.Done {
				return false
			}
		}
		return true
	}
	reads := 0
	// Acks complete the chunks, so the last rows may still be on their way
	// when progress says done: read on until the stream falls quiet.
	for quiet := false; !quiet; {
		wait, cancelWait := context.WithTimeout(ctx, 500*time.Millisecond)
		e, err := s.Next(wait)
		cancelWait()
		if errors.Is(err, context.DeadlineExceeded) && done() {
			quiet = true
			continue
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Ack(e.CommitLSN); err != nil {
			t.Fatal(err)
		}
		if e.Op != event.OpRead {
			continue
		}
		reads++
		m := asMap(t, e)["after"].(map[string]any)
		check(e, jsonOf(m["id"]), strings.Trim(jsonOf(m["v"]), `"`))
	}
	if reads != 12 {
		t.Errorf("backfill gave %d reads, want 12", reads)
	}
}
