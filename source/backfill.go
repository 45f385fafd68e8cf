package source

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// BackfillRequestPrefix is the prefix of the logical message that asks the
// running streams of a slot to backfill tables (`pgfeed backfill`). Going
// through the WAL, the request reaches whichever process streams the slot,
// now or after a restart, and is acked like any change.
const BackfillRequestPrefix = "pgfeed.backfill-request"

// backfillQueueKey is where the tables still to backfill are kept in the
// progress store, so that a restarted stream resumes them.
const backfillQueueKey = "pgfeed.backfill-queue"

// backfillRequestKey is where the id of the last request taken is kept
// (as Rows), so that a request redelivered after a restart is not taken
// again once its backfill is queued.
const backfillRequestKey = "pgfeed.backfill-request"

// backfiller walks requested tables one after the other while the stream
// runs, handing chunks to the merger that joins them to the stream.
type backfiller struct {
	cfg    *Config
	merger *snapshot.Merger
	store  snapshot.ProgressStore

	mu      sync.Mutex
	queue   []string // tables still to backfill, in order
	running bool
	// snapshot is set while the backfills finish an interrupted initial
	// snapshot; failed notes a table that could not be read, so that the
	// snapshot stays pending.
	snapshot, failed bool
	wg               sync.WaitGroup
	ctx              context.Context
	cancel           context.CancelFunc
}

