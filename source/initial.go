package source

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// initialSnapshot is the snapshot a new slot exported, to be read before
// streaming starts.
type initialSnapshot struct {
	name string
	at   event.LSN
	// time is when the slot exported the snapshot: the commit time its
	// reads carry, the moment the rows they hold were current.
	time    time.Time
	tables  []string
	filters map[string]string // the publication's row filters by "schema.table"
}

// snapshotTables lists the tables an initial snapshot reads, quoted:
// those of Tables (minus Exclude), or else every table of the publication.
// Each row is read once, partitioned tables included.
func snapshotTables(ctx context.Context, meta *pgx.Conn, cfg *Config) ([]string, error) {
	var tables []tableName
	if !cfg.selection.everything() {
		var err error
		if tables, err = resolveTables(ctx, meta, cfg.selection); err != nil {
			return nil, err
		}
	} else {
		// pg_publication_tables names each row's table once: the roots of
		// partitioned tables under publish_via_partition_root, the leaf
		// partitions otherwise.
		in, err := publishedTables(ctx, meta, cfg.Publication)
		if err != nil {
			return nil, err
		}
		for t := range in {
			if cfg.selection.match(t.schema, t.table) {
				tables = append(tables, t)
			}
		}
		sort.Slice(tables, func(i, j int) bool { return tables[i].String() < tables[j].String() })
	}
	names := make([]string, len(tables))
	for i, t := range tables {
		// Quoted, so that snapshot.Describe takes the names as they are.
		names[i] = t.sql()
	}
	return names, nil
}

// publicationFilters returns the row filters of a publication's tables
// by "schema.table", as PostgreSQL prints them, so that snapshots and
// backfills read exactly the rows the stream publishes. The column is read
// through to_jsonb: it does not exist before PostgreSQL 15.
func publicationFilters(ctx context.Context, conn *pgx.Conn, pub string) (map[string]string, error) {
	rows, err := conn.Query(ctx, `SELECT schemaname, tablename, to_jsonb(p) ->> 'rowfilter'
		FROM pg_publication_tables p WHERE pubname = $1 AND to_jsonb(p) ->> 'rowfilter' IS NOT NULL`, pub)
	if err != nil {
		return nil, explainSQL(err, "reading the row filters of publication "+pub)
	}
	out := map[string]string{}
	for rows.Next() {
		var t tableName
		var f string
		if err := rows.Scan(&t.schema, &t.table, &f); err != nil {
			return nil, explainSQL(err, "reading the row filters of publication "+pub)
		}
		out[t.String()] = f
	}
	return out, explainIf(rows.Err(), "reading the row filters of publication "+pub)
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
		snapshot.SnapshotOptions{Workers: l.s.cfg.SnapshotWorkers, Position: snap.at, Types: l.types, Filters: snap.filters},
		func(e *event.Event) error {
			e = snapshot.Clone(e) // the event is only valid during this call
			e.CommitTime = snap.time
			mu.Lock()
			defer mu.Unlock()
			l.batch = append(l.batch, e)
			l.batchBytes += eventSize(e)
			return push(false)
		})
	if err != nil {
		return fmt.Errorf("reading the initial snapshot: %w", err)
	}
	// The end of the snapshot: Next passes it on with Transactions, and
	// notes it either way, so that an ack after it marks the snapshot done.
	l.batch = append(l.batch, &event.Event{Op: event.OpCommit, LSN: snap.at, CommitLSN: snap.at, EndLSN: snap.at, CommitTime: snap.time})
	l.s.log.Info("initial snapshot read", "rows", st.Rows, "tables", st.Tables, "elapsed", st.Elapsed)
	return push(true)
}
