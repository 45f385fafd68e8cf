package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
)

// ChunkSink takes the chunks a Walker reads. *Merger is the one that joins
// them to the stream. The sink must call Chunk.Complete once the chunk's
// released rows are durable (or at once if it releases none, or asks for a
// retry); the Walker waits for that before it reads the next chunk.
type ChunkSink interface {
	AddChunk(c *Chunk) error
}

// WalkerOptions tune a Walker. The zero value walks in chunks of 1024 rows
// and keeps progress in memory only.
type WalkerOptions struct {
	// Source names the stream the backfill feeds (its slot, say); progress
	// is stored under it.
	Source string
	// ChunkSize is the number of rows per chunk; zero means 1024. Each chunk
	// is one short statement, so a bigger chunk means fewer round trips and
	// a longer window in which changes to its rows are remembered.
	ChunkSize int
	// Progress stores how far each table got; nil means in memory.
	Progress ProgressStore
	// Publication, if set, is the publication the stream reads: a table
	// outside it would never have its changes seen in a window, so it is
	// refused.
	Publication string
	// MaxRetries bounds how often one chunk is read again after its window
	// could not be merged; zero means 10.
	MaxRetries int
	// Types caches type lookups; nil means a fresh cache.
	Types *catalog.Types
	// Logger hears about tables read whole for want of a key, and about
	// chunks that wait long for the transactions writing to their table;
	// nil: silent.
	Logger *slog.Logger
}

// Walker backfills tables while the stream runs: it pages through a table
// by its key (keyset pagination, WHERE (k1, k2) > (...) ORDER BY k1, k2
// LIMIT n), each chunk in its own short statement between a low and a high
// watermark written with pg_logical_emit_message, and hands each chunk to
// a ChunkSink. After each chunk is complete it stores the last key reached,
// so a restarted Walker resumes mid-table. It owns one connection and is
// not safe for concurrent use; run one Walker per table to walk several
// tables at once, never two on the same table.
type Walker struct {
	dsn   string
	sink  ChunkSink
	opts  WalkerOptions
	id    string
	conn  *pgx.Conn
	chunk int
}

// NewWalker returns a Walker that connects to dsn on first use.
func NewWalker(dsn string, sink ChunkSink, opts WalkerOptions) *Walker {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 1024
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 10
	}
	if opts.Progress == nil {
		opts.Progress = &MemoryProgress{}
	}
	if opts.Types == nil {
		opts.Types = catalog.NewTypes()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if e, ok := sink.(interface{ Expect(string) }); ok {
		e.Expect(id) // before the first low watermark, which the stream may see before the chunk
	}
	return &Walker{dsn: dsn, sink: sink, opts: opts, id: id}
}

// ID identifies this Walker's run in its watermarks.
func (w *Walker) ID() string { return w.id }

// Close closes the Walker's connection.
func (w *Walker) Close(ctx context.Context) error {
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close(ctx)
	w.conn = nil
	return err
}

// Backfill reads table to its end, resuming after the stored progress, and
// returns the progress reached. A table already marked done is not read
// again: to backfill it anew, remove its progress from the store first.
//
// A table without a usable key is read whole, in one statement, as a single
// chunk, and a *NoKeyError is logged: rows of such a table have no identity,
// so the Merger cannot tell which ones the window changed and releases them
// all, and the chunk holds the whole table in memory.
func (w *Walker) Backfill(ctx context.Context, table string) (Progress, error) {
	// A cancelled statement closes the connection; a later call reconnects.
	if w.conn == nil || w.conn.IsClosed() {
		conn, err := Connect(ctx, w.dsn)
		if err != nil {
			return Progress{}, fmt.Errorf("backfilling %q: %w", table, err)
		}
		w.conn = conn
	}
	t, err := Describe(ctx, w.conn, w.opts.Types, table)
	if err != nil {
		return Progress{}, err
	}
	if err := w.checkPublication(ctx, t); err != nil {
		return Progress{}, err
	}
	p, _, err := w.opts.Progress.Progress(w.opts.Source, t.Name())
	if err != nil {
		return Progress{}, fmt.Errorf("backfilling %q: %w", t.Name(), err)
	}
	if p.Done {
		return p, nil
	}
	if err := t.NoKey(); err != nil {
		if w.opts.Logger != nil {
			w.opts.Logger.Warn(err.Error(), "table", t.Name())
		}
		return w.walkWhole(ctx, t)
	}
	return w.walk(ctx, t, p)
}