func newBackfiller(cfg *Config, merger *snapshot.Merger) *backfiller {
	store := cfg.BackfillProgress
	if store == nil {
		store = &snapshot.MemoryProgress{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &backfiller{cfg: cfg, merger: merger, store: store, ctx: ctx, cancel: cancel}
}

// resume starts the backfills a previous run left unfinished.
func (b *backfiller) resume() error {
	p, ok, err := b.store.Progress(b.cfg.Slot, backfillQueueKey)
	if err != nil {
		return fmt.Errorf("reading the backfill queue: %w", err)
	}
	if !ok || len(p.LastKey) == 0 {
		return nil
	}
	var tables []string
	if err := json.Unmarshal(p.LastKey, &tables); err != nil {
		return fmt.Errorf("reading the backfill queue: %w", err)
	}
	b.mu.Lock()
	b.queue = tables
	b.mu.Unlock()
	if len(tables) > 0 {
		b.cfg.Logger.Info("resuming backfill", "tables", tables)
		b.start()
	}
	return nil
}

// request queues tables, given as SQL names (quoted where needed), for a
// backfill from their beginning. A name that is no table of the database
// is reported, and nothing is queued.
func (b *backfiller) request(ctx context.Context, tables []string) error {
	conn, err := Connect(ctx, b.cfg.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	resolved := make([]tableName, len(tables))
	for i, name := range tables {
		if resolved[i], err = lookupTableName(ctx, conn, name); err != nil {
			return &UserError{Msg: "backfill: " + err.Error(), Err: err}
		}
	}
	b.queueTables(resolved)
	return nil
}

// requestFromWAL takes the backfill request of a message, once.
func (b *backfiller) requestFromWAL(ctx context.Context, id int64) {
	last, _, err := b.store.Progress(b.cfg.Slot, backfillRequestKey)
	if err != nil {
		b.cfg.Logger.Warn("reading the last backfill request", "err", err)
	}
	if id <= last.Rows {
		return // taken before a restart; its tables are in the stored queue
	}
	conn, err := Connect(ctx, b.cfg.DSN)
	if err != nil {
		b.cfg.Logger.Error("backfill request not taken: connecting", "id", id, "err", err)
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	names, err := loadRequest(ctx, conn, id)
	if err != nil {
		b.cfg.Logger.Error("backfill request refused", "id", id, "err", err)
		return
	}
	tables := make([]tableName, len(names))
	for i, n := range names {
		if tables[i], err = lookupTableName(ctx, conn, n); err != nil {
			b.cfg.Logger.Error("backfill request refused", "id", id, "err", err)
			return
		}
	}
	b.queueTables(tables)
	if err := b.store.SetProgress(b.cfg.Slot, backfillRequestKey, snapshot.Progress{Rows: id}); err != nil {
		b.cfg.Logger.Warn("storing the last backfill request", "err", err)
	}
}

// busy reports whether backfills are queued or running.
func (b *backfiller) busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) > 0 || b.running
}

// finishSnapshot backfills the tables of an interrupted initial snapshot
// (SQL names) and records the snapshot as done once every one of them was
// read and acked.
func (b *backfiller) finishSnapshot(tables []string) {
	b.mu.Lock()
	b.snapshot = true
	for _, ident := range tables {
		if !slices.Contains(b.queue, ident) {
			b.queue = append(b.queue, ident) // progress kept: a resumed finish goes on mid-table
		}
	}
	err := b.saveLocked()
	b.mu.Unlock()
	if err != nil {
		b.cfg.Logger.Warn("storing the backfill queue", "err", err)
	}
	b.start()
}

// snapshotFinished records the snapshot the backfills finished as done.
func (b *backfiller) snapshotFinished() {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	conn, err := Connect(ctx, b.cfg.DSN)
	if err == nil {
		err = markSnapshot(ctx, conn, b.cfg.Slot, 0, true)
		conn.Close(context.WithoutCancel(ctx))
	}
	if err != nil {
		b.cfg.Logger.Warn("recording the end of the initial snapshot", "slot", b.cfg.Slot, "err", err)
		return
	}
	b.cfg.Logger.Info("interrupted initial snapshot finished by backfills", "slot", b.cfg.Slot)
}

func (b *backfiller) queueTables(tables []tableName) {
	b.mu.Lock()
	var names []string
	for _, t := range tables {
		ident := t.sql() // the walker parses it back exactly
		names = append(names, t.String())
		if slices.Contains(b.queue, ident) {
			continue
		}
		// A table backfilled before is read again from its start; progress
		// is kept under "schema.table".
		if err := b.store.SetProgress(b.cfg.Slot, t.String(), snapshot.Progress{}); err != nil {
			b.cfg.Logger.Warn("resetting backfill progress", "table", t, "err", err)
		}
		b.queue = append(b.queue, ident)
	}
	err := b.saveLocked()
	b.mu.Unlock()
	if err != nil {
		b.cfg.Logger.Warn("storing the backfill queue", "err", err)
	}
	b.cfg.Logger.Info("backfill requested", "tables", names)
	b.start()
}

func (b *backfiller) saveLocked() error {
	list, _ := json.Marshal(b.queue)
	return b.store.SetProgress(b.cfg.Slot, backfillQueueKey, snapshot.Progress{LastKey: list})
}

// start runs the walker goroutine unless it runs already.
func (b *backfiller) start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || b.ctx.Err() != nil {
		return
	}
	b.running = true
	b.wg.Add(1)
	go b.run()
}

func (b *backfiller) run() {
	defer b.wg.Done()
	walker := snapshot.NewWalker(b.cfg.DSN, b.merger, snapshot.WalkerOptions{
		Source:      b.cfg.Slot,
		ChunkSize:   b.cfg.BackfillChunk,
		Progress:    b.store,
		Publication: b.cfg.Publication,
		Logger:      b.cfg.Logger,
	})
	defer walker.Close(context.Background())
	for {
		b.mu.Lock()
		if len(b.queue) == 0 || b.ctx.Err() != nil {
			b.running = false
			finished := b.snapshot && !b.failed && len(b.queue) == 0
			if finished {
				b.snapshot = false
			}
			b.mu.Unlock()
			if finished {
				b.snapshotFinished()
			}
			return
		}
		table := b.queue[0]
		b.mu.Unlock()

		p, err := walker.Backfill(b.ctx, table)
		if b.ctx.Err() != nil {
			b.mu.Lock()
			b.running = false
			b.mu.Unlock()
			return // stopping: the queue stays stored for the next run
		}
		if err != nil {
			b.cfg.Logger.Error("backfill failed; skipping the table", "table", table, "err", err)
			b.mu.Lock()
			b.failed = true
			b.mu.Unlock()
		} else {
			b.cfg.Logger.Info("backfill done", "table", table, "rows", p.Rows)
		}
		b.mu.Lock()
		b.queue = slices.DeleteFunc(b.queue, func(t string) bool { return t == table })
		if err := b.saveLocked(); err != nil {
			b.cfg.Logger.Warn("storing the backfill queue", "err", err)
		}
		b.mu.Unlock()
	}
}

func (b *backfiller) stop() {
	b.cancel()
	b.wg.Wait()
}

// backfillRequest returns the request id of a backfill request message
// for this stream; ok reports whether the event was such a message at all
// (a malformed one, or one for another slot, has id 0).
func backfillRequest(e *event.Event, slot string) (id int64, ok bool) {
	if e.Op != event.OpMessage || e.Message == nil || e.Message.Prefix != BackfillRequestPrefix {
		return 0, false
	}
	var req BackfillRequest
	if err := json.Unmarshal(e.Message.Content, &req); err != nil {
		return 0, true // malformed: swallowed, with nothing to do
	}
	if req.Slot != "" && req.Slot != slot {
		return 0, true
	}
	return req.ID, true
}
