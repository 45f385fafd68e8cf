package snapshot

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"golang.org/x/sync/errgroup"
)

// SnapshotOptions tune ReadSnapshot.
type SnapshotOptions struct {
	// Workers is the number of connections reading tables in parallel, all
	// in the same snapshot. Zero means one per table, at most 4.
	Workers int
	// Position is the LSN the snapshot is consistent with: the consistent
	// point CREATE_REPLICATION_SLOT returned with the snapshot. Every event
	// carries it as LSN and CommitLSN, and a Seq of its own among the
	// snapshot's reads and the changes of a transaction committed at that
	// very position (see TableSeqBase). Zero when unknown.
	Position event.LSN
	// Types caches type lookups; nil means a fresh cache.
	Types *catalog.Types
	// Filters maps "schema.table" to the row filter of that table (see
	// Table.Filter), as PostgreSQL printed it.
	Filters map[string]string
}

// ReadSnapshot reads tables inside an exported snapshot (the name
// pg_export_snapshot() or CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT
// returned) and calls fn with a read event for every row. Each worker opens
// its own connection and runs BEGIN ISOLATION LEVEL REPEATABLE READ; SET
// TRANSACTION SNAPSHOT, so all of them see exactly the rows the snapshot
// saw, and nothing committed after it.
//
// All tables are described before any row is read, so that a missing table
// or grant fails at once. fn is called concurrently from up to Workers
// goroutines; the events of one table come from one goroutine, in order.
// An event is valid only during fn (see ReadTable). The first error, from a
// worker or from fn, cancels the others. The exporting transaction must
// stay open until ReadSnapshot returns.
func ReadSnapshot(ctx context.Context, dsn, snapshotName string, tables []string, opts SnapshotOptions, fn func(*event.Event) error) (Stats, error) {
	if snapshotName == "" {
		return Stats{}, fmt.Errorf("reading snapshot: no snapshot name given")
	}
	r := tableReader{
		dsn:      dsn,
		snapshot: snapshotName,
		workers:  opts.Workers,
		types:    opts.Types,
		read:     ReadOptions{Position: opts.Position},
		filters:  opts.Filters,
		fn:       func(_ int, e *event.Event) error { return fn(e) },
	}
	return r.run(ctx, tables)
}

// tableReader reads whole tables over parallel connections that share one
// snapshot. With no snapshot name and more than one worker, the first
// connection exports one for the others.
type tableReader struct {
	dsn      string
	snapshot string
	workers  int
	types    *catalog.Types
	read     ReadOptions
	fn       func(worker int, e *event.Event) error
	// described, if set, is told the tables before any row is read.
	described func([]*Table)
	// done, if set, is called after each table has been read.
	done func(t *Table, rows int64)
	// filters are row filters by table name.
	filters map[string]string
}