func (w *Walker) checkPublication(ctx context.Context, t *Table) error {
	if w.opts.Publication == "" {
		return nil
	}
	// The row filter is read through to_jsonb so that the query also runs
	// on PostgreSQL 14 and before, where the column does not exist.
	var filter *string
	err := w.conn.QueryRow(ctx, `SELECT to_jsonb(p) ->> 'rowfilter' FROM pg_catalog.pg_publication_tables p
		WHERE pubname = $1 AND schemaname = $2 AND tablename = $3`,
		w.opts.Publication, t.Rel.Schema, t.Rel.Table).Scan(&filter)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("checking publication %q: %w", w.opts.Publication, err)
	}
	if filter != nil {
		t.Filter = *filter
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("table %q is not in publication %q, so its changes are not streamed: run ALTER PUBLICATION %s ADD TABLE %s",
			t.Name(), w.opts.Publication, pgx.Identifier{w.opts.Publication}.Sanitize(), t.Ident().Sanitize())
	}
	return nil
}

// walk pages through a keyed table from the stored progress.
func (w *Walker) walk(ctx context.Context, t *Table, p Progress) (Progress, error) {
	var last [][]byte
	if len(p.LastKey) > 0 {
		var err error
		if last, err = decodeKey(p.LastKey, len(t.Key)); err != nil {
			return p, fmt.Errorf("resuming backfill of %q: %w", t.Name(), err)
		}
	}
	oids := make([]uint32, len(t.Key))
	for i, k := range t.Key {
		oids[i] = t.Rel.Columns[k].Type.OID
	}
	first, after := chunkQueries(t, w.opts.ChunkSize)
	retries := 0
	for {
		sql, args := first, [][]byte(nil)
		if last != nil {
			sql, args = after, last
		}
		c, err := w.readChunk(ctx, t, func() ([]event.Row, error) {
			return readRows(ctx, w.conn, sql, args, oids, len(t.Rel.Columns), w.opts.ChunkSize)
		})
		if err != nil {
			return p, err
		}
		res, err := c.Wait(ctx)
		if err != nil {
			return p, fmt.Errorf("backfilling %q: waiting for chunk %d: %w", t.Name(), c.No, err)
		}
		if res.Retry {
			if retries++; retries > w.opts.MaxRetries {
				return p, fmt.Errorf("backfilling %q: the chunk after key %s could not be merged %d times: the stream must pass every event, logical messages included, to the Merger, and the table's replica identity must cover its key %v",
					t.Name(), p.LastKey, retries, t.KeyNames())
			}
			continue
		}
		retries = 0
		n := len(c.Rows)
		if n > 0 {
			lastRow := c.Rows[n-1]
			last = make([][]byte, len(t.Key))
			for i, k := range t.Key {
				last[i] = lastRow[k].Raw
			}
			p.LastKey = encodeKey(last)
		}
		p.Rows += int64(n)
		p.Done = n < w.opts.ChunkSize
		if err := w.opts.Progress.SetProgress(w.opts.Source, t.Name(), p); err != nil {
			return p, fmt.Errorf("backfilling %q: %w", t.Name(), err)
		}
		if p.Done {
			return p, nil
		}
	}
}

// walkWhole reads a table without key in one statement, as one chunk.
func (w *Walker) walkWhole(ctx context.Context, t *Table) (Progress, error) {
	for retries := 0; ; retries++ {
		c, err := w.readChunk(ctx, t, func() ([]event.Row, error) {
			var rows []event.Row
			_, err := ReadTable(ctx, w.conn, t, ReadOptions{}, func(e *event.Event) error {
				rows = append(rows, cloneRow(e.After))
				return nil
			})
			return rows, err
		})
		if err != nil {
			return Progress{}, err
		}
		res, err := c.Wait(ctx)
		if err != nil {
			return Progress{}, fmt.Errorf("backfilling %q: waiting for its rows to be delivered: %w", t.Name(), err)
		}
		if res.Retry && retries < w.opts.MaxRetries {
			continue
		}
		if res.Retry {
			return Progress{}, fmt.Errorf("backfilling %q: could not be merged %d times", t.Name(), retries+1)
		}
		p := Progress{Rows: int64(len(c.Rows)), Done: true}
		if err := w.opts.Progress.SetProgress(w.opts.Source, t.Name(), p); err != nil {
			return p, fmt.Errorf("backfilling %q: %w", t.Name(), err)
		}
		return p, nil
	}
}

