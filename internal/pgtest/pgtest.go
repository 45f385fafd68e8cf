// Package pgtest gives each test package one throwaway PostgreSQL cluster
// (see pgcluster) and small helpers to talk to it.
//
//	var pg *pgcluster.Cluster
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg, pgcluster.Options{})) }
package pgtest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
)

// Main starts a cluster, stores it in *dst, runs the package's tests and
// removes the cluster. It returns the exit code for os.Exit, so that the
// cleanup runs before the process exits. A cluster that cannot start fails
// the package: tests never skip for a missing server.
func Main(m *testing.M, dst **pgcluster.Cluster, opts pgcluster.Options) int {
	pgcluster.Reap()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	c, err := pgcluster.Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: starting PostgreSQL:", err)
		return 1
	}
	*dst = c
	code := m.Run()
	if err := c.Remove(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest: removing cluster:", err)
	}
	return code
}

// Connect opens a normal connection, closed when the test ends.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs SQL statements, failing the test on error.
func Exec(t testing.TB, conn *pgx.Conn, sql ...string) {
	t.Helper()
	for _, s := range sql {
		if _, err := conn.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// CreateDB creates a fresh database for one test and returns its DSN, so
// that tests sharing a cluster do not see each other's tables. A database
// of that name left by an earlier run of the test (go test -count=N) is
// dropped first, with its replication slots.
func CreateDB(t testing.TB, c *pgcluster.Cluster, name string) string {
	t.Helper()
	conn := Connect(t, c.DSN(""))
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name); err != nil {
		t.Fatalf("dropping the slots of database %s: %v", name, err)
	}
	Exec(t, conn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)",
		"CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	// Slots are a cluster-wide budget (max_replication_slots): a package
	// whose tests each leave theirs would run out of it.
	t.Cleanup(func() { dropSlots(c, name) })
	return c.DSN(name)
}

// dropSlots drops the replication slots of database name, best effort: a
// slot still held by the walsender of a process the test killed is
// released by ending that walsender first.
func dropSlots(c *pgcluster.Cluster, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN(""))
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	for ctx.Err() == nil {
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", name)
		_, _ = conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", name)
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE database = $1", name).Scan(&left); err != nil || left == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
