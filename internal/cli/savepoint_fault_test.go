package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// The state invariant under faults, for large transactions: writers make
// transactions far larger than logical_decoding_work_mem (so that the server
// streams them in progress, protocol v2) full of nested savepoints, rolled
// back and released at random, among small ones, while `pgfeed stream` is
// killed with SIGKILL and PostgreSQL is crashed (`-m immediate`) at random
// moments (PostgreSQL every other round). Applying everything pgfeed ever
// printed gives SELECT * of the table.
func TestStreamedSavepointsUnderFaults(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "faultsp")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)")
	// The walsender takes the setting from the connection: small, so that
	// these transactions are streamed while in progress.
	streamDSN := dsn + " logical_decoding_work_mem=64kB"
	args := []string{"stream", "--dsn", streamDSN, "--slot", "faultsp", "--tables", "public.items"}
	if code, _, stderr := runCLI(t, append(args, "--create", "--endpos", "0/1")...); code != 0 {
		t.Fatalf("creating slot: %s", stderr)
	}

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 77))
			step := smallTxn
			if w < 2 {
				base := 10_000 * (w + 1) // large writers keep to their own ids
				step = func(ctx context.Context, conn *pgx.Conn, r *rand.Rand) error {
					return largeTxnWithSavepoints(ctx, conn, r, base)
				}
			}
			writeThroughCrashes(ctx, dsn, r, step)
		}()
	}

	outDir := t.TempDir()
	var outputs []string
	streamed := int64(0)
	for i := range 6 {
		out := filepath.Join(outDir, fmt.Sprintf("run-%d.jsonl", i))
		outputs = append(outputs, out)
		cmd := streamProcess(t, out, args...)
		time.Sleep(time.Duration(500+rand.IntN(1200)) * time.Millisecond)
		streamed = max(streamed, streamedTxns(db, "faultsp"))
		if i%2 == 1 { // every other round, PostgreSQL crashes too
			if err := pg.Restart(context.Background(), "immediate"); err != nil {
				t.Fatal(err)
			}
			db = pgtest.Connect(t, dsn)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	stopWriters()
	wg.Wait()

	var end string
	if err := db.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}
	last := filepath.Join(outDir, "final.jsonl")
	outputs = append(outputs, last)
	cmd := streamProcess(t, last, append(args, "--endpos", end)...)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v", err)
	}
	streamed = max(streamed, streamedTxns(db, "faultsp"))

	got := map[int]map[string]any{}
	events := 0
	for _, path := range outputs {
		events += applyOutput(t, path, got)
	}
	want := itemsInTable(t, db)
	if len(want) < 1000 || streamed == 0 {
		t.Fatalf("the workload was too small to mean anything: %d rows, %d events, %d transactions streamed in progress", len(want), events, streamed)
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken: %d rows from the stream, %d in the table", len(got), len(want))
	}
	t.Logf("%d events over %d runs, %d rows, %d transactions streamed in progress", events, len(outputs), len(want), streamed)
}

// streamedTxns is how many transactions the server streamed in progress on
// the slot (pg_stat_replication_slots, reset by a crash), or 0.
func streamedTxns(db *pgx.Conn, slot string) int64 {
	var n int64
	_ = db.QueryRow(context.Background(), "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = $1", slot).Scan(&n)
	return n
}

// writeThroughCrashes runs step in a loop until ctx ends, reconnecting
// after the server went away. When it returns, every transaction it began
// has ended on the server.
func writeThroughCrashes(ctx context.Context, dsn string, r *rand.Rand, step func(context.Context, *pgx.Conn, *rand.Rand) error) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = pgx.Connect(ctx, dsn); err != nil {
				conn = nil
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		// The step runs to its end whatever ctx does: a COMMIT cancelled
		// on the client side may still commit on the server after the
		// test measured the end of the WAL, and then the table holds a
		// change the final run was never asked to deliver.
		if err := step(context.WithoutCancel(ctx), conn, r); err != nil {
			// Lost connection, deadlock, crash recovery: start afresh.
			conn.Close(context.Background())
			conn = nil
		}
	}
}

// smallTxn is a transaction of a few random changes on ids 1..300; some roll back.
func smallTxn(ctx context.Context, conn *pgx.Conn, r *rand.Rand) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit, a no-op
	for range 1 + r.IntN(4) {
		id := 1 + r.IntN(300)
		switch op := r.IntN(10); {
		case op < 5:
			_, err = tx.Exec(ctx, "INSERT INTO items VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET val = items.val + 1", id, r.IntN(1000), fmt.Sprintf("n%d", r.IntN(100)))
		case op < 8:
			_, err = tx.Exec(ctx, "UPDATE items SET val = $2, note = NULL WHERE id = $1", id, r.IntN(1000))
		default:
			_, err = tx.Exec(ctx, "DELETE FROM items WHERE id = $1", id)
		}
		if err != nil {
			return err
		}
	}
	if r.IntN(10) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// largeTxnWithSavepoints is one transaction of several hundred kB of
// changes on ids base..base+2999, in savepoints nested up to three deep,
// each rolled back or released at random; one in ten transactions rolls back
// whole.
func largeTxnWithSavepoints(ctx context.Context, conn *pgx.Conn, r *rand.Rand, base int) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit, a no-op
	pad := strings.Repeat("x", 150)
	change := func() error {
		from := base + r.IntN(2800)
		to := from + 50 + r.IntN(200)
		var err error
		switch r.IntN(4) {
		case 0, 1:
			_, err = tx.Exec(ctx, "INSERT INTO items SELECT g, $3, $4 || g FROM generate_series($1::int, $2::int) g ON CONFLICT (id) DO UPDATE SET val = EXCLUDED.val, note = EXCLUDED.note",
				from, to, r.IntN(1000), pad)
		case 2:
			_, err = tx.Exec(ctx, "UPDATE items SET val = val + $3, note = $4 WHERE id BETWEEN $1 AND $2", from, to, 1+r.IntN(9), pad+"u")
		default:
			_, err = tx.Exec(ctx, "DELETE FROM items WHERE id BETWEEN $1 AND $2", from, from+r.IntN(100))
		}
		return err
	}
	var nest func(depth int) error
	nest = func(depth int) error {
		name := fmt.Sprintf("s%d", depth)
		if _, err := tx.Exec(ctx, "SAVEPOINT "+name); err != nil {
			return err
		}
		for range 1 + r.IntN(3) {
			if depth < 3 && r.IntN(3) == 0 {
				if err := nest(depth + 1); err != nil {
					return err
				}
			}
			if err := change(); err != nil {
				return err
			}
		}
		end := "RELEASE SAVEPOINT "
		if r.IntN(2) == 0 {
			end = "ROLLBACK TO SAVEPOINT "
		}
		_, err := tx.Exec(ctx, end+name)
		return err
	}
	for range 2 + r.IntN(4) {
		if err := change(); err != nil {
			return err
		}
		if err := nest(1); err != nil {
			return err
		}
	}
	if r.IntN(10) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}
