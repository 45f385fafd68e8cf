package snapshot

import (
	"context"
	"fmt"
	"time"
)

// writersQuery lists the transactions holding a row-exclusive lock (every
// INSERT, UPDATE, DELETE, MERGE and COPY takes one) on a table or one of its
// partitions, leaving out those idle in their transaction. With $2 set, only
// the ones among $2 are listed.
const writersQuery = `SELECT coalesce(array_agg(DISTINCT l.virtualtransaction), '{}')
	FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
	WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted
	  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
	  AND (l.relation = $1::oid OR l.relation IN (SELECT relid FROM pg_catalog.pg_partition_tree($1::oid::regclass)))
	  AND a.state IS DISTINCT FROM 'idle in transaction'
	  AND a.state IS DISTINCT FROM 'idle in transaction (aborted)'
	  AND ($2::text[] IS NULL OR l.virtualtransaction = ANY ($2::text[]))`

// waitForWriters returns once every transaction that was writing to t when
// it was called has ended, or sits idle in its transaction. The Walker calls
// it after a chunk's low watermark has committed and before the chunk's
// SELECT, so that the SELECT sees every change the stream delivers before
// the low watermark.
//
// Without it, it may not: PostgreSQL writes a transaction's commit record to
// the WAL before it takes the transaction out of the set that new snapshots
// treat as running (and a commit waiting for a synchronous standby stays
// there until the standby answers). Such a transaction can commit before the
// low watermark in the WAL, so the stream delivers its change outside the
// window, and still be running for the chunk's snapshot, which then reads the
// row as it was before: the Merger would release that older row over the
// newer change. A transaction keeps its locks until after it left that set,
// so one whose lock on t is gone is visible to every later snapshot. One idle
// in its transaction has not written its commit record yet: it commits after
// the low watermark, inside the window or after it, where the Merger handles
// it. (A role that may not see other roles' sessions in pg_stat_activity
// sees no state for them, and waits for them to end.)
//
// A long statement writing to t holds the walk of t up until it ends; the
// wait is logged after a while.
func (w *Walker) waitForWriters(ctx context.Context, t *Table) error {
	var writers []string
	since := time.Now()
	pause := time.Millisecond
	logged := false
	for {
		var left []string // writers nil, the first time round, is NULL: every writer
		if err := w.conn.QueryRow(ctx, writersQuery, t.Rel.OID, writers).Scan(&left); err != nil {
			return fmt.Errorf("listing the transactions writing to %q: %w", t.Name(), err)
		}
		if len(left) == 0 {
			return nil
		}
		writers = left
		if !logged && time.Since(since) > 5*time.Second && w.opts.Logger != nil {
			w.opts.Logger.Info("backfill waits for transactions writing to the table", "table", t.Name(), "transactions", left)
			logged = true
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pause):
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}
