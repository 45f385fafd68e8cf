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
	"github.com/pgfeed/pgfeed/snapshot"
)

// A backfill of a 200k-row table while writers update and delete its rows,
// with the consumer stopped mid-backfill and started again: the backfill
// resumes from its stored progress rather than restarting, and the map of
// everything delivered equals SELECT *.
func TestBackfillResumesUnderWriters(t *testing.T) {
	const rows = 200_000
	dsn := pgtest.CreateDB(t, pg, "backfill")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE big(id int PRIMARY KEY, val int NOT NULL)",
		fmt.Sprintf("INSERT INTO big SELECT g, 0 FROM generate_series(1, %d) g", rows),
		"CREATE TABLE composite(a int, b text, v int, PRIMARY KEY (a, b))",
		"INSERT INTO composite SELECT g % 10, 'k' || g, g FROM generate_series(1, 2000) g",
		"CREATE TABLE textkey(k text PRIMARY KEY, v int)",
		"INSERT INTO textkey SELECT 'key-' || g, g FROM generate_series(1, 1500) g",
		"CREATE TABLE nokey(v int)",
		"INSERT INTO nokey SELECT g FROM generate_series(1, 300) g")
	progress := &snapshot.MemoryProgress{}
	cfg := Config{DSN: dsn, Slot: "backfill", Create: true, Transactions: true, BackfillProgress: progress, BackfillChunk: 2000}
	s := open(t, cfg)

	stopWriters := startWriters(t, dsn, 2, 3, func(conn *pgx.Conn, r *rand.Rand) {
		id := 1 + r.IntN(rows)
		if r.IntN(4) == 0 {
			_, _ = conn.Exec(context.Background(), "DELETE FROM big WHERE id = $1", id)
		} else {
			_, _ = conn.Exec(context.Background(), "UPDATE big SET val = val + 1 WHERE id = $1", id)
		}
	})

	state := map[string]map[string]string{} // table → key → row text
	apply := func(e *event.Event) {
		if !e.Op.IsRowChange() {
			return
		}
		row := e.After
		if row == nil {
			row = e.Before
		}
		key := ""
		for i, c := range e.Rel.Columns {
			if c.Key || e.Table == "nokey" {
				key += string(row[i].Raw) + "|"
			}
		}
		if state[e.Table] == nil {
			state[e.Table] = map[string]string{}
		}
		if e.Op == event.OpDelete {
			delete(state[e.Table], key)
			return
		}
		text := ""
		for _, v := range e.After {
			text += string(v.Raw) + ","
		}
		state[e.Table][key] = text
	}
	reads := 0
	// consume applies events, acking each transaction, until stop says so.
	consume := func(s *Stream, stop func() bool) {
		t.Helper()
		deadline, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for !stop() {
			e, err := s.Next(deadline)
			if err != nil {
				t.Fatal(err)
			}
			apply(e)
			if e.Op == event.OpRead {
				reads++
			}
			if e.Op == event.OpCommit {
				if err := s.Ack(e.CommitLSN); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	time.Sleep(300 * time.Millisecond)
	s.Backfill("public.big", "public.composite", "public.textkey", "public.nokey")
	consume(s, func() bool { return reads >= rows/3 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	stored, ok, _ := progress.Progress("backfill", "public.big")
	if !ok || stored.Rows == 0 || stored.Done {
		t.Fatalf("no progress stored mid-backfill: %+v", stored)
	}
	readsBefore := reads

	s = open(t, Config{DSN: dsn, Slot: "backfill", Transactions: true, BackfillProgress: progress, BackfillChunk: 2000})
	done := func() bool {
		for _, table := range []string{"public.big", "public.composite", "public.textkey", "public.nokey"} {
			if p, _, _ := progress.Progress("backfill", table); !p.Done {
				return false
			}
		}
		return true
	}
	consume(s, done)
	stopWriters()
	if second := reads - readsBefore; second >= rows-int(stored.Rows)+5000 {
		t.Fatalf("the second run read %d rows: the backfill restarted instead of resuming after %d", second, stored.Rows)
	}
	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	s.Close()
	endLSN, _ := event.ParseLSN(end)
	s = open(t, Config{DSN: dsn, Slot: "backfill", Transactions: true, BackfillProgress: progress, EndLSN: endLSN})
	eof := false
	for !eof {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		e, err := s.Next(ctx)
		cancel()
		if errors.Is(err, io.EOF) {
			eof = true
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		apply(e)
	}

	want := map[string]map[string]string{"big": {}, "composite": {}, "textkey": {}, "nokey": {}}
	for table, sql := range map[string]string{
		"big":       "SELECT id || '|', id || ',' || val || ',' FROM big",
		"composite": "SELECT a || '|' || b || '|', a || ',' || b || ',' || v || ',' FROM composite",
		"textkey":   "SELECT k || '|', k || ',' || v || ',' FROM textkey",
		"nokey":     "SELECT v || '|', v || ',' FROM nokey",
	} {
		rows, err := db.Query(context.Background(), sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				t.Fatal(err)
			}
			want[table][k] = v
		}
	}
	for table := range want {
		if !reflect.DeepEqual(state[table], want[table]) {
			n := 0
			for k, v := range want[table] {
				if state[table][k] != v && n < 5 {
					t.Errorf("%s %s: stream %q, table %q", table, k, state[table][k], v)
					n++
				}
			}
			t.Fatalf("%s: %d rows from the stream, %d in the table", table, len(state[table]), len(want[table]))
		}
	}
	t.Logf("%d read events; the second run resumed after %d rows of big", reads, stored.Rows)
}