// readChunk writes the low watermark, waits for the transactions writing
// to the table (see waitForWriters), reads rows, hands the chunk to the sink
// and writes the high watermark, in that order: the rows must reflect every
// change committed before the low watermark, and the chunk must be in the
// sink before the stream can reach its high watermark.
func (w *Walker) readChunk(ctx context.Context, t *Table, read func() ([]event.Row, error)) (*Chunk, error) {
	w.chunk++
	wm := Watermark{Backfill: w.id, Schema: t.Rel.Schema, Table: t.Rel.Table, Chunk: w.chunk, Kind: WatermarkLow, Key: t.KeyNames()}
	if err := w.emit(ctx, wm); err != nil {
		return nil, fmt.Errorf("backfilling %q: %w", t.Name(), err)
	}
	if err := w.waitForWriters(ctx, t); err != nil {
		return nil, fmt.Errorf("backfilling %q: %w", t.Name(), err)
	}
	rows, err := read()
	if err != nil {
		return nil, fmt.Errorf("backfilling %q: reading chunk %d: %w", t.Name(), w.chunk, err)
	}
	c := newChunk(w.id, t, w.chunk, rows)
	if err := w.sink.AddChunk(c); err != nil {
		return nil, fmt.Errorf("backfilling %q: handing over chunk %d: %w", t.Name(), w.chunk, err)
	}
	wm.Kind, wm.Key = WatermarkHigh, nil
	if err := w.emit(ctx, wm); err != nil {
		return nil, fmt.Errorf("backfilling %q: %w", t.Name(), err)
	}
	return c, nil
}

// emit writes a watermark to the WAL in its own transaction.
func (w *Walker) emit(ctx context.Context, wm Watermark) error {
	content, err := json.Marshal(wm)
	if err != nil {
		return fmt.Errorf("encoding %s watermark: %w", wm.Kind, err)
	}
	if _, err := w.conn.Exec(ctx, "SELECT pg_logical_emit_message(true, $1, $2::text)", WatermarkPrefix, string(content)); err != nil {
		return fmt.Errorf("writing %s watermark of chunk %d: %w", wm.Kind, wm.Chunk, err)
	}
	return nil
}

// chunkQueries returns the statements for the first chunk and for the
// chunks after a key. Key values travel as text parameters typed with the
// key columns' type OIDs, so PostgreSQL parses them with the columns' own
// input functions and compares them in the index order.
func chunkQueries(t *Table, size int) (first, after string) {
	var keys, params strings.Builder
	for i, k := range t.Key {
		if i > 0 {
			keys.WriteString(", ")
			params.WriteString(", ")
		}
		keys.WriteString(pgx.Identifier{t.Rel.Columns[k].Name}.Sanitize())
		params.WriteString("$" + strconv.Itoa(i+1))
	}
	sel := "SELECT " + columnList(t) + " FROM " + t.Ident().Sanitize()
	tail := " ORDER BY " + keys.String() + " LIMIT " + strconv.Itoa(size)
	after = " WHERE (" + keys.String() + ") > (" + params.String() + ")"
	if t.Filter != "" {
		// The filter is the publication's, as PostgreSQL printed it.
		return sel + " WHERE (" + t.Filter + ")" + tail, sel + after + " AND (" + t.Filter + ")" + tail
	}
	return sel + tail, sel + after + tail
}

// readRows runs a query with text parameters and returns its rows in text
// form, each row's values sharing one allocation.
func readRows(ctx context.Context, conn *pgx.Conn, sql string, args [][]byte, oids []uint32, ncols, sizeHint int) ([]event.Row, error) {
	var paramOIDs []uint32
	if len(args) > 0 {
		paramOIDs = oids
	}
	rr := conn.PgConn().ExecParams(ctx, sql, args, paramOIDs, nil, nil)
	rows := make([]event.Row, 0, sizeHint)
	for rr.NextRow() {
		vals := rr.Values()
		if len(vals) != ncols {
			rr.Close()
			return nil, fmt.Errorf("reading rows: %d columns, want %d", len(vals), ncols)
		}
		n := 0
		for _, v := range vals {
			n += len(v)
		}
		buf := make([]byte, 0, n)
		row := make(event.Row, ncols)
		for i, v := range vals {
			if v == nil {
				row[i].State = event.Null
				continue
			}
			start := len(buf)
			buf = append(buf, v...)
			row[i] = event.Value{State: event.Text, Raw: buf[start:len(buf):len(buf)]}
		}
		rows = append(rows, row)
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return rows, nil
}

// encodeKey stores a key as a JSON array of its columns' text forms.
func encodeKey(key [][]byte) json.RawMessage {
	s := make([]string, len(key))
	for i, k := range key {
		s[i] = string(k)
	}
	b, _ := json.Marshal(s) // strings always marshal
	return b
}

func decodeKey(raw json.RawMessage, n int) ([][]byte, error) {
	var s []string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decoding stored key %s: %w", raw, err)
	}
	if len(s) != n {
		return nil, fmt.Errorf("stored key %s does not match the table's key of %d columns: was the key changed? Remove the table's progress to start over", raw, n)
	}
	key := make([][]byte, n)
	for i := range s {
		key[i] = []byte(s[i])
	}
	return key, nil
}