func (r *tableReader) run(ctx context.Context, names []string) (stats Stats, err error) {
	start := time.Now()
	defer func() { stats.Elapsed = time.Since(start) }()
	if r.types == nil {
		r.types = catalog.NewTypes()
	}
	workers := r.workers
	if workers <= 0 {
		workers = min(len(names), 4)
	}
	workers = max(min(workers, len(names)), 1)

	first, err := r.begin(ctx, r.snapshot)
	if err != nil {
		return Stats{}, err
	}
	conns := []*pgx.Conn{first}
	defer func() {
		for _, c := range conns {
			c.Close(context.WithoutCancel(ctx))
		}
	}()

	tables, err := describeAll(ctx, first, r.types, names)
	if err != nil {
		return Stats{}, err
	}
	for _, t := range tables {
		t.Filter = r.filters[t.Name()]
	}
	if r.described != nil {
		r.described(tables)
	}
	snapshot := r.snapshot
	if snapshot == "" && workers > 1 {
		if err := first.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snapshot); err != nil {
			return Stats{}, fmt.Errorf("exporting snapshot: %w", err)
		}
	}
	for len(conns) < workers {
		c, err := r.begin(ctx, snapshot)
		if err != nil {
			return Stats{}, err
		}
		conns = append(conns, c)
	}

	// Reads of several tables share one position: each table gets its own
	// range of seqs, by its place in name order. A position in the WAL (a
	// slot's consistent point) is shared with the transaction that may
	// commit right there, whose changes number from 1: the reads then
	// leave it the first range.
	seqBase := map[*Table]int{}
	firstTable := 0
	if r.read.Position != 0 {
		firstTable = 1
	}
	if len(tables) > 1 || firstTable > 0 {
		byName := append([]*Table(nil), tables...)
		sort.Slice(byName, func(i, j int) bool { return byName[i].Name() < byName[j].Name() })
		for i, t := range byName {
			seqBase[t] = TableSeqBase(firstTable + i)
		}
	}
	// Biggest tables first, so that parallel workers finish close together.
	sort.SliceStable(tables, func(i, j int) bool { return tables[i].EstimatedRows > tables[j].EstimatedRows })
	queue := make(chan *Table, len(tables))
	for _, t := range tables {
		queue <- t
	}
	close(queue)

	var mu sync.Mutex
	stats.Tables = len(tables)
	g, gctx := errgroup.WithContext(ctx)
	for i, conn := range conns {
		g.Go(func() error {
			for t := range queue {
				opts := r.read
				opts.SeqBase = seqBase[t]
				n, err := ReadTable(gctx, conn, t, opts, func(e *event.Event) error { return r.fn(i, e) })
				mu.Lock()
				stats.Rows += n
				mu.Unlock()
				if err != nil {
					return err
				}
				if r.done != nil {
					r.done(t, n)
				}
			}
			// Read only: ending the transaction cannot lose anything, but
			// commit so that the snapshot is released promptly.
			if _, err := conn.Exec(gctx, "COMMIT"); err != nil {
				return fmt.Errorf("ending snapshot transaction: %w", err)
			}
			return nil
		})
	}
	err = g.Wait()
	return stats, err
}

// begin connects and starts a repeatable-read transaction, in the given
// exported snapshot when there is one.
func (r *tableReader) begin(ctx context.Context, snapshot string) (*pgx.Conn, error) {
	conn, err := Connect(ctx, r.dsn)
	if err != nil {
		return nil, err
	}
	if err := beginSnapshot(ctx, conn, snapshot); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// beginSnapshot starts a read-only repeatable-read transaction on conn and,
// when snapshot is not empty, switches it to that exported snapshot.
func beginSnapshot(ctx context.Context, conn *pgx.Conn, snapshot string) error {
	if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
		return fmt.Errorf("starting snapshot transaction: %w", err)
	}
	if snapshot == "" {
		return nil
	}
	// SET TRANSACTION SNAPSHOT takes no parameters; the name is checked to
	// be what PostgreSQL generates (hex digits and dashes) before quoting.
	if !validSnapshotName(snapshot) {
		return fmt.Errorf("setting transaction snapshot: %q is not a snapshot name (want the value of pg_export_snapshot(), like 00000003-0000001B-1)", snapshot)
	}
	if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
		return fmt.Errorf("setting transaction snapshot %q (is the exporting transaction still open?): %w", snapshot, err)
	}
	return nil
}

func validSnapshotName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) && s[i] != '-' {
			return false
		}
	}
	return true
}

// describeAll describes every named table once, in the order given.
func describeAll(ctx context.Context, conn *pgx.Conn, types *catalog.Types, names []string) ([]*Table, error) {
	seen := map[string]bool{}
	var tables []*Table
	for _, name := range names {
		t, err := Describe(ctx, conn, types, name)
		if err != nil {
			return nil, err
		}
		if seen[t.Name()] {
			continue
		}
		seen[t.Name()] = true
		tables = append(tables, t)
	}
	return tables, nil
}
