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
	// On every open, reconnects included: the stream itself knows whether
	// the slot's snapshot was read in full, and reads it again from a new
	// slot when it was not (whatever interrupted it).
	cfg.InitialSnapshot = r.src.Snapshot
	if cfg.Logger == nil {
		cfg.Logger = r.p.Logger
	}
	log := r.p.Logger.With("source", r.src.Name)
	backoff := r.p.MinBackoff
	started := false
	for {
		s, err := r.open(ctx, cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ue *source.UserError
			if (!started && errors.As(err, &ue)) || errors.Is(err, source.ErrGap) {
				// The CLI prints a UserError's line alone: it names the source.
				return sourceError(r.src.Name, err)
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
		r.stream, r.seenCommit = s, 0
		r.ackLocked()
		r.mu.Unlock()

		err = r.fanOut(ctx, s)
		if err == nil || ctx.Err() != nil {
			return nil // end position reached, or stopped
		}
		if errors.Is(err, source.ErrGap) {
			r.mu.Lock()
			r.stream = nil
			r.mu.Unlock()
			_ = s.Close()
			return fmt.Errorf("source %s: %w", r.src.Name, err)
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

// open checks that the server is the one the checkpoints were written
// against and opens the stream, then records the server and its slot: from
// then on the slot is expected, and its disappearance is a gap that stops
// the source instead of a reason to create a new slot.
func (r *sourceRun) open(ctx context.Context, cfg source.Config) (*source.Stream, error) {
	id, err := source.Identify(ctx, cfg.DSN)
	if err != nil {
		return nil, err
	}
	srv, known, err := r.p.Store.Server(r.src.Name)
	if err != nil {
		return nil, err
	}
	delivered := r.delivered()
	if known {
		if err := source.CheckContinuity(id, srv.SystemID, srv.Timeline, delivered); err != nil {
			return nil, err
		}
	}
	cfg.ExpectSlot = known && srv.Slot == cfg.Slot
	s, err := source.Open(ctx, cfg)
	if err != nil {
		if errors.Is(err, source.ErrGap) {
			err = &source.UserError{Msg: fmt.Sprintf("%s; every sink has everything up to %s; to start over, run pgfeed run --resnapshot (creates the slot again and reads every row), or create the slot (pgfeed slot create %s) and backfill the tables", err, delivered, cfg.Slot), Err: err}
		}
		return nil, err
	}
	if !known || srv.Timeline != id.Timeline || srv.Slot != cfg.Slot {
		if id.Timeline != srv.Timeline && known {
			r.p.Logger.Warn("the server is on a new timeline (a promoted standby); going on from the checkpoint", "source", r.src.Name, "timeline", id.Timeline, "was", srv.Timeline)
		}
		if err := r.p.Store.SetServer(r.src.Name, checkpoint.Server{SystemID: id.SystemID, Timeline: id.Timeline, Slot: cfg.Slot}); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// delivered is the newest position any sink of the source made durable.
func (r *sourceRun) delivered() event.LSN {
	var highest event.LSN
	for _, w := range r.workers {
		highest = max(highest, event.LSN(w.stats.Durable.Load()))
	}
	return highest
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
	// Durable everywhere, whatever retain holds back from PostgreSQL: this
	// completes an initial snapshot.
	r.stream.Delivered(min(lowest, r.seenCommit))
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
