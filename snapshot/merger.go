package snapshot

import (
	"context"
	"encoding/binary"
	"sync"

	"github.com/pgfeed/pgfeed/event"
)

// Chunk is a run of rows a Walker read between a low and a high watermark.
// Rows belong to the chunk: nothing else refers to their memory.
type Chunk struct {
	// Backfill, Table and No identify the chunk, as in its watermarks.
	Backfill string
	Table    *Table
	No       int
	Rows     []event.Row

	mu        sync.Mutex
	done      chan struct{} // made on first use, so that a Chunk literal works
	completed bool
	result    ChunkResult
}

func newChunk(backfill string, t *Table, no int, rows []event.Row) *Chunk {
	return &Chunk{Backfill: backfill, Table: t, No: no, Rows: rows}
}

// doneChan returns the channel closed by Complete.
func (c *Chunk) doneChan() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *Chunk) ref() chunkRef {
	return chunkRef{backfill: c.Backfill, table: tableName{c.Table.Rel.Schema, c.Table.Rel.Table}, no: c.No}
}

// ChunkResult is what became of a chunk.
type ChunkResult struct {
	// Released counts the rows delivered as read events.
	Released int
	// Position is the commit position of the high watermark, at which the
	// rows were delivered.
	Position event.LSN
	// Retry says the chunk could not be merged safely (its window was not
	// seen whole, or a change in it did not carry the walking key): nothing
	// was delivered and the chunk must be read again.
	Retry bool
}

// Complete records what became of the chunk and wakes the Walker waiting
// for it. Only the first call counts. A ChunkSink calls it once the
// released rows are durable, or at once when none were released.
func (c *Chunk) Complete(r ChunkResult) {
	done := c.doneChan()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.completed {
		return
	}
	c.completed, c.result = true, r
	close(done)
}

// Wait blocks until the chunk is complete or ctx is done.
func (c *Chunk) Wait(ctx context.Context) (ChunkResult, error) {
	select {
	case <-c.doneChan():
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.result, nil
	case <-ctx.Done():
		return ChunkResult{}, context.Cause(ctx)
	}
}

// Merger joins backfilled chunks to the change stream with the DBLog
// watermark method, without I/O. The stream side calls Observe for every
// event, in stream order, and delivers what it returns instead; Walkers
// hand it chunks with AddChunk; the stream side calls Ack with each
// position that every sink has made durable.
//
// Between a chunk's low and high watermark the Merger remembers the walking
// keys of the changes to that table. At the high watermark it delivers the
// chunk's rows whose keys did not change in the window, as read events
// positioned at the high watermark: the rows it leaves out were delivered
// by the stream itself in a state at least as new, so a backfilled row never
// overwrites a newer change. That holds as long as a chunk's rows reflect
// every change the stream delivers before the chunk's low watermark, which
// the Walker makes sure of (see Walker.waitForWriters). It holds at most one
// chunk per table being walked, plus the keys changed in one window.
//
// A Merger is safe for concurrent use.
type Merger struct {
	mu      sync.Mutex
	windows map[tableName]*window
	chunks  map[chunkRef]*Chunk
	// waiting holds released chunks until Ack covers their position, in
	// the order they were released, which is stream order.
	waiting []released
	out     []*event.Event
	// runs are the backfill runs (Walker IDs) of this process. Watermarks of
	// other runs are ones a stopped process left in the WAL: a restarted
	// stream replays them, and they must neither cancel the chunks of a live
	// run nor open windows that no high watermark will ever close.
	runs map[string]bool
}

type released struct {
	chunk  *Chunk
	result ChunkResult
}

// window is the span between a chunk's low and high watermarks.
type window struct {
	ref     chunkRef
	key     []string
	keyIdx  map[*event.Relation][]int
	changed map[string]struct{}
	// truncated: the table was truncated in the window, so no chunk row
	// can be trusted. unknown: a change did not carry the key.
	truncated, unknown bool
	buf                []byte
}

// NewMerger returns an empty Merger.
func NewMerger() *Merger {
	return &Merger{windows: map[tableName]*window{}, chunks: map[chunkRef]*Chunk{}, runs: map[string]bool{}}
}

// Expect registers a backfill run before it writes its first watermark, so
// that the Merger heeds the run's watermarks. NewWalker calls it when its
// ChunkSink is a *Merger; AddChunk registers the run too.
func (m *Merger) Expect(backfill string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[backfill] = true
}

// AddChunk hands the Merger a chunk. A Walker calls it after reading the
// chunk and before writing its high watermark, so the chunk is always
// there when the stream reaches that watermark.
func (m *Merger) AddChunk(c *Chunk) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.runs[c.Backfill] = true
	m.chunks[c.ref()] = c
	return nil
}

// Observe takes the next event of the stream and returns the events to
// deliver in its place, in order: the event itself, or nothing for a
// watermark, or for a high watermark the chunk rows it releases. The
// returned slice is reused by the next call; the events are not.
func (m *Merger) Observe(e *event.Event) []*event.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.out = m.out[:0]
	if IsWatermark(e) {
		if wm, err := ParseWatermark(e.Message.Content); err == nil {
			m.watermark(e, wm)
			return m.out
		}
		// Not one of ours after all: deliver it like any message.
	}
	if len(m.windows) > 0 {
		m.record(e)
	}
	return append(m.out, e)
}

