package pgtest

import (
	"context"
	"os"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgcluster"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(Main(m, &pg, pgcluster.Options{})) }

// The harness itself: logical WAL, and a server that survives kill -9 and
// restarts with its data.
func TestClusterLifecycle(t *testing.T) {
	ctx := context.Background()
	conn := Connect(t, pg.DSN(""))
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil || level != "logical" {
		t.Fatalf("wal_level = %q, %v", level, err)
	}
	Exec(t, conn, "CREATE TABLE t(id int)", "INSERT INTO t VALUES (1)")
	conn.Close(ctx)

	if err := pg.Kill9(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pg.Restart(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	conn = Connect(t, pg.DSN(""))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after kill -9 and restart: count = %d, %v", n, err)
	}
}
