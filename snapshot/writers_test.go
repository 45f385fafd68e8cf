package snapshot

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// stallCommits makes the commits of sessions that set synchronous_commit =
// on wait for a synchronous standby that never answers; the other sessions
// of the database dsn commit locally. A waiting commit is in the WAL (the
// stream decodes it) but running for every snapshot until its wait is
// cancelled, the state that a commit passes through briefly on a busy
// server, held for as long as the test needs.
func stallCommits(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	admin := pgtest.Connect(t, pg.DSN(""))
	pgtest.Exec(t, admin, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET synchronous_commit = local",
		"ALTER SYSTEM SET synchronous_standby_names = 'pgfeed_test_nobody'", "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		c := pgtest.Connect(t, pg.DSN(""))
		pgtest.Exec(t, c, "ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()")
	})
}

// A transaction whose commit record is in the WAL before a chunk's low
// watermark, but which PostgreSQL has not yet taken out of the running set
// when the chunk's SELECT takes its snapshot: the stream delivers its change
// before the window opens, so the chunk must not read the row as it was
// before, or the Merger releases that older row over the change.
func TestBackfillChunkSeesCommitsBeforeLowWatermark(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL)`,
		`INSERT INTO big SELECT g, 0 FROM generate_series(1, 100) g`,
	)
	tab, err := Describe(ctx, conn, nil, "big")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestStream(t, dsn)
	stallCommits(t, ctx, conn)

	writer := pgtest.Connect(t, dsn)
	pgtest.Exec(t, writer, "SET synchronous_commit = on")
	var pid int
	if err := writer.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	updated := make(chan error, 1)
	update := func() {
		go func() {
			_, err := writer.Exec(context.Background(), "UPDATE big SET v = v + 1 WHERE id = 50")
			updated <- err
		}()
	}
	update()
	for stalled := false; !stalled; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-updated:
			// Committed without waiting: the server had not applied the
			// setting yet. Again.
			if err != nil {
				t.Fatal(err)
			}
			update()
			continue
		default:
		}
		var wait string
		if err := conn.QueryRow(ctx, "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1", pid).Scan(&wait); err != nil {
			t.Fatal(err)
		}
		stalled = wait == "SyncRep" // committed in the WAL, running for every snapshot
	}

	m := NewMerger()
	c := newConsumer()
	c.track(tab)
	stop := runStream(t, s, m, c)
	// Row 50 is in the first chunk, read at once.
	w := NewWalker(dsn, m, WalkerOptions{Source: "s", ChunkSize: 64})
	defer w.Close(context.Background())
	walked := make(chan error, 1)
	go func() {
		_, err := w.Backfill(ctx, "big")
		walked <- err
	}()
	// Time for the walk to go wrong; it must not end while the commit is
	// still invisible.
	select {
	case err := <-walked:
		walked <- err
	case <-time.After(500 * time.Millisecond):
	}
	pgtest.Exec(t, conn, "SELECT pg_cancel_backend("+strconv.Itoa(pid)+")") // the commit becomes visible
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if err := <-walked; err != nil {
		t.Fatal(err)
	}
	stop(false)
	drain(t, ctx, s.reopen(dsn), m, c)
	c.check(t, ctx, conn, tab)
}

// A transaction idle after writing to the table has not written its commit
// record: the walk goes on without waiting for it, and its commit comes
// after the low watermark, where the Merger handles it.
func TestBackfillDoesNotWaitForIdleWriters(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL)`,
		`INSERT INTO big SELECT g, 0 FROM generate_series(1, 100) g`,
	)
	tab, err := Describe(ctx, conn, nil, "big")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestStream(t, dsn)
	idle := pgtest.Connect(t, dsn)
	pgtest.Exec(t, idle, "BEGIN", "UPDATE big SET v = 2 WHERE id = 10", "DELETE FROM big WHERE id = 70")

	m := NewMerger()
	c := newConsumer()
	c.track(tab)
	stop := runStream(t, s, m, c)
	w := NewWalker(dsn, m, WalkerOptions{Source: "s", ChunkSize: 64})
	defer w.Close(context.Background())
	if _, err := w.Backfill(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, idle, "COMMIT")
	stop(false)
	drain(t, ctx, s.reopen(dsn), m, c)
	c.check(t, ctx, conn, tab)
}
