package stream

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfeed/pgfeed/source"
)

// The definition of each v2 stream (its table globs, whether it began with
// a snapshot) is kept beside its slot, in the database, in pgfeed's own
// schema: a restarted server, or another one on the same database, serves
// the stream as it was created. The slot itself keeps the position (the
// last ack). Not the publication's comment: pgfeed marks the publications
// it owns with it. A table rather than a file: the definition stays with
// the slot it describes, whichever host serves it, and is changed in the
// same database as the slot is.

// StreamTable holds the v2 streams' definitions, keyed by slot name.
const StreamTable = source.OwnSchema + ".streams"

// streamStore reads and writes StreamTable.
type streamStore struct {
	pool *pgxpool.Pool

	mu    sync.Mutex
	ready bool // the table exists
}

type streamDef struct {
	tables   []string
	snapshot bool
}

// ensure creates the schema and table once per process.
func (st *streamStore) ensure(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready {
		return nil
	}
	for _, stmt := range []string{
		"CREATE SCHEMA IF NOT EXISTS " + source.OwnSchema,
		`CREATE TABLE IF NOT EXISTS ` + StreamTable + ` (
			slot text PRIMARY KEY,
			tables text[] NOT NULL,
			snapshot boolean NOT NULL,
			created_at timestamptz NOT NULL DEFAULT now())`,
		"REVOKE ALL ON " + StreamTable + " FROM PUBLIC",
	} {
		if _, err := st.pool.Exec(ctx, stmt); err != nil {
			return source.ExplainSQL(err, "preparing "+StreamTable+" (the role needs CREATE on the database, or create schema "+source.OwnSchema+" for it)")
		}
	}
	st.ready = true
	return nil
}

// put records the definition of the stream of slot.
func (st *streamStore) put(ctx context.Context, slot string, d streamDef) error {
	if err := st.ensure(ctx); err != nil {
		return err
	}
	_, err := st.pool.Exec(ctx, `INSERT INTO `+StreamTable+` (slot, tables, snapshot) VALUES ($1, $2, $3)
		ON CONFLICT (slot) DO UPDATE SET tables = excluded.tables, snapshot = excluded.snapshot, created_at = now()`, slot, d.tables, d.snapshot)
	if err != nil {
		return source.ExplainSQL(err, "storing the definition of stream slot "+slot)
	}
	return nil
}

// get returns the definition of the stream of slot; false when none is
// stored (a stream made before definitions were kept).
func (st *streamStore) get(ctx context.Context, slot string) (streamDef, bool, error) {
	var d streamDef
	err := st.pool.QueryRow(ctx, `SELECT tables, snapshot FROM `+StreamTable+` WHERE slot = $1`, slot).Scan(&d.tables, &d.snapshot)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || isUndefinedTable(err):
		return d, false, nil
	case err != nil:
		return d, false, source.ExplainSQL(err, "reading the definition of stream slot "+slot)
	}
	return d, true, nil
}

// all returns every stored definition by slot.
func (st *streamStore) all(ctx context.Context) (map[string]streamDef, error) {
	rows, err := st.pool.Query(ctx, `SELECT slot, tables, snapshot FROM `+StreamTable)
	if isUndefinedTable(err) {
		return nil, nil
	}
	if err != nil {
		return nil, source.ExplainSQL(err, "reading the stream definitions")
	}
	defs := map[string]streamDef{}
	for rows.Next() {
		var slot string
		var d streamDef
		if err := rows.Scan(&slot, &d.tables, &d.snapshot); err != nil {
			return nil, err
		}
		defs[slot] = d
	}
	if err := rows.Err(); isUndefinedTable(err) {
		return nil, nil
	} else if err != nil {
		return nil, source.ExplainSQL(err, "reading the stream definitions")
	}
	return defs, nil
}

// remove forgets the definition of the stream of slot.
func (st *streamStore) remove(ctx context.Context, slot string) error {
	_, err := st.pool.Exec(ctx, `DELETE FROM `+StreamTable+` WHERE slot = $1`, slot)
	if err != nil && !isUndefinedTable(err) {
		return source.ExplainSQL(err, "forgetting the definition of stream slot "+slot)
	}
	return nil
}

// isUndefinedTable reports PostgreSQL's 42P01: the table (or its schema)
// was never created, so nothing was stored.
func isUndefinedTable(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && (pe.SQLState() == "42P01" || pe.SQLState() == "3F000")
}
