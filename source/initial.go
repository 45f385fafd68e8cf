package source

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// initialSnapshot is the snapshot a new slot exported, to be read before
// streaming starts.
type initialSnapshot struct {
	name   string
	at     event.LSN
	tables []string
}

// snapshotTables lists the tables an initial snapshot reads: those of
// Tables (minus Exclude), or else every table of the publication.
func snapshotTables(ctx context.Context, meta *pgx.Conn, cfg *Config) ([]string, error) {
	var tables []tableName
	if len(cfg.Tables) > 0 {
		var err error
		if tables, err = resolveTables(ctx, meta, cfg.Tables, cfg.Exclude); err != nil {
			return nil, err
		}
	} else {
		rows, err := meta.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", cfg.Publication)
		if err != nil {
			return nil, explainSQL(err, "listing the publication's tables")
		}
		all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableName, error) {
			var t tableName
			return t, r.Scan(&t.schema, &t.table)
		})
		if err != nil {
			return nil, explainSQL(err, "listing the publication's tables")
		}
		for _, t := range all {
			if !matchAny(cfg.Exclude, t) {
				tables = append(tables, t)
			}
		}
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		// Quoted, so that snapshot.Describe takes the names as they are.
		names[i] = t.sql()
	}
	return names, nil
}

// readSnapshot delivers every row of the snapshot as read events, then a
// commit event at the consistent point when transactions are asked for.
// It runs before START_REPLICATION: no status update may be sent yet.
func (l *loop) readSnapshot(ctx context.Context, snap *initialSnapshot) error {
	l.s.log.Info("reading initial snapshot", "snapshot", snap.name, "tables", len(snap.tables), "at", snap.at)
	var mu sync.Mutex // workers read tables in parallel
	push := func(force bool) error {
		if len(l.batch) == 0 || (!force && len(l.batch) < maxBatchEvents && l.batchBytes < maxBatchBytes) {
			return nil
		}
		select {
		case l.s.out <- l.batch:
			l.handedOver()
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	st, err := snapshot.ReadSnapshot(ctx, l.s.cfg.DSN, snap.name, snap.tables,
		snapshot.SnapshotOptions{Workers: l.s.cfg.SnapshotWorkers, Position: snap.at, Types: l.types},
		func(e *event.Event) error {
			e = snapshot.Clone(e) // the event is only valid during this call
			mu.Lock()
			defer mu.Unlock()
			l.batch = append(l.batch, e)
			l.batchBytes += eventSize(e)
			return push(false)
		})
	if err != nil {
		return fmt.Errorf("reading the initial snapshot: %w", err)
	}
	if l.s.cfg.Transactions {
		l.batch = append(l.batch, &event.Event{Op: event.OpCommit, LSN: snap.at, CommitLSN: snap.at, EndLSN: snap.at})
	}
	l.s.log.Info("initial snapshot read", "rows", st.Rows, "tables", st.Tables, "elapsed", st.Elapsed)
	return push(true)
}
