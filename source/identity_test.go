package source

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/snapshot"
)

// Every event a stream delivers has its own identity (DESIGN.md, Event
// identity): the reads of a multi-table initial snapshot, read in parallel,
// the reads of backfills of several tables and the changes of concurrent
// writers never share commit_lsn and seq, nor a CloudEvents id.
func TestEventIdentityUnique(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "identity")
	db := pgtest.Connect(t, dsn)
	tables := []string{"public.a", "public.b", "public.c", "public.nokey"}
	pgtest.Exec(t, db,
		"CREATE TABLE a(id int PRIMARY KEY, v int)", "INSERT INTO a SELECT g, g FROM generate_series(1, 3000) g",
		"CREATE TABLE b(id int PRIMARY KEY, v int)", "INSERT INTO b SELECT g, g FROM generate_series(1, 2000) g",
		"CREATE TABLE c(k text PRIMARY KEY, v int)", "INSERT INTO c SELECT 'k' || g, g FROM generate_series(1, 1000) g",
		"CREATE TABLE nokey(v int)", "INSERT INTO nokey SELECT g FROM generate_series(1, 500) g")
	stop := startWriters(t, dsn, 2, 5, func(conn *pgx.Conn, r *rand.Rand) {
		_, _ = conn.Exec(context.Background(), "UPDATE a SET v = v + 1 WHERE id = $1", 1+r.IntN(3000))
		_, _ = conn.Exec(context.Background(), "INSERT INTO b VALUES ($1, 0) ON CONFLICT (id) DO UPDATE SET v = b.v + 1", 1+r.IntN(3000))
		time.Sleep(time.Millisecond)
	})
	progress := &snapshot.MemoryProgress{}
	s := open(t, Config{DSN: dsn, Slot: "identity", Create: true, InitialSnapshot: true, SnapshotWorkers: 3,
		Transactions: true, Tables: tables, BackfillProgress: progress, BackfillChunk: 400})

	seen := map[string]string{}  // commit_lsn:seq → event
	ids := map[string]string{}   // CloudEvents id → event
	reads := map[event.LSN]int{} // reads by commit_lsn
	check := func(e *event.Event) {
		t.Helper()
		if e.Op.IsRowChange() || e.Op == event.OpTruncate || e.Op == event.OpMessage {
			k := e.CommitLSN.String() + ":" + itoa(e.Seq)
			if prev, dup := seen[k]; dup {
				t.Fatalf("commit_lsn %s seq %d twice:\n%s\n%s", e.CommitLSN, e.Seq, prev, e.AppendJSON(nil))
			}
			seen[k] = string(e.AppendJSON(nil))
		}
		id := encode.ID(e)
		if prev, dup := ids[id]; dup {
			t.Fatalf("CloudEvents id %s twice:\n%s\n%s", id, prev, e.AppendJSON(nil))
		}
		ids[id] = string(e.AppendJSON(nil))
		if e.Op == event.OpRead {
			reads[e.CommitLSN]++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var consistent event.LSN
	for {
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check(e)
		if e.Op == event.OpRead {
			consistent = e.CommitLSN
			// A transaction can commit right at the consistent point: its
			// changes number from 1, and the reads must stay clear of them.
			if e.Seq <= snapshot.MaxTableRows {
				t.Fatalf("a read of the initial snapshot has seq %d, which a transaction committed at the consistent point can have too: %s", e.Seq, e.AppendJSON(nil))
			}
		}
		if e.Op == event.OpCommit && e.XID == 0 && e.CommitLSN == consistent {
			break // the end of the initial snapshot
		}
		if e.Op == event.OpCommit {
			if err := s.Ack(e.CommitLSN); err != nil {
				t.Fatal(err)
			}
		}
	}
	if reads[consistent] < 6500 { // writers add rows to b
		t.Fatalf("the initial snapshot gave %d reads at %s, want at least 6500", reads[consistent], consistent)
	}

	s.Backfill(tables...)
	done := func() bool {
		for _, table := range tables {
			if p, _, _ := progress.Progress("identity", table); !p.Done {
				return false
			}
		}
		return true
	}
	for !done() {
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		check(e)
		if e.Op == event.OpCommit {
			if err := s.Ack(e.CommitLSN); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop()
	total := 0
	for _, n := range reads {
		total += n
	}
	if len(reads) < 5 || total < 2*6500-1000 {
		t.Fatalf("too few backfill reads: %d at %d positions", total, len(reads))
	}
	t.Logf("%d events, %d reads at %d positions", len(ids), total, len(reads))
}
