package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// worker feeds one sink from one source.
type worker struct {
	r     *sourceRun
	k     *Sink
	stats *SinkStats
	queue chan batch
	cur   batch
	// skipUpTo is the newest complete transaction already queued (or made
	// durable before a restart): after a reconnect the stream delivers such
	// transactions again, and the sink has them.
	skipUpTo event.LSN
	err      error       // the failure that stopped the worker, if any
	dl       *deadLetter // where poison records go; nil: the worker is stuck on them

	records []sink.Record
	buf     []byte
}

func newWorker(r *sourceRun, k *Sink) (*worker, error) {
	pos, _, err := r.p.Store.Position(r.src.Name, k.Name)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint of sink %s: %w", k.Name, err)
	}
	w := &worker{r: r, k: k, stats: r.p.sinkStats(k.Name), queue: make(chan batch, k.QueueBatches), skipUpTo: pos, dl: r.p.deadLetters[k.DeadLetter]}
	w.stats.Durable.Store(uint64(pos))
	return w, nil
}

// add appends an event to the batch being built, handing it over when full.
func (w *worker) add(e *event.Event) {
	if e.CommitLSN != 0 && e.CommitLSN <= w.skipUpTo && e.Op != event.OpRead {
		w.stats.SkippedReplayed.Add(1)
		return
	}
	if e.Op == event.OpCommit || (e.Op == event.OpMessage && !e.Message.Transactional) {
		w.skipUpTo = e.CommitLSN
	}
	n := eventBytes(e)
	w.cur.events = append(w.cur.events, e)
	w.cur.bytes += n
	if q := w.stats.QueuedBytes.Add(n); q > w.stats.MaxQueuedBytes.Load() {
		w.stats.MaxQueuedBytes.Store(q)
	}
	if len(w.cur.events) >= w.k.MaxBatch || w.cur.bytes >= int64(w.k.MaxBatchBytes) {
		w.flush(true)
	}
}

// flush hands the current batch to the sink's goroutine; when the queue is
// full it waits, which is the backpressure that reaches Postgres.
func (w *worker) flush(force bool) {
	if len(w.cur.events) == 0 || (!force && len(w.queue) > 0) {
		return
	}
	w.queue <- w.cur
	w.cur = batch{events: make([]*event.Event, 0, min(2*len(w.cur.events), w.k.MaxBatch))}
}

// run writes batches until the queue is closed. After a failed Write it
// retries the same batch with backoff: nothing is acked until it succeeds.
// Once the pipeline is stopping, a failing sink gives up instead; what it
// did not write is not acked and comes again on the next run.
func (w *worker) run(ctx context.Context) {
	log := w.r.p.Logger.With("source", w.r.src.Name, "sink", w.k.Name)
	for b := range w.queue {
		backoff := w.r.p.MinBackoff
		for {
			err := w.write(ctx, b)
			if err == nil {
				break
			}
			w.stats.WriteErrors.Add(1)
			if ctx.Err() != nil {
				w.err = fmt.Errorf("sink %s: %w", w.k.Name, err)
				for range w.queue {
				}
				return
			}
			if _, stuck := errors.AsType[*errStuck](err); stuck {
				log.Error("sink is stuck on a poison record, retrying it: set dead_letter on the sink to set such records aside", "err", err, "in", backoff)
			} else {
				log.Warn("writing batch; retrying", "err", err, "in", backoff)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, w.r.p.MaxBackoff)
		}
		w.stats.QueuedBytes.Add(-b.bytes)
	}
}

