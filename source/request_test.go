package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// Item 10 of "nothing lost": a backfill of a name that needs quoting reads
// that table, not its lower-case namesake; a name of no table is reported.
func TestBackfillOfQuotedNames(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "quotednames")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE orders (id int PRIMARY KEY)", "INSERT INTO orders VALUES (1), (2), (3)",
		`CREATE TABLE "Orders" (id int PRIMARY KEY)`, `INSERT INTO "Orders" VALUES (100), (101)`)
	s := open(t, Config{DSN: dsn, Slot: "quoted", Create: true, Tables: []string{"public.*"}, Transactions: true})
	if err := s.Backfill(`"Orders"`); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(summary(collect(t, s, 30*time.Second, atLeast(2))), "|"); got != "read Orders 100|read Orders 101" {
		t.Fatalf("backfill of \"Orders\": %s", got)
	}
	noMoreRows(t, s, 300*time.Millisecond)
	waitBackfillsDone(t, s)
	// The same through a request row, as pgfeed backfill writes it.
	if _, err := RequestBackfill(context.Background(), db, "quoted", []string{`public."Orders"`}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(summary(collect(t, s, 30*time.Second, atLeast(2))), "|"); got != "read Orders 100|read Orders 101" {
		t.Fatalf("requested backfill of public.\"Orders\": %s", got)
	}
	if err := s.Backfill("nope"); err == nil || !strings.Contains(err.Error(), "no table nope") {
		t.Fatalf("backfill of a missing table: %v", err)
	}
}

// waitBackfillsDone consumes the stream (expecting no more rows) until
// its backfill queue is empty: a table still queued is not queued twice,
// and a walker finishes only as the stream passes its last watermarks.
func waitBackfillsDone(t *testing.T, s *Stream) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		s.backfills.mu.Lock()
		n := len(s.backfills.queue)
		s.backfills.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backfills still queued: %d", n)
		}
		noMoreRows(t, s, 100*time.Millisecond)
	}
}

// Item 12: a role that may not read a table cannot make the stream
// backfill it, neither with a forged request message nor with a request
// table of its own.
func TestBackfillRequestsAreAuthenticated(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "authrequest")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE secret (id int PRIMARY KEY)", "INSERT INTO secret VALUES (1), (2)",
		"DROP ROLE IF EXISTS mallory", "CREATE ROLE mallory LOGIN",
		"GRANT CREATE ON DATABASE authrequest TO mallory")
	s := open(t, Config{DSN: dsn, Slot: "auth", Create: true, Transactions: true})
	mallory := pgtest.Connect(t, strings.Replace(dsn, "user=postgres", "user=mallory", 1))
	pgtest.Exec(t, mallory,
		// The message form of earlier versions, naming the table itself.
		`SELECT pg_logical_emit_message(true, 'pgfeed.backfill-request', '{"tables":["public.secret"]}')`,
		// A request table of mallory's own, before pgfeed made one.
		"CREATE SCHEMA pgfeed",
		"CREATE TABLE pgfeed.backfill_requests (id bigserial PRIMARY KEY, slot text, tables text[] NOT NULL, requested_by name NOT NULL DEFAULT 'postgres', requested_at timestamptz NOT NULL DEFAULT now())",
		"INSERT INTO pgfeed.backfill_requests (tables) VALUES ('{public.secret}')",
		`SELECT pg_logical_emit_message(true, 'pgfeed.backfill-request', '{"id":1}')`,
		"INSERT INTO pgfeed.backfill_requests (tables) VALUES ('{public.secret}')")
	noMoreRows(t, s, 2*time.Second)
	// Once the table is the stream role's, with no one else writing it, a
	// request works.
	pgtest.Exec(t, db, "DROP SCHEMA pgfeed CASCADE")
	if _, err := RequestBackfill(context.Background(), db, "", []string{"secret"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(summary(collect(t, s, 30*time.Second, atLeast(2))), "|"); got != "read secret 1|read secret 2" {
		t.Fatalf("authenticated request: %s", got)
	}
	noMoreRows(t, s, 300*time.Millisecond)
	waitBackfillsDone(t, s)
	// Granting INSERT on the request table to another role makes every
	// request untrusted.
	pgtest.Exec(t, db, "GRANT USAGE ON SCHEMA pgfeed TO mallory", "GRANT INSERT ON pgfeed.backfill_requests TO mallory")
	if _, err := RequestBackfill(context.Background(), db, "", []string{"secret"}); err != nil {
		t.Fatal(err)
	}
	noMoreRows(t, s, 2*time.Second)
}
