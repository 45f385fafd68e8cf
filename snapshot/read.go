package snapshot

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
)

// ReadOptions tune a whole-table read.
type ReadOptions struct {
	// Position is the LSN the read is consistent with, such as the
	// consistent point of the slot whose snapshot is read. It becomes LSN
	// and CommitLSN of every event. Zero when unknown.
	Position event.LSN
	// SeqBase is added to each row's number to make its Seq: reads of
	// several tables at one Position need seqs of their own (see
	// TableSeqBase). Zero numbers rows from 1.
	SeqBase int
}

// seqBits is the share of Seq that numbers the rows of one table in a
// snapshot of several; the bits above it number the table.
const seqBits = 32

// MaxTableRows is the most rows one table of a multi-table snapshot can
// give: beyond it, its seqs would run into the next table's. It is also
// the highest seq of a transaction's changes that reads never take.
const MaxTableRows = 1<<seqBits - 1

// TableSeqBase returns the SeqBase of the table at ordinal in a snapshot
// of several tables: each table owns the seqs from ordinal<<32 + 1, so
// that every read of the snapshot has its own commit_lsn and seq (DESIGN.md,
// Event identity) however the tables are read in parallel. ReadSnapshot and
// Export number tables in name order, so the same tables get the same seqs
// again, from ordinal 1 when the snapshot has a position in the WAL (where
// a transaction can commit too, its changes numbered from 1), else from 0.
// Up to 2^21 tables keep every seq an exact JSON number (below 2^53).
func TableSeqBase(ordinal int) int { return ordinal << seqBits }

// ReadTable reads every row of t with COPY ... TO STDOUT in text format and
// calls fn with a read event for each, Seq counting rows from
// opts.SeqBase+1. It streams:
// memory stays at one row whatever the table's size. It returns the number
// of rows read.
//
// The event and its row are reused for the next row: they are valid only
// during fn (use Clone to keep one). conn should come from Connect, so that
// values have the text form of the replication stream; to read inside a
// snapshot, start the transaction first. An error from fn stops the COPY,
// which closes conn, since the protocol has no way to abandon a COPY midway.
func ReadTable(ctx context.Context, conn *pgx.Conn, t *Table, opts ReadOptions, fn func(*event.Event) error) (int64, error) {
	ev := event.Event{
		Op:        event.OpRead,
		Schema:    t.Rel.Schema,
		Table:     t.Rel.Table,
		Rel:       t.Rel,
		LSN:       opts.Position,
		CommitLSN: opts.Position,
	}
	w := &copyRowWriter{ncols: len(t.Rel.Columns)}
	w.fn = func(row event.Row) error {
		if opts.SeqBase != 0 && w.rows > MaxTableRows {
			return fmt.Errorf("more than %d rows: too many for one table of a multi-table snapshot, whose reads need seqs of their own; read the table alone", MaxTableRows)
		}
		ev.Seq = opts.SeqBase + int(w.rows)
		ev.After = row
		return fn(&ev)
	}
	if _, err := conn.PgConn().CopyTo(ctx, w, copyQuery(t)); err != nil {
		return w.rows, fmt.Errorf("reading table %q: %w", t.Name(), err)
	}
	if err := w.finish(); err != nil {
		return w.rows, fmt.Errorf("reading table %q: %w", t.Name(), err)
	}
	return w.rows, nil
}

// copyQuery returns the COPY statement for the columns of t. A plain table
// is copied directly, which skips the executor; a partitioned table needs
// the SELECT form to read its partitions, and so do an empty column list
// and a row filter.
func copyQuery(t *Table) string {
	cols := columnList(t)
	if t.Filter != "" {
		return "COPY (SELECT " + cols + " FROM " + t.Ident().Sanitize() + " WHERE (" + t.Filter + ")) TO STDOUT"
	}
	if t.partitioned || len(t.Rel.Columns) == 0 {
		return "COPY (SELECT " + cols + " FROM " + t.Ident().Sanitize() + ") TO STDOUT"
	}
	return "COPY " + t.Ident().Sanitize() + " (" + cols + ") TO STDOUT"
}

// columnList returns the quoted column names, comma separated.
func columnList(t *Table) string {
	var b strings.Builder
	for i, c := range t.Rel.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pgx.Identifier{c.Name}.Sanitize())
	}
	return b.String()
}

// Clone returns a copy of e that owns its row values, for keeping an event
// that ReadTable or ReadSnapshot will reuse. The values share one allocation.
func Clone(e *event.Event) *event.Event {
	c := *e
	c.Before = cloneRow(e.Before)
	c.After = cloneRow(e.After)
	return &c
}

func cloneRow(r event.Row) event.Row {
	if r == nil {
		return nil
	}
	n := 0
	for _, v := range r {
		n += len(v.Raw)
	}
	buf := make([]byte, 0, n)
	out := make(event.Row, len(r))
	for i, v := range r {
		out[i].State = v.State
		if v.Raw != nil {
			start := len(buf)
			buf = append(buf, v.Raw...)
			out[i].Raw = buf[start:len(buf):len(buf)]
		}
	}
	return out
}
