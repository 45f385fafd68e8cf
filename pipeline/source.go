package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/source"
)

// batch is a run of events on its way to one sink.
type batch struct {
	events []*event.Event
	bytes  int64
}

// sourceRun is the state of one source while it runs.
type sourceRun struct {
	p       *Pipeline
	src     *Source
	workers []*worker

	mu     sync.Mutex
	stream *source.Stream // the current stream; replaced on reconnect
	// seenCommit is the newest complete-transaction position fanned out (or
	// skipped) on the current stream: acks never go past it, so an ack is
	// always of a position the stream delivered.
	seenCommit event.LSN
	// consuming is set while a Kafka source is in its consumer group,
	// under mu.
	consuming bool
	// Counters for Status, under mu.
	events, reconnects uint64
	lastErr            error
	// snapshotAt is the consistent point of an initial snapshot not yet
	// durable in every sink; zero when there is none.
	snapshotAt event.LSN
}

func (p *Pipeline) runSource(ctx context.Context, src *Source, sinks []*Sink) error {
	if src.Kafka != nil {
		return p.runKafka(ctx, src, sinks)
	}
	r := &sourceRun{p: p, src: src}
	p.sources.Store(src.Name, r)
	for _, k := range sinks {
		w, err := newWorker(ctx, r, k)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	if r.src.Heartbeat > 0 {
		hbCtx, stopHeartbeat := context.WithCancel(ctx)
		defer stopHeartbeat()
		go r.heartbeat(hbCtx)
	}
	err := r.streamLoop(ctx)
	// A clean stop: the workers write what is queued, then the last acks go
	// out with the final status update of the stream.
	for _, w := range r.workers {
		close(w.queue)
	}
	wg.Wait()
	r.mu.Lock()
	if r.stream != nil {
		r.ackLocked()
		if cerr := r.stream.Close(); err == nil && cerr != nil && ctx.Err() == nil {
			err = cerr
		}
		r.stream = nil
	}
	r.mu.Unlock()
	for _, w := range r.workers {
		if w.err != nil && err == nil {
			err = w.err
		}
	}
	return err
}

// stream opens the source and fans its events out, reconnecting with
// backoff when the connection drops. The first open fails fast on errors
// the user must fix; once running, every failure is retried.
func (r *sourceRun) streamLoop(ctx context.Context) error {
	cfg := r.src.Stream
	cfg.Transactions = true
	cfg.Schemas = true
	cfg.BackfillProgress = backfillProgress{r.p.Store}
	if r.src.Snapshot {
		fresh, err := r.prepareSnapshot(ctx)
		if err != nil {
			return err
		}
		cfg.InitialSnapshot = fresh
	}
	if cfg.Logger == nil {
		cfg.Logger = r.p.Logger
	}
	log := r.p.Logger.With("source", r.src.Name)
	backoff := r.p.MinBackoff
	started := false
	for {
		s, err := source.Open(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ue *source.UserError
			if !started && errors.As(err, &ue) {
				return fmt.Errorf("source %s: %w", r.src.Name, err)
			}
			r.noteError(err)
			log.Warn("cannot open stream; retrying", "err", err, "in", backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, r.p.MaxBackoff)
			continue
		}
		if !started {
			log.Info("streaming", "slot", cfg.Slot, "from", s.Stats().StartLSN)
		} else {
			log.Info("reconnected", "slot", cfg.Slot, "from", s.Stats().StartLSN)
		}
		started = true
		r.mu.Lock()
		if cfg.InitialSnapshot {
			r.snapshotAt = s.Stats().StartLSN
		}
		// Once the slot exists, its snapshot is being read: never again.
		cfg.InitialSnapshot = false
		r.stream, r.seenCommit = s, 0
		r.ackLocked()
		r.mu.Unlock()

		err = r.fanOut(ctx, s)
		if err == nil || ctx.Err() != nil {
			return nil // end position reached, or stopped
		}
		r.mu.Lock()
		r.stream = nil
		r.mu.Unlock()
		_ = s.Close()
		r.noteError(err)
		log.Warn("stream interrupted; reconnecting", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.p.MaxBackoff)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// fanOut reads events and queues them for every sink. It returns nil at
// the stream's end position or when ctx is cancelled.
func (r *sourceRun) fanOut(ctx context.Context, s *source.Stream) error {
	for {
		e, err := s.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				r.flushAll(true)
				return nil
			}
			return err
		}
		complete := e.Op == event.OpCommit || (e.Op == event.OpMessage && !e.Message.Transactional)
		for _, w := range r.workers {
			w.add(e)
		}
		r.mu.Lock()
		r.events++
		if complete {
			r.seenCommit = e.CommitLSN
		}
		r.mu.Unlock()
		// Hand the partial batch to a sink that is idle: low latency when
		// idle; a busy sink takes it once done, so batches grow with load.
		r.flushAll(false)
	}
}

func (r *sourceRun) flushAll(idle bool) {
	for _, w := range r.workers {
		w.flush(idle)
	}
}

func (r *sourceRun) noteError(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.reconnects++
	r.mu.Unlock()
}

// durable is called by a worker after its sink made lsn durable.
func (r *sourceRun) durable() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stream != nil {
		r.ackLocked()
	}
}

