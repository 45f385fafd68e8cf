package source

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// collect reads events until done says so (or the time is up), acking
// every commit, and returns the row events.
func collect(t *testing.T, s *Stream, timeout time.Duration, done func(rows []*event.Event) bool) []*event.Event {
	t.Helper()
	var rows []*event.Event
	deadline := time.Now().Add(timeout)
	for !done(rows) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		e, err := s.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Next after %d row events: %v", len(rows), err)
		}
		if e.Op.IsRowChange() {
			rows = append(rows, e)
		}
		if e.Op == event.OpCommit {
			_ = s.Ack(e.CommitLSN)
		}
	}
	return rows
}

// noMoreRows asserts that no row event arrives within d.
func noMoreRows(t *testing.T, s *Stream, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		e, err := s.Next(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if e.Op.IsRowChange() {
			t.Fatalf("unexpected event %s", e.AppendJSON(nil))
		}
		if e.Op == event.OpCommit {
			_ = s.Ack(e.CommitLSN)
		}
	}
}

func atLeast(n int) func([]*event.Event) bool {
	return func(rows []*event.Event) bool { return len(rows) >= n }
}

// summary lists "op table id" of row events, sorted.
func summary(rows []*event.Event) []string {
	var out []string
	for _, e := range rows {
		row := e.After
		if row == nil {
			row = e.Before
		}
		m, _ := row.Map(e.Rel)
		out = append(out, fmt.Sprintf("%s %s %v", e.Op, e.Table, m["id"]))
	}
	sort.Strings(out)
	return out
}

// Item 3 of "nothing lost": a partitioned table named by its parent comes
// under the parent's name, live and in the snapshot, and each row once,
// also when a glob matches the parent and its partitions.
func TestPartitionedTableUnderItsRoot(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "partitions")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE TABLE measure (id int, at date NOT NULL, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
		"CREATE TABLE measure_2025 PARTITION OF measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
		"CREATE TABLE measure_2026 PARTITION OF measure FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		"INSERT INTO measure VALUES (1, '2025-05-01', 1), (2, '2026-05-01', 2)")
	for _, tables := range [][]string{{"public.measure"}, {"public.*"}, {"public.measure*"}} {
		t.Run(strings.Join(tables, ","), func(t *testing.T) {
			slot := "part_" + strings.NewReplacer(".", "_", "*", "x").Replace(strings.Join(tables, "_"))
			s := open(t, Config{DSN: dsn, Slot: slot, Create: true, Tables: tables, InitialSnapshot: true, Transactions: true})
			reads := collect(t, s, 30*time.Second, atLeast(2))
			if got := summary(reads); strings.Join(got, "|") != "read measure 1|read measure 2" {
				t.Fatalf("snapshot: %v", got)
			}
			pgtest.Exec(t, db, "INSERT INTO measure VALUES (3, '2026-06-01', 3)", "DELETE FROM measure WHERE id = 3")
			live := collect(t, s, 30*time.Second, atLeast(2))
			if got := summary(live); strings.Join(got, "|") != "delete measure 3|insert measure 3" {
				t.Fatalf("live changes: %v (want them under the parent's name)", got)
			}
			noMoreRows(t, s, 300*time.Millisecond)
		})
	}
	// A publication of someone else's that publishes partitions under
	// their own names is refused for the parent, with the fix.
	pgtest.Exec(t, db, "CREATE PUBLICATION leaves FOR TABLE measure")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{DSN: dsn, Slot: "part_leaves", Publication: "leaves", Create: true, Tables: []string{"measure"}})
	var ue *UserError
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "publish_via_partition_root") {
		t.Fatalf("want a refusal naming publish_via_partition_root, got %v", err)
	}
}

// Item 4: the row filter of a table applies to the initial snapshot and to
// backfills as it does to the stream.
func TestRowFilterInSnapshotAndBackfill(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "rowfilter")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)",
		"INSERT INTO orders SELECT g, CASE WHEN g % 2 = 0 THEN 'draft' ELSE 'paid' END FROM generate_series(1, 10) g")
	cfg := Config{DSN: dsn, Slot: "rowfilter", Create: true, Tables: []string{"orders"}, InitialSnapshot: true,
		Transactions: true, Filters: map[string]string{"public.orders": "status <> 'draft'"}}
	s := open(t, cfg)
	reads := collect(t, s, 30*time.Second, atLeast(5))
	noMoreRows(t, s, 300*time.Millisecond)
	for _, e := range reads {
		if m, _ := e.After.Map(e.Rel); m["status"] != "paid" {
			t.Fatalf("the snapshot read a row the filter excludes: %s", e.AppendJSON(nil))
		}
	}
	if err := s.Backfill("public.orders"); err != nil {
		t.Fatal(err)
	}
	back := collect(t, s, 30*time.Second, atLeast(5))
	noMoreRows(t, s, 500*time.Millisecond)
	for _, e := range back {
		if m, _ := e.After.Map(e.Rel); e.Op != event.OpRead || m["status"] != "paid" {
			t.Fatalf("the backfill delivered a row the filter excludes: %s", e.AppendJSON(nil))
		}
	}
}

