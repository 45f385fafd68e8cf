package source

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// A large transaction, streamed in progress (protocol v2), with savepoints
// rolled back and released, nested both ways: exactly the rows of the
// committed (sub)transactions arrive. Every block is far larger than
// logical_decoding_work_mem (64kB in these tests), so the server streams
// each subtransaction's changes before it knows whether it aborts.
func TestStreamedSavepoints(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "savepoints")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE sp(id int primary key, v text, pad text)",
		// first touched in a subtransaction that aborts: its Relation
		// message is streamed under that subtransaction's xid.
		"CREATE TABLE late(id int primary key, v text)")
	s := open(t, Config{DSN: dsn, Slot: "savepoints", Create: true, ProtocolVersion: 2, Schemas: true})

	block := func(from int, v string) string {
		return fmt.Sprintf("INSERT INTO sp SELECT g, '%s', repeat('p', 200) FROM generate_series(%d, %d) g", v, from, from+999)
	}
	pgtest.Exec(t, db,
		"BEGIN",
		block(0, "top"),
		// rolled back
		"SAVEPOINT a", block(10000, "a"), "ROLLBACK TO SAVEPOINT a",
		// released
		"SAVEPOINT b", block(20000, "b"), "RELEASE SAVEPOINT b",
		// a released child of a rolled-back savepoint is rolled back with it
		"SAVEPOINT c", block(30000, "c"), "SAVEPOINT d", block(40000, "d"), "RELEASE SAVEPOINT d", "ROLLBACK TO SAVEPOINT c",
		// a rolled-back child of a released savepoint: only the child goes
		"SAVEPOINT e", block(50000, "e"), "SAVEPOINT f", block(60000, "f"), "ROLLBACK TO SAVEPOINT f", "RELEASE SAVEPOINT e",
		// updates and deletes of committed rows, rolled back
		"SAVEPOINT g", "UPDATE sp SET v = 'g' WHERE id < 500", "DELETE FROM sp WHERE id >= 500 AND id < 1000", "ROLLBACK TO SAVEPOINT g",
		// released twice over
		"SAVEPOINT h", "SAVEPOINT i", block(70000, "i"), "RELEASE SAVEPOINT i", "UPDATE sp SET v = 'h' WHERE id >= 900 AND id < 1000", "RELEASE SAVEPOINT h",
		// a table first seen in an aborted subtransaction, then kept
		"SAVEPOINT j", "INSERT INTO late VALUES (1, 'aborted')", block(80000, "j"), "ROLLBACK TO SAVEPOINT j",
		"INSERT INTO late VALUES (2, 'kept')",
		// a schema change rolled back: no event ever shows its column
		"SAVEPOINT m", "ALTER TABLE late ADD COLUMN x int", "INSERT INTO late VALUES (3, 'aborted', 1)", block(120000, "m"), "ROLLBACK TO SAVEPOINT m",
		"INSERT INTO late VALUES (4, 'kept after the schema change')",
		// rolled back to the same savepoint twice; the second time's rows stay
		"SAVEPOINT k", block(90000, "k1"), "ROLLBACK TO SAVEPOINT k", block(100000, "k2"), "ROLLBACK TO SAVEPOINT k", block(110000, "k3"), "RELEASE SAVEPOINT k",
		"COMMIT",
		"INSERT INTO sp VALUES (-1, 'marker')")

	got := map[string]map[string]any{}
	for {
		e := next(t, s)
		if e.Op == event.OpSchema && e.Rel.ColumnIndex("x") >= 0 {
			t.Fatalf("schema event of a rolled-back ALTER TABLE: %s", e.AppendJSON(nil))
		}
		applyEvent(t, got, e)
		if e.Table == "sp" && e.Op == event.OpInsert && string(e.After[0].Raw) == "-1" {
			break
		}
	}
	want := tableState(t, dsn, "sp", "late")
	if !reflect.DeepEqual(got, want) {
		diffStates(t, got, want)
		t.Fatalf("state invariant broken: %d rows from the stream, %d in the tables", len(got), len(want))
	}
	if st := s.Stats(); st.StreamedTxns < 1 {
		t.Fatalf("the transaction was not streamed in progress: %+v", st)
	}
}

// applyEvent applies one change to state, keyed by "table/key", the way a
// consumer keeps a copy of the tables.
func applyEvent(t *testing.T, state map[string]map[string]any, e *event.Event) {
	t.Helper()
	if !e.Op.IsRowChange() {
		return
	}
	m := asMap(t, e)
	key := e.Table + "/" + jsonOf(m["key"])
	switch e.Op {
	case event.OpInsert, event.OpUpdate, event.OpRead:
		if before, ok := m["before"].(map[string]any); ok {
			delete(state, e.Table+"/"+jsonOf(map[string]any{"id": before["id"]}))
		}
		state[key] = m["after"].(map[string]any)
	case event.OpDelete:
		delete(state, key)
	}
}

// tableState reads tables (each with an id primary key) into the form
// applyEvent builds.
func tableState(t *testing.T, dsn string, tables ...string) map[string]map[string]any {
	t.Helper()
	db := pgtest.Connect(t, dsn)
	state := map[string]map[string]any{}
	for _, table := range tables {
		rows, err := db.Query(context.Background(), fmt.Sprintf("SELECT to_jsonb(t)::text FROM %s t", table))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var text string
			if err := rows.Scan(&text); err != nil {
				t.Fatal(err)
			}
			var row map[string]any
			if err := json.Unmarshal([]byte(text), &row); err != nil {
				t.Fatal(err)
			}
			state[table+"/"+jsonOf(map[string]any{"id": row["id"]})] = row
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return state
}

// diffStates names the rows on which stream and tables disagree, a few at most.
func diffStates(t *testing.T, got, want map[string]map[string]any) {
	t.Helper()
	n := 0
	for k, w := range want {
		if g := got[k]; !reflect.DeepEqual(g, w) && n < 10 {
			n++
			t.Errorf("%s: stream %.100s, table %.100s", k, jsonOf(g), jsonOf(w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok && n < 20 {
			n++
			t.Errorf("%s: in the stream %.100s, not in the table", k, jsonOf(g))
		}
	}
}
