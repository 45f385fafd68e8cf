package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// A slot that max_slot_wal_keep_size invalidated: slot list shows it lost
// with a warning line, and stream stops with one line naming the way out
// and exit code 3, on which supervisors do not restart.
func TestInvalidatedSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove() })
	dsn := c.DSN("")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, pad text)", "CREATE PUBLICATION lost FOR TABLE t")
	if code, _, stderr := runCLI(t, "slot", "create", "--dsn", dsn, "lost"); code != 0 {
		t.Fatal(stderr)
	}
	for i := 0; i < 3; i++ {
		pgtest.Exec(t, db, "INSERT INTO t (pad) SELECT repeat('x', 100) FROM generate_series(1, 100)", "SELECT pg_switch_wal()")
	}
	code, out, stderr := runCLI(t, "slot", "list", "--dsn", dsn)
	if code != 0 || !strings.Contains(out, "unreserved") || !strings.Contains(stderr, "pgfeed: warning: replication slot \"lost\"") || !strings.Contains(stderr, "next checkpoint invalidates it") {
		t.Fatalf("slot list of a slot beyond max_slot_wal_keep_size: %d\n%s%s", code, out, stderr)
	}
	pgtest.Exec(t, db, "CHECKPOINT")
	code, out, stderr = runCLI(t, "slot", "list", "--dsn", dsn)
	if code != 0 || !strings.Contains(out, "lost") || !strings.Contains(stderr, "was invalidated") {
		t.Fatalf("slot list of an invalidated slot: %d\n%s%s", code, out, stderr)
	}

	code, _, stderr = runCLI(t, "stream", "--dsn", dsn, "--slot", "lost")
	expectOneLineError(t, code, stderr, `replication slot "lost" was invalidated`, "max_slot_wal_keep_size", "pgfeed slot drop lost")
	if code != ExitGap {
		t.Errorf("exit code %d, want %d", code, ExitGap)
	}
}
