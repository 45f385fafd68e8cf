package stream

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

func jsonEqual(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %s: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	var g any
	_ = json.Unmarshal(gb, &g)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%s:\n got %s\nwant %s", what, gb, want)
	}
}

// TestPgDeltaStreamFlow runs pgdeltastream's README end to end: init, the
// snapshot in pages, the stream, acks, and reconnects that resume after the
// last ack (and repeat what was not acked).
func TestPgDeltaStreamFlow(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "flow")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE test_table (id serial PRIMARY KEY, name text)`)
	for i := 1; i <= 12; i++ {
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO test_table (name) VALUES ('val%d')`, i))
	}
	ts := startServer(t, dsn, Options{})
	slot := ts.init(t)

	// After the slot: in the stream, not in the snapshot.
	pgtest.Exec(t, db, `INSERT INTO test_table (name) VALUES ('newval1')`)

	var all []map[string]any
	for off := 0; ; off += 5 {
		page := ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"test_table","offset":%d,"limit":5,"order_by":{"column":"id","order":"ASC"}}`, slot, off))
		all = append(all, page...)
		if len(page) < 5 {
			break
		}
	}
	if len(all) != 12 {
		t.Fatalf("snapshot has %d rows, want the 12 before init: %v", len(all), all)
	}
	for i, r := range all {
		jsonEqual(t, fmt.Sprintf("row %d", i), r, fmt.Sprintf(`{"id":%d,"name":"val%d"}`, i+1, i+1))
	}
	// Keyset pages, descending too.
	page := ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"test_table","limit":3,"after":{"id":5}}`, slot))
	jsonEqual(t, "page after id 5", page, `[{"id":6,"name":"val6"},{"id":7,"name":"val7"},{"id":8,"name":"val8"}]`)
	page = ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"public.test_table","limit":2,"order_by":{"column":"id","order":"desc"},"after":{"id":3}}`, slot))
	jsonEqual(t, "page before id 3", page, `[{"id":2,"name":"val2"},{"id":1,"name":"val1"}]`)

	c := ts.dial(t, "slotName="+slot)
	f := c.frame()
	if f.NextLSN == "" {
		t.Fatalf("frame without nextlsn: %s", f.raw)
	}
	jsonEqual(t, "first frame", f.Change, `[{"kind":"insert","schema":"public","table":"test_table",
		"columnnames":["id","name"],"columntypes":["integer","text"],"columnvalues":[13,"newval1"]}]`)
	var keys map[string]any
	_ = json.Unmarshal(f.raw, &keys)
	if len(keys) != 2 {
		t.Fatalf("frame %s: want exactly nextlsn and change", f.raw)
	}
	// Once streaming, the snapshot is released.
	ts.expectError(t, "/v1/snapshot/data", fmt.Sprintf(`{"slotName":%q,"table":"test_table"}`, slot), 409, "no longer held", "/v1/init")

	pgtest.Exec(t, db, `BEGIN; UPDATE test_table SET name = 'changed' WHERE id = 1; DELETE FROM test_table WHERE id = 2; COMMIT`)
	f2 := c.frame()
	jsonEqual(t, "second frame", f2.Change, `[
		{"kind":"update","schema":"public","table":"test_table","columnnames":["id","name"],"columntypes":["integer","text"],
		 "columnvalues":[1,"changed"],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}},
		{"kind":"delete","schema":"public","table":"test_table","oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[2]}}]`)
	c.ack(f.NextLSN)
	c.close()

	// Resumes after the ack: the second transaction again, not the first.
	c = ts.dial(t, "slotName="+slot)
	again := c.frame()
	if string(again.raw) != string(f2.raw) {
		t.Fatalf("after the ack of %s, got\n%s\nwant\n%s", f.NextLSN, again.raw, f2.raw)
	}
	// Dropped before acking: the same again.
	c.conn.CloseNow()
	c = ts.dial(t, "slotName="+slot)
	if again = c.frame(); string(again.raw) != string(f2.raw) {
		t.Fatalf("after a drop without ack, got\n%s\nwant\n%s", again.raw, f2.raw)
	}
	c.ack(f2.NextLSN)
	c.close()
	c = ts.dial(t, "slotName="+slot)
	pgtest.Exec(t, db, `INSERT INTO test_table (name) VALUES ('last')`)
	f3 := c.frame()
	jsonEqual(t, "frame after both acks", f3.Change[0]["columnvalues"], `[14,"last"]`)
	if lsn(t, f3.NextLSN) <= lsn(t, f2.NextLSN) {
		t.Fatalf("nextlsn %s not after %s", f3.NextLSN, f2.NextLSN)
	}
	c.ack(f3.NextLSN)
	c.close()
	// The slot is confirmed at the client's ack (or beyond, once an idle
	// slot's keepalives move it over WAL that holds no changes for it).
	var confirmed string
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := db.QueryRow(t.Context(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if lsn(t, confirmed) >= lsn(t, f3.NextLSN) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lsn(t, confirmed) < lsn(t, f3.NextLSN) {
		t.Fatalf("slot confirmed at %s, want the last ack %s", confirmed, f3.NextLSN)
	}
}

func lsn(t *testing.T, s string) event.LSN {
	t.Helper()
	l, err := event.ParseLSN(s)
	if err != nil {
		t.Fatalf("position %q: %v", s, err)
	}
	return l
}

// TestResumeAfterRestart: a new server serves the slots an earlier one
// made (by their prefix), and their clients resume after their last ack.
func TestResumeAfterRestart(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "restart")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	first := startServer(t, dsn, Options{})
	slot := first.init(t)
	c := first.dial(t, "slotName="+slot)
	pgtest.Exec(t, db, `INSERT INTO t VALUES (1)`, `INSERT INTO t VALUES (2)`)
	f1, f2 := c.frame(), c.frame()
	c.ack(f1.NextLSN)
	waitConfirmed(t, db, slot, lsn(t, f1.NextLSN))
	first.Close()

	second := startServer(t, dsn, Options{})
	second.expectError(t, "/v1/snapshot/data", fmt.Sprintf(`{"slotName":%q,"table":"t"}`, slot), 409, "no longer held")
	c = second.dial(t, "slotName="+slot)
	if again := c.frame(); string(again.raw) != string(f2.raw) {
		t.Fatalf("after the restart: %s, want %s", again.raw, f2.raw)
	}
}