// Item 11: a row filter is one expression, checked by PostgreSQL; one that
// smuggles a statement, another table or a comment is refused and runs
// nothing.
func TestRowFilterCannotSmuggleSQL(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "filterinject")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE orders (id int PRIMARY KEY, status text)", "CREATE TABLE victim (id int PRIMARY KEY)")
	for i, where := range []string{
		"true); DROP TABLE victim; --",
		"true) , public.victim WHERE (true",
		"status = 'x' -- ",
		"(SELECT true)",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := Open(ctx, Config{DSN: dsn, Slot: fmt.Sprintf("inject_%d", i), Create: true, Tables: []string{"public.*"},
			Filters: map[string]string{"public.orders": where}})
		cancel()
		var ue *UserError
		if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "row filter of public.orders") || strings.Contains(ue.Msg, "\n") {
			t.Fatalf("filter %q: want one line about the row filter, got %v", where, err)
		}
		var exists bool
		if err := db.QueryRow(context.Background(), "SELECT to_regclass('victim') IS NOT NULL").Scan(&exists); err != nil || !exists {
			t.Fatalf("filter %q dropped the table", where)
		}
		var pubs int
		if err := db.QueryRow(context.Background(), "SELECT count(*) FROM pg_publication").Scan(&pubs); err != nil || pubs != 0 {
			t.Fatalf("filter %q left %d publications", where, pubs)
		}
	}
}

// Item 5: "public.*" and other globs mean every matching table, now and
// later, names with "/" and spaces included; with BackfillNewTables the
// rows a new table held before it joined the publication come as reads.
func TestNewTablesAreCaptured(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "newtables")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE t_first (id int PRIMARY KEY)")

	schemaWide := open(t, Config{DSN: dsn, Slot: "schema_wide", Create: true, Tables: []string{"public.*"}})
	listed := open(t, Config{DSN: dsn, Slot: "listed", Create: true, Tables: []string{"public.t_*"},
		BackfillNewTables: true, TableWatchInterval: 100 * time.Millisecond})
	var kind string
	if err := db.QueryRow(context.Background(), "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = 'schema_wide') THEN 'schema' ELSE 'list' END").Scan(&kind); err != nil || kind != "schema" {
		t.Fatalf("public.* should publish FOR TABLES IN SCHEMA, got %s (%v)", kind, err)
	}

	pgtest.Exec(t, db, `CREATE TABLE "t_odd/name with space" (id int PRIMARY KEY)`,
		`INSERT INTO "t_odd/name with space" VALUES (1), (2)`)
	got := summary(collect(t, schemaWide, 30*time.Second, atLeast(2)))
	if strings.Join(got, "|") != "insert t_odd/name with space 1|insert t_odd/name with space 2" {
		t.Fatalf("schema-wide stream: %v", got)
	}
	// The listed stream gets the rows from before the table joined as
	// reads (a backfill) or inserts (if it joined first), then new ones.
	first := collect(t, listed, 30*time.Second, atLeast(2))
	pgtest.Exec(t, db, `INSERT INTO "t_odd/name with space" VALUES (3)`)
	rest := collect(t, listed, 30*time.Second, atLeast(1))
	ids := map[any]bool{}
	for _, e := range append(first, rest...) {
		if e.Table != "t_odd/name with space" {
			t.Fatalf("unexpected %s", e.AppendJSON(nil))
		}
		m, _ := e.After.Map(e.Rel)
		ids[m["id"]] = true
	}
	if len(ids) != 3 {
		t.Fatalf("listed stream: rows %v of the new table, want 1, 2 and 3", ids)
	}
}

// Item 6: each slot gets a publication of its own, so two streams with
// different tables both get theirs; a publication that pgfeed did not
// create for a slot is never changed by it.
func TestEachSlotHasItsOwnPublication(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "ownpub")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE a (id int PRIMARY KEY)", "CREATE TABLE b (id int PRIMARY KEY)")
	sa := open(t, Config{DSN: dsn, Slot: "slot_a", Create: true, Tables: []string{"a"}})
	sb := open(t, Config{DSN: dsn, Slot: "slot_b", Create: true, Tables: []string{"b"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{DSN: dsn, Slot: "slot_c", Publication: "slot_a", Create: true, Tables: []string{"b"}})
	var ue *UserError
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, `not in publication "slot_a"`) || !strings.Contains(ue.Msg, "does not change") {
		t.Fatalf("narrowing another slot's publication: want a refusal, got %v", err)
	}
	pgtest.Exec(t, db, "INSERT INTO a VALUES (1)", "INSERT INTO b VALUES (1)")
	if got := summary(collect(t, sa, 30*time.Second, atLeast(1))); got[0] != "insert a 1" {
		t.Fatalf("slot_a: %v", got)
	}
	if got := summary(collect(t, sb, 30*time.Second, atLeast(1))); got[0] != "insert b 1" {
		t.Fatalf("slot_b: %v", got)
	}
	noMoreRows(t, sa, 300*time.Millisecond)
	// A shared publication made by someone else: used, not altered.
	pgtest.Exec(t, db, "CREATE PUBLICATION shared FOR TABLE a")
	_, err = Open(ctx, Config{DSN: dsn, Slot: "slot_d", Publication: "shared", Create: true, Tables: []string{"a", "b"}})
	if !errors.As(err, &ue) || !strings.Contains(ue.Msg, `not in publication "shared"`) {
		t.Fatalf("want a refusal to add b to a publication pgfeed did not create, got %v", err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'shared'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("publication shared now has %d tables", n)
	}
}