// ackLocked acks the lowest position every sink made durable, held back by
// the retain window. Callers hold r.mu.
func (r *sourceRun) ackLocked() {
	var lowest event.LSN
	for i, w := range r.workers {
		d := event.LSN(w.stats.Durable.Load())
		if i == 0 || d < lowest {
			lowest = d
		}
	}
	if lowest == 0 {
		return
	}
	confirm := lowest
	if r.src.Retain.Age > 0 || r.src.Retain.Bytes > 0 {
		now := time.Now()
		store := r.p.Store
		if err := store.AddMark(r.src.Name, markAt(now, lowest), r.src.Retain); err != nil {
			r.p.Logger.Warn("recording retain mark", "source", r.src.Name, "err", err)
			return
		}
		lsn, ok, err := store.ConfirmableAt(r.src.Name, now, r.src.Retain, lowest)
		if err != nil || !ok {
			return
		}
		confirm = lsn
	}
	if r.snapshotAt != 0 && lowest >= r.snapshotAt {
		if err := r.p.Store.SetProgress(r.src.Name, initialSnapshotKey, checkpoint.Progress{Done: true}); err != nil {
			r.p.Logger.Warn("recording the end of the initial snapshot", "source", r.src.Name, "err", err)
		} else {
			r.p.Logger.Info("initial snapshot durable in every sink", "source", r.src.Name, "at", r.snapshotAt)
			r.snapshotAt = 0
		}
	}
	if confirm > r.seenCommit {
		confirm = r.seenCommit
	}
	if confirm == 0 {
		return
	}
	if err := r.stream.Ack(confirm); err != nil {
		r.p.Logger.Warn("acking", "source", r.src.Name, "lsn", confirm, "err", err)
	}
}

// HeartbeatPrefix is the prefix of the logical messages heartbeats write.
// Sinks never see them; they only move positions forward.
const HeartbeatPrefix = "pgfeed.heartbeat"

// heartbeat writes a non-transactional message on an interval. On a
// database whose published tables are idle while others write, this gives
// the slot something to confirm, so Postgres does not retain WAL for it.
func (r *sourceRun) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.src.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		conn, err := source.Connect(ctx, r.src.Stream.DSN)
		if err != nil {
			r.p.Logger.Warn("heartbeat", "source", r.src.Name, "err", err)
			continue
		}
		_, err = conn.Exec(ctx, "SELECT pg_logical_emit_message(false, $1, '')", HeartbeatPrefix)
		conn.Close(context.Background())
		if err != nil && ctx.Err() == nil {
			r.p.Logger.Warn("heartbeat", "source", r.src.Name, "err", err)
		}
	}
}

// initialSnapshotKey is where the store keeps whether a source's initial
// snapshot reached every sink.
const initialSnapshotKey = "pgfeed.initial-snapshot"

// prepareSnapshot decides whether the initial snapshot must be read: when
// the slot does not exist yet, or when a snapshot was interrupted before it
// was durable everywhere (then the slot is dropped, to read it all again in
// a new exported snapshot). It records the snapshot as pending.
func (r *sourceRun) prepareSnapshot(ctx context.Context) (bool, error) {
	prog, ok, err := r.p.Store.Progress(r.src.Name, initialSnapshotKey)
	if err != nil {
		return false, fmt.Errorf("source %s: reading snapshot state: %w", r.src.Name, err)
	}
	if ok && prog.Done {
		return false, nil
	}
	db, err := source.Connect(ctx, r.src.Stream.DSN)
	if err != nil {
		return false, fmt.Errorf("source %s: %w", r.src.Name, err)
	}
	defer db.Close(context.Background())
	slot := r.src.Stream.Slot
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)", slot).Scan(&exists); err != nil {
		return false, fmt.Errorf("source %s: reading slot: %w", r.src.Name, err)
	}
	if exists && !ok {
		return false, nil // a slot from before snapshots were asked for: its changes are all there is
	}
	if exists {
		r.p.Logger.Warn("the initial snapshot was interrupted; dropping the slot to read it again", "source", r.src.Name, "slot", slot)
		// The walsender of a killed process may take a moment to notice.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := db.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || !sleep(ctx, 200*time.Millisecond) {
				return false, fmt.Errorf("source %s: dropping slot %s: %w", r.src.Name, slot, err)
			}
		}
	}
	if err := r.p.Store.SetProgress(r.src.Name, initialSnapshotKey, checkpoint.Progress{}); err != nil {
		return false, fmt.Errorf("source %s: recording snapshot state: %w", r.src.Name, err)
	}
	return true, nil
}
