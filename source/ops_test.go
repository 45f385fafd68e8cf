package source

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// Truncate, logical messages, schema events, and replica identities INDEX
// and NOTHING, on both protocol versions.
func TestOtherOps(t *testing.T) {
	for _, proto := range []int{1, 2} {
		t.Run(map[int]string{1: "v1", 2: "v2"}[proto], func(t *testing.T) {
			name := map[int]string{1: "ops_v1", 2: "ops_v2"}[proto]
			dsn := pgtest.CreateDB(t, pg, name)
			db := pgtest.Connect(t, dsn)
			pgtest.Exec(t, db,
				"CREATE TABLE a(id int primary key, v text)",
				"CREATE TABLE b(id int not null, code text not null, v text)",
				"CREATE UNIQUE INDEX b_code ON b(code)",
				"ALTER TABLE b REPLICA IDENTITY USING INDEX b_code",
				"CREATE TABLE c(v text)",
				"ALTER TABLE c REPLICA IDENTITY NOTHING")
			s := open(t, Config{DSN: dsn, Slot: name, Create: true, Schemas: true, ProtocolVersion: proto})

			pgtest.Exec(t, db,
				"INSERT INTO a VALUES (1, 'x')",
				"INSERT INTO b VALUES (1, 'k1', 'x')",
				"UPDATE b SET code = 'k2', v = 'y' WHERE code = 'k1'",
				"INSERT INTO c VALUES ('only inserts')",
				"SELECT pg_logical_emit_message(true, 'app', 'in a transaction')",
				"SELECT pg_logical_emit_message(false, 'app', 'right away')",
				"TRUNCATE a, b")

			want := []struct {
				op    event.Op
				table string
				check func(m map[string]any) bool
			}{
				{event.OpSchema, "a", func(m map[string]any) bool {
					return jsonOf(m["columns"]) == `[{"key":true,"name":"id","type":"integer"},{"key":false,"name":"v","type":"text"}]`
				}},
				{event.OpInsert, "a", nil},
				{event.OpSchema, "b", nil},
				{event.OpInsert, "b", func(m map[string]any) bool { return jsonOf(m["key"]) == `{"code":"k1"}` }},
				{event.OpUpdate, "b", func(m map[string]any) bool {
					return jsonOf(m["before"]) == `{"code":"k1"}` && jsonOf(m["key"]) == `{"code":"k2"}`
				}},
				{event.OpSchema, "c", nil},
				{event.OpInsert, "c", func(m map[string]any) bool { return jsonOf(m["key"]) == `{"v":"only inserts"}` }},
				{event.OpMessage, "", func(m map[string]any) bool {
					return m["prefix"] == "app" && m["content"] == "in a transaction" && m["transactional"] == true
				}},
				{event.OpMessage, "", func(m map[string]any) bool { return m["content"] == "right away" && m["transactional"] == false }},
				{event.OpTruncate, "a", nil},
				{event.OpTruncate, "b", nil},
			}
			for i, w := range want {
				e := next(t, s)
				m := asMap(t, e)
				if e.Op != w.op || e.Table != w.table || (w.check != nil && !w.check(m)) {
					t.Fatalf("event %d: want %s on %q, got %s", i, w.op, w.table, e.AppendJSON(nil))
				}
			}
			// A repeated Relation message with the same columns is no news.
			pgtest.Exec(t, db, "INSERT INTO a VALUES (2, 'x')")
			if e := next(t, s); e.Op != event.OpInsert {
				t.Fatalf("want insert without a new schema event, got %s", e.AppendJSON(nil))
			}
			pgtest.Exec(t, db, "ALTER TABLE a ADD COLUMN extra int", "INSERT INTO a VALUES (3, 'x', 5)")
			if e := next(t, s); e.Op != event.OpSchema || len(e.Rel.Columns) != 3 {
				t.Fatalf("want schema with 3 columns after ALTER, got %s", e.AppendJSON(nil))
			}
			if e := next(t, s); e.Op != event.OpInsert || jsonOf(asMap(t, e)["after"]) != `{"extra":5,"id":3,"v":"x"}` {
				t.Fatalf("insert after ALTER: %s", e.AppendJSON(nil))
			}
		})
	}
}

// A transaction far larger than logical_decoding_work_mem is streamed in
// progress (protocol v2), spooled to disk, and delivered after its commit,
// in order, with the heap staying small; an aborted one never shows.
func TestLargeTransactions(t *testing.T) {
	const rows = 200_000
	dsn := pgtest.CreateDB(t, pg, "large")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE big(id int primary key, pad text)")
	s := open(t, Config{DSN: dsn, Slot: "large", Create: true})
	ctx := context.Background()

	// Interleave a small transaction that commits while the large one is in progress.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO big SELECT g, repeat('p', 200) FROM generate_series(1, $1) g", rows); err != nil {
		t.Fatal(err)
	}
	small := pgtest.Connect(t, dsn)
	pgtest.Exec(t, small, "INSERT INTO big VALUES (-1, 'small')")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// An aborted large transaction, then a marker.
	pgtest.Exec(t, db, "BEGIN", "INSERT INTO big SELECT g, repeat('q', 200) FROM generate_series(1000001, 1000000 + 100000) g", "ROLLBACK",
		"INSERT INTO big VALUES (-2, 'after the abort')")

	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}
	}()
	defer close(stop)

	if e := next(t, s); string(e.After[1].Raw) != "small" {
		t.Fatalf("want the small transaction first (it committed first), got %s", e.AppendJSON(nil))
	}
	var commit event.LSN
	for i := 1; i <= rows; i++ {
		e := next(t, s)
		if e.Op != event.OpInsert || string(e.After[0].Raw) != itoa(i) || e.Seq != i {
			t.Fatalf("row %d: got %s", i, e.AppendJSON(nil))
		}
		if commit == 0 {
			commit = e.CommitLSN
		} else if e.CommitLSN != commit {
			t.Fatalf("row %d: commit_lsn %s, want %s", i, e.CommitLSN, commit)
		}
		if i%1000 == 0 {
			time.Sleep(time.Millisecond) // a consumer slower than the server
		}
	}
	if e := next(t, s); string(e.After[1].Raw) != "after the abort" {
		t.Fatalf("want the marker after the aborted transaction, got %s", e.AppendJSON(nil))
	}
	st := s.Stats()
	if st.StreamedTxns < 1 || st.SpooledBytes < rows*200 {
		t.Fatalf("the large transaction was not streamed through the spool: %+v", st)
	}
	// 200k rows of 200 bytes are ~50 MB of WAL data and far more as events;
	// a bounded pipeline keeps the heap well below that.
	if p := peak.Load(); p > 48<<20 {
		t.Fatalf("heap peaked at %d MB while streaming", p>>20)
	}
	t.Logf("heap peak %d MB, spooled %d MB", peak.Load()>>20, st.SpooledBytes>>20)
}

func itoa(i int) string {
	return strconv.Itoa(i)
}
