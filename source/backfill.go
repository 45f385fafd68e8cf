package source

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// BackfillRequestPrefix is the prefix of the logical message that asks the
// running streams of a slot to backfill tables (`pgfeed backfill`). Going
// through the WAL, the request reaches whichever process streams the slot,
// now or after a restart, and is acked like any change.
const BackfillRequestPrefix = "pgfeed.backfill-request"

// BackfillRequest is the content of a backfill request message.
type BackfillRequest struct {
	// Slot limits the request to the streams of one slot; empty: every slot.
	Slot   string   `json:"slot,omitempty"`
	Tables []string `json:"tables"`
}

// backfillQueueKey is where the tables still to backfill are kept in the
// progress store, so that a restarted stream resumes them.
const backfillQueueKey = "pgfeed.backfill-queue"

// backfiller walks requested tables one after the other while the stream
// runs, handing chunks to the merger that joins them to the stream.
type backfiller struct {
	cfg    *Config
	merger *snapshot.Merger
	store  snapshot.ProgressStore

	mu      sync.Mutex
	queue   []string // tables still to backfill, in order
	running bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
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

// request queues tables for a backfill from their beginning.
func (b *backfiller) request(tables []string) {
	b.mu.Lock()
	for _, t := range tables {
		t = normalizeGlob(t) // progress is kept under "schema.table"
		if slices.Contains(b.queue, t) {
			continue
		}
		// A table backfilled before is read again from its start.
		if err := b.store.SetProgress(b.cfg.Slot, t, snapshot.Progress{}); err != nil {
			b.cfg.Logger.Warn("resetting backfill progress", "table", t, "err", err)
		}
		b.queue = append(b.queue, t)
	}
	err := b.saveLocked()
	b.mu.Unlock()
	if err != nil {
		b.cfg.Logger.Warn("storing the backfill queue", "err", err)
	}
	b.cfg.Logger.Info("backfill requested", "tables", tables)
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
			b.mu.Unlock()
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

// backfillRequest returns the tables a request message asks this stream to
// backfill, or nil when the event is not such a request (or not for us).
func backfillRequest(e *event.Event, slot string) ([]string, bool) {
	if e.Op != event.OpMessage || e.Message == nil || e.Message.Prefix != BackfillRequestPrefix {
		return nil, false
	}
	var req BackfillRequest
	if err := json.Unmarshal(e.Message.Content, &req); err != nil {
		return nil, true // malformed: swallowed, with nothing to do
	}
	if req.Slot != "" && req.Slot != slot {
		return nil, true
	}
	return req.Tables, true
}