// Ack tells the Merger that every event up to and including pos is durable
// in every sink. Chunks whose rows were released at or before pos complete,
// and their Walkers store their progress.
func (m *Merger) Ack(pos event.LSN) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.waiting {
		if r.result.Position > pos {
			break
		}
		r.chunk.Complete(r.result)
		n++
	}
	clear(m.waiting[:n])
	m.waiting = m.waiting[n:]
}

func (m *Merger) watermark(e *event.Event, wm Watermark) {
	ref := wm.ref()
	if !m.runs[ref.backfill] {
		return // a watermark of a run that is gone, replayed from the WAL
	}
	if wm.Kind == WatermarkLow {
		// One walker reads a table one chunk at a time, so a new low
		// watermark supersedes any window, and any chunk, that a stopped
		// walker left behind; a walker still waiting is told to retry.
		m.windows[ref.table] = &window{ref: ref, key: wm.Key, keyIdx: map[*event.Relation][]int{}, changed: map[string]struct{}{}}
		for r, c := range m.chunks {
			// The chunk of this very window may be here already, when the
			// stream runs behind the walker.
			if r.table == ref.table && r != ref {
				delete(m.chunks, r)
				c.Complete(ChunkResult{Retry: true})
			}
		}
		return
	}
	w := m.windows[ref.table]
	if w != nil && w.ref == ref {
		delete(m.windows, ref.table)
	} else {
		w = nil
	}
	c := m.chunks[ref]
	if c == nil {
		return // a watermark of a run that is gone
	}
	delete(m.chunks, ref)
	if w == nil || w.unknown {
		c.Complete(ChunkResult{Retry: true})
		return
	}
	n := m.release(e, w, c)
	if n == 0 {
		c.Complete(ChunkResult{Position: e.CommitLSN})
		return
	}
	m.waiting = append(m.waiting, released{c, ChunkResult{Released: n, Position: e.CommitLSN}})
}

// release appends to m.out the chunk rows the window did not change.
func (m *Merger) release(hw *event.Event, w *window, c *Chunk) int {
	if w.truncated {
		return 0
	}
	keyed := len(c.Table.Key) > 0
	evs := make([]event.Event, 0, len(c.Rows))
	for i, row := range c.Rows {
		if keyed {
			k, ok := w.appendKey(w.buf[:0], row, c.Table.Key)
			w.buf = k
			if !ok {
				continue
			}
			if _, changed := w.changed[string(k)]; changed {
				continue
			}
		}
		evs = append(evs, event.Event{
			Op:         event.OpRead,
			Schema:     c.Table.Rel.Schema,
			Table:      c.Table.Rel.Table,
			Rel:        c.Table.Rel,
			After:      row,
			LSN:        hw.LSN,
			CommitLSN:  hw.CommitLSN,
			XID:        hw.XID,
			CommitTime: hw.CommitTime,
			Seq:        i + 1,
		})
	}
	for i := range evs {
		m.out = append(m.out, &evs[i])
	}
	return len(evs)
}

// record notes the keys a change touches, when its table has an open window.
func (m *Merger) record(e *event.Event) {
	w := m.windows[tableName{e.Schema, e.Table}]
	if w == nil {
		return
	}
	switch e.Op {
	case event.OpTruncate:
		w.truncated = true
		return
	case event.OpInsert, event.OpUpdate, event.OpDelete:
	default:
		return
	}
	if len(w.key) == 0 {
		return // a table without key: its chunk is the whole table, released as read
	}
	idx, ok := w.keyIdx[e.Rel]
	if !ok {
		idx = columnIndexes(e.Rel, w.key)
		w.keyIdx[e.Rel] = idx
	}
	found := false
	// An update that changes the key sends the old key in Before and the
	// new one in After; both rows are affected.
	for _, row := range []event.Row{e.Before, e.After} {
		if row == nil || idx == nil {
			continue
		}
		k, ok := w.appendKey(w.buf[:0], row, idx)
		w.buf = k
		if ok {
			w.changed[string(k)] = struct{}{}
			found = true
		}
	}
	if !found {
		w.unknown = true
	}
}

// columnIndexes finds the named columns in rel; nil if one is missing.
func columnIndexes(rel *event.Relation, names []string) []int {
	if rel == nil {
		return nil
	}
	idx := make([]int, len(names))
	for i, n := range names {
		if idx[i] = rel.ColumnIndex(n); idx[i] < 0 {
			return nil
		}
	}
	return idx
}

// appendKey encodes the key columns of row, each as its length and text,
// so that distinct keys never encode alike. It reports false when a key
// column is not in the row (not sent, or an unchanged TOASTed value).
func (w *window) appendKey(dst []byte, row event.Row, idx []int) ([]byte, bool) {
	for _, i := range idx {
		if i >= len(row) {
			return dst, false
		}
		v := row[i]
		switch v.State {
		case event.Text:
			dst = binary.AppendUvarint(dst, uint64(len(v.Raw))+1)
			dst = append(dst, v.Raw...)
		case event.Null:
			dst = append(dst, 0)
		default:
			return dst, false
		}
	}
	return dst, true
}
