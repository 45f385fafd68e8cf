package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// ReadTable returns PostgreSQL's text forms under the session settings the
// replication stream uses, with escapes and NULLs decoded.
func TestReadTableTextForms(t *testing.T) {
	ctx := testCtx(t)
	_, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE t (id int PRIMARY KEY, ts timestamptz, d date, f float8, b bytea, i interval, s text, j jsonb, n numeric)`,
		`SET TimeZone = 'America/New_York'`, // the writer's zone must not matter
		`INSERT INTO t VALUES (1, '2026-11-23 04:56:29.368123+02', '2026-11-23', 0.1, '\x00ff', '1 day 2 hours',
			E'tab\there\nline\\back', '{"a": [1, 2]}', 12.50)`,
		`INSERT INTO t (id) VALUES (2)`,
		`RESET TimeZone`,
	)
	tab, err := Describe(ctx, conn, nil, "t")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var seqs []int
	n, err := ReadTable(ctx, conn, tab, ReadOptions{Position: 0x16B3748}, func(e *event.Event) error {
		if e.Op != event.OpRead || e.Schema != "public" || e.Table != "t" || e.LSN != 0x16B3748 || e.CommitLSN != 0x16B3748 {
			t.Errorf("event header %+v", e)
		}
		seqs = append(seqs, e.Seq)
		got = append(got, string(e.AppendJSON(nil)))
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("read %d rows: %v", n, err)
	}
	sort.Strings(got)
	want := []string{
		`{"op":"read","schema":"public","table":"t","lsn":"0/16B3748","commit_lsn":"0/16B3748","xid":0,"seq":1,"key":{"id":1},"before":null,` +
			`"after":{"id":1,"ts":"2026-11-23T02:56:29.368123Z","d":"2026-11-23","f":0.1,"b":"AP8=","i":"1 day 02:00:00",` +
			`"s":"tab\there\nline\\back","j":{"a": [1, 2]},"n":"12.50"}}`,
		`{"op":"read","schema":"public","table":"t","lsn":"0/16B3748","commit_lsn":"0/16B3748","xid":0,"seq":2,"key":{"id":2},"before":null,` +
			`"after":{"id":2,"ts":null,"d":null,"f":null,"b":null,"i":null,"s":null,"j":null,"n":null}}`,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if fmt.Sprint(seqs) != "[1 2]" {
		t.Errorf("seq %v", seqs)
	}
}

// Rows inserted after the snapshot was exported must not appear, while
// parallel workers share that snapshot.
func TestReadSnapshot(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE a (id int PRIMARY KEY, v text)`,
		`CREATE TABLE b (k text PRIMARY KEY)`,
		`CREATE TABLE c (x int)`,
		`INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 500) g`,
		`INSERT INTO b SELECT 'k' || g FROM generate_series(1, 300) g`,
		`INSERT INTO c SELECT g FROM generate_series(1, 200) g`,
	)
	exporter := pgtest.Connect(t, dsn)
	pgtest.Exec(t, exporter, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	var name string
	if err := exporter.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn,
		`INSERT INTO a SELECT g, 'late' FROM generate_series(501, 600) g`,
		`DELETE FROM b WHERE k = 'k1'`,
		`UPDATE c SET x = -x`,
	)

	var mu sync.Mutex
	counts := map[string]int{}
	late := 0
	stats, err := ReadSnapshot(ctx, dsn, name, []string{"a", "public.b", "c", "a"}, SnapshotOptions{Workers: 2, Position: 42}, func(e *event.Event) error {
		mu.Lock()
		defer mu.Unlock()
		counts[e.Table]++
		if e.LSN != 42 {
			t.Errorf("LSN %v", e.LSN)
		}
		if v := e.After[len(e.After)-1]; string(v.Raw) == "late" || (e.Table == "c" && strings.HasPrefix(string(v.Raw), "-")) {
			late++
		}
		if e.Table == "b" && string(e.After[0].Raw) == "k1" {
			counts["k1"]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if counts["a"] != 500 || counts["b"] != 300 || counts["c"] != 200 || counts["k1"] != 1 || late != 0 {
		t.Errorf("counts %v, rows written after the export: %d", counts, late)
	}
	if stats.Rows != 1000 || stats.Tables != 3 {
		t.Errorf("stats %+v", stats)
	}

	// Once the exporting transaction ends the snapshot is gone, and the
	// error says what to check.
	pgtest.Exec(t, exporter, "COMMIT")
	_, err = ReadSnapshot(ctx, dsn, name, []string{"a"}, SnapshotOptions{}, func(*event.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "exporting transaction still open") {
		t.Errorf("error %v", err)
	}
	_, err = ReadSnapshot(ctx, dsn, "x'; DROP TABLE a; --", []string{"a"}, SnapshotOptions{}, func(*event.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "is not a snapshot name") {
		t.Errorf("error %v", err)
	}
	_, err = ReadSnapshot(ctx, dsn, name, []string{"a", "nope"}, SnapshotOptions{}, func(*event.Event) error { return nil })
	if err == nil {
		t.Error("no error for a missing table")
	}
	// An error from the callback stops every worker and is returned.
	pgtest.Exec(t, exporter, "BEGIN ISOLATION LEVEL REPEATABLE READ")
	if err := exporter.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	stop := fmt.Errorf("enough")
	_, err = ReadSnapshot(ctx, dsn, name, []string{"a", "b", "c"}, SnapshotOptions{Workers: 3}, func(*event.Event) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("error %v", err)
	}
	pgtest.Exec(t, exporter, "COMMIT")
}

// The initial snapshot of issue 3: a slot created with an exported snapshot
// while writers run; the snapshot's rows, then the slot's stream, applied
// to a map, give exactly the tables.
func TestInitialSnapshotUnderWriters(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL)`,
		`INSERT INTO acct SELECT g, 100 FROM generate_series(1, 2000) g`,
		`CREATE TABLE note (k text PRIMARY KEY, body text)`,
		`INSERT INTO note SELECT 'n' || g, 'first' FROM generate_series(1, 500) g`,
		`CREATE PUBLICATION p FOR ALL TABLES`,
	)
	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	defer func() {
		stopWriters()
		writers.Wait()
	}()
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			wc, err := Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer wc.Close(context.Background())
			for i := 0; wctx.Err() == nil; i++ {
				id := (i*7919+w*31)%2600 + 1
				var err error
				switch i % 4 {
				case 0:
					_, err = wc.Exec(wctx, `INSERT INTO acct VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET balance = acct.balance + 1`, id)
				case 1:
					_, err = wc.Exec(wctx, `UPDATE acct SET balance = balance - 1 WHERE id = $1`, id)
				case 2:
					_, err = wc.Exec(wctx, `DELETE FROM acct WHERE id = $1`, id)
				default:
					_, err = wc.Exec(wctx, `INSERT INTO note VALUES ('n' || $1::int, 'w') ON CONFLICT (k) DO UPDATE SET body = note.body || '+'`, id%700)
				}
				if err != nil && wctx.Err() == nil && !strings.Contains(err.Error(), "deadlock") {
					t.Errorf("writer: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)

	// CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT on a replication
	// connection, which must stay idle while the snapshot is read.
	repl, err := pgconn.Connect(ctx, dsn+" replication=database")
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	slot, err := pglogrepl.CreateReplicationSlot(ctx, repl, db, "pgoutput", pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pgtest.Exec(t, pgtest.Connect(t, dsn), "SELECT pg_drop_replication_slot('"+db+"')") })
	consistent, err := event.ParseLSN(slot.ConsistentPoint)
	if err != nil {
		t.Fatal(err)
	}

	c := newConsumer()
	for _, name := range []string{"acct", "note"} {
		tab, err := Describe(ctx, conn, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		c.track(tab)
	}
	stats, err := ReadSnapshot(ctx, dsn, slot.SnapshotName, []string{"acct", "note"}, SnapshotOptions{Workers: 2, Position: consistent},
		func(e *event.Event) error {
			if e.LSN != consistent {
				t.Errorf("read event at %s, want the consistent point %s", e.LSN, consistent)
			}
			c.apply(t, e)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	repl.Close(ctx) // done with the snapshot: the slot may now be read

	time.Sleep(200 * time.Millisecond) // writes after the snapshot, for the stream
	stopWriters()
	writers.Wait()
	s := &testStream{t: t, conn: pgtest.Connect(t, dsn), slot: db, pub: "p", types: catalog.NewTypes(), rels: map[uint32]*event.Relation{}}
	m := NewMerger()
	drain(t, ctx, s, m, c)
	for _, name := range []string{"acct", "note"} {
		tab, _ := Describe(ctx, conn, nil, name)
		c.check(t, ctx, conn, tab)
	}
	t.Logf("snapshot: %d rows at %s", stats.Rows, consistent)
}