// write routes and encodes a batch, writes it, and records its position.
// Poison records (an event that cannot be encoded, a record the sink
// reports rejected) go to the dead-letter sink before the position is
// recorded. Without one, an encode error fails write with an *errStuck,
// and records the sink rejected are written again, alone, until the sink
// takes them or ctx ends: the rest of the batch is not sent again each time.
func (w *worker) write(ctx context.Context, b batch) error {
	w.records = w.records[:0]
	w.buf = w.buf[:0]
	var durable event.LSN
	type span struct{ start, end int } // start < 0: nil (a tombstone's value, no key)
	spans := make([]span, 0, len(b.events))
	var keySpans []span // with RecordKeys, the key of each record
	keyEnc, _ := w.k.Encoder.(encode.KeyEncoder)
	tomb, _ := w.k.Encoder.(encode.Tombstoner)
	if !w.k.RecordKeys {
		keyEnc, tomb = nil, nil
	}
	var poison []poisoned
	for _, e := range b.events {
		if e.Op == event.OpCommit || (e.Op == event.OpMessage && !e.Message.Transactional) {
			durable = e.CommitLSN
		}
		if e.Op == event.OpBegin || e.Op == event.OpCommit || (e.Op == event.OpSchema && !w.k.Schemas) ||
			(e.Op == event.OpMessage && e.Message.Prefix == HeartbeatPrefix) {
			continue
		}
		rec, keep := w.k.Router.Apply(e)
		if !keep {
			continue
		}
		start := len(w.buf)
		var err error
		if w.buf, err = w.k.Encoder.Encode(w.buf, rec.Event); err != nil {
			err = fmt.Errorf("encoding %s event at %s: %w", e.Op, e.LSN, err)
			if w.dl == nil {
				return &errStuck{err}
			}
			poison = append(poison, poisoned{rec: rec, err: err, order: 2 * len(w.records)})
			continue
		}
		if len(w.buf) == start {
			// The format has nothing to write for this event (wal2json
			// for a schema event, Debezium for a truncate): no record.
			continue
		}
		valueSpan := span{start, len(w.buf)}
		keySpan := span{-1, -1}
		if keyEnc != nil {
			var ok bool
			kstart := len(w.buf)
			if w.buf, ok, err = keyEnc.EncodeKey(w.buf, rec.Event); err != nil {
				w.buf = w.buf[:start]
				err = fmt.Errorf("encoding the key of %s event at %s: %w", e.Op, e.LSN, err)
				if w.dl == nil {
					return &errStuck{err}
				}
				poison = append(poison, poisoned{rec: rec, err: err, order: 2 * len(w.records)})
				continue
			}
			if ok {
				keySpan = span{kstart, len(w.buf)}
			}
		}
		rec.Source = w.r.src.Name
		spans = append(spans, valueSpan)
		keySpans = append(keySpans, keySpan)
		w.records = append(w.records, rec)
		if tomb != nil && keySpan.start >= 0 && tomb.Tombstone(rec.Event) {
			spans = append(spans, span{-1, -1})
			keySpans = append(keySpans, keySpan)
			w.records = append(w.records, rec)
		}
	}
	// Values point into one buffer, filled first so that it no longer grows.
	for i := range w.records {
		if spans[i].start >= 0 {
			w.records[i].Value = w.buf[spans[i].start:spans[i].end:spans[i].end]
		} else {
			w.records[i].Value = nil
		}
		if keyEnc != nil {
			if k := keySpans[i]; k.start >= 0 {
				w.records[i].Key = w.buf[k.start:k.end:k.end]
			} else {
				w.records[i].Key = nil
			}
		}
	}
	if len(w.records) > 0 {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := w.k.Sink.Write(wctx, w.records)
		cancel()
		refused := 0
		if err != nil {
			rej, rerr := rejected(err, w.records)
			if rerr != nil {
				return rerr
			}
			if w.dl == nil {
				if err := w.retryRejected(ctx, rej); err != nil {
					return err
				}
				rej = nil
			}
			refused = len(rej)
			poison = append(poison, rej...)
		}
		w.stats.Events.Add(uint64(len(w.records) - refused))
		w.stats.Bytes.Add(uint64(len(w.buf)))
		w.stats.Batches.Add(1)
	}
	if len(poison) > 0 {
		if err := w.sendDeadLetters(poison); err != nil {
			return err
		}
	}
	if durable > event.LSN(w.stats.Durable.Load()) {
		if err := w.r.p.Store.SetPosition(w.r.src.Name, w.k.Name, durable); err != nil {
			return fmt.Errorf("storing checkpoint: %w", err)
		}
		w.stats.Durable.Store(uint64(durable))
		w.r.durable()
	}
	return nil
}

// retryRejected writes the records a sink rejected, and only them, until
// it takes them all, saying each time that the sink is stuck. It gives up
// when ctx ends (the pipeline stops; nothing of the batch is acked) or on
// another kind of failure, which the caller retries with the whole batch.
func (w *worker) retryRejected(ctx context.Context, rej []poisoned) error {
	log := w.r.p.Logger.With("source", w.r.src.Name, "sink", w.k.Name)
	backoff := w.r.p.MinBackoff
	for len(rej) > 0 {
		w.stats.WriteErrors.Add(1)
		log.Error("sink is stuck on a poison record, retrying it: set dead_letter on the sink to set such records aside",
			"records", len(rej), "id", encode.ID(rej[0].rec.Event), "err", rej[0].err, "in", backoff)
		if !sleep(ctx, backoff) {
			return &errStuck{fmt.Errorf("%d records rejected: %w", len(rej), rej[0].err)}
		}
		backoff = min(2*backoff, w.r.p.MaxBackoff)
		recs := make([]sink.Record, len(rej))
		for i := range rej {
			recs[i] = rej[i].rec
		}
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err := w.k.Sink.Write(wctx, recs)
		cancel()
		if err == nil {
			return nil
		}
		again, rerr := rejected(err, recs)
		if rerr != nil {
			return rerr
		}
		rej = again
	}
	return nil
}

func markAt(t time.Time, lsn event.LSN) checkpoint.Mark { return checkpoint.Mark{At: t, LSN: lsn} }
