package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// mu guards the batch being built, which the sink's goroutine takes
	// itself when it is done with a write (see next), and the hand-over
	// accounting. The source's goroutine builds it.
	mu  sync.Mutex
	cur batch
	// busy is set while the sink's goroutine writes (or has a batch
	// coming): a partial batch then keeps growing instead of being handed
	// over, so a slow sink gets big batches and an idle one gets each
	// event at once.
	busy bool
	// handed and taken count batches sent to and received from queue: the
	// sink's goroutine takes cur only when none is on its way, or it would
	// write newer events before older ones.
	handed, taken uint64
	// skipUpTo is the newest complete transaction already queued (or made
	// durable before a restart): after a reconnect the stream delivers such
	// transactions again, and the sink has them.
	skipUpTo event.LSN
	// partial is the start of a transaction (events up to its seq) that a
	// positioned sink holds from before a restart; the rest still comes.
	partial sink.Position
	err     error       // the failure that stopped the worker, if any
	dl      *deadLetter // where poison records go; nil: the worker is stuck on them

	records []sink.Record
	buf     []byte
}

func newWorker(ctx context.Context, r *sourceRun, k *Sink) (*worker, error) {
	pos, _, err := r.p.Store.Position(r.src.Name, k.Name)
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint of sink %s: %w", k.Name, err)
	}
	w := &worker{r: r, k: k, stats: r.p.sinkStats(k.Name), queue: make(chan batch, k.QueueBatches), skipUpTo: pos, dl: r.p.deadLetters[k.DeadLetter]}
	// A sink that commits its position with its data knows better than the
	// checkpoint, which is written after the sink's commit and so lags it
	// after a crash. The checkpoint can only be ahead when batches had no
	// record for this sink (nothing to commit there), so the newer wins.
	if ps, ok := k.Sink.(sink.Positioned); ok {
		sp, ok, err := ps.Position(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the position of sink %s: %w", k.Name, err)
		}
		if ok && sp.Commit > pos {
			r.p.Logger.Info("resuming from the position the sink committed", "source", r.src.Name, "sink", k.Name, "position", sp.Commit, "checkpoint", pos)
			w.skipUpTo = sp.Commit
		}
		if ok && sp.LastCommit > w.skipUpTo {
			w.partial = sp
		}
	}
	w.stats.Durable.Store(uint64(w.skipUpTo))
	return w, nil
}

// add appends an event to the batch being built, handing it over when full.
func (w *worker) add(e *event.Event) {
	if e.CommitLSN != 0 && e.CommitLSN <= w.skipUpTo && e.Op != event.OpRead {
		w.stats.SkippedReplayed.Add(1)
		return
	}
	if w.partial.LastCommit != 0 && e.CommitLSN == w.partial.LastCommit && e.Op != event.OpRead &&
		e.Seq >= 1 && e.Seq <= w.partial.LastSeq {
		w.stats.SkippedReplayed.Add(1)
		return
	}
	if e.Op == event.OpCommit || (e.Op == event.OpMessage && !e.Message.Transactional) {
		w.skipUpTo = e.CommitLSN
	}
	n := eventBytes(e)
	if q := w.stats.QueuedBytes.Add(n); q > w.stats.MaxQueuedBytes.Load() {
		w.stats.MaxQueuedBytes.Store(q)
	}
	w.mu.Lock()
	w.cur.events = append(w.cur.events, e)
	w.cur.bytes += n
	full := len(w.cur.events) >= w.k.MaxBatch || w.cur.bytes >= int64(w.k.MaxBatchBytes)
	w.mu.Unlock()
	if full {
		w.flush(true)
	}
}

// flush hands the current batch to the sink's goroutine when it is full
// (force) or the sink is idle; a busy sink takes the batch itself when it
// is done. Sending on a full queue waits, which is the backpressure that
// reaches Postgres.
func (w *worker) flush(force bool) {
	w.mu.Lock()
	if len(w.cur.events) == 0 || (!force && w.busy) {
		w.mu.Unlock()
		return
	}
	b := w.take()
	w.handed++
	w.busy = true
	w.mu.Unlock()
	w.queue <- b
}

// take returns the batch being built and starts a new one. Callers hold mu.
func (w *worker) take() batch {
	b := w.cur
	w.cur = batch{events: make([]*event.Event, 0, min(2*len(b.events), w.k.MaxBatch))}
	return b
}

// next returns the next batch to write: a batch on its way through the
// queue first (it is older), else the partial batch being built, else it
// waits on the queue. It returns false once the queue is closed and
// nothing is left.
func (w *worker) next() (batch, bool) {
	w.mu.Lock()
	if w.handed == w.taken && len(w.cur.events) > 0 {
		b := w.take()
		w.mu.Unlock()
		return b, true
	}
	if w.handed == w.taken {
		w.busy = false
	}
	w.mu.Unlock()
	b, ok := <-w.queue
	w.mu.Lock()
	defer w.mu.Unlock()
	if !ok {
		// Closed: what the source built last, if it did not hand it over.
		if len(w.cur.events) > 0 {
			return w.take(), true
		}
		return batch{}, false
	}
	w.taken++
	w.busy = true
	return b, true
}

// run writes batches until the queue is closed. After a failed Write it
// retries the same batch with backoff: nothing is acked until it succeeds.
// Once the pipeline is stopping, a failing sink gives up instead; what it
// did not write is not acked and comes again on the next run.
func (w *worker) run(ctx context.Context) {
	log := w.r.p.Logger.With("source", w.r.src.Name, "sink", w.k.Name)
	for {
		b, ok := w.next()
		if !ok {
			return
		}
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
	var durable event.LSN
	var poison []poisoned
	for _, e := range b.events {
		if e.Op == event.OpCommit || (e.Op == event.OpMessage && !e.Message.Transactional) {
			durable = e.CommitLSN
		}
	}
	var err error
	w.records, w.buf, err = w.k.encode(b.events, w.records[:0], w.buf[:0], func(rec sink.Record, n int, err error) error {
		if w.dl == nil {
			return &errStuck{err}
		}
		poison = append(poison, poisoned{rec: rec, err: err, order: 2 * n})
		return nil
	})
	if err != nil {
		return err
	}
	for i := range w.records {
		w.records[i].Source = w.r.src.Name
	}
	if len(w.records) > 0 {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if ps, ok := w.k.Sink.(sink.Positioned); ok {
			// The newest complete transaction, also when this batch ends
			// none: a batch of only a commit event wrote nothing there.
			err = ps.WriteAt(wctx, w.records, max(durable, event.LSN(w.stats.Durable.Load())))
		} else {
			err = w.k.Sink.Write(wctx, w.records)
		}
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

// encode routes and encodes events into records for the sink, appending
// them to records and their values (and, with RecordKeys, the encoder's
// keys) to buf; transaction boundaries and (unless Schemas)
// schema events are left out, and so is an event its format writes
// nothing for (wal2json for a schema event, Debezium for a truncate).
// With RecordKeys a tombstone (a nil value) follows each event the encoder
// asks one for (Debezium: a delete). An event that cannot be encoded goes
// to poison (with the number of records before it), which leaves it out
// and goes on, or stops with its error; nil poison stops at the first.
// An encoder that is an encode.TopicEncoder (Avro's Confluent wire
// format) encodes with the topic routing chose; its
// *encode.RegistryUnavailableError fails the whole call, as the event is
// not at fault and the batch is retried.
func (k *Sink) encode(events []*event.Event, records []sink.Record, buf []byte, poison func(rec sink.Record, n int, err error) error) ([]sink.Record, []byte, error) {
	type span struct{ start, end int } // start < 0: nil
	spans := make([]span, 0, len(events))
	var keySpans []span
	keyEnc, _ := k.Encoder.(encode.KeyEncoder)
	tomb, _ := k.Encoder.(encode.Tombstoner)
	topicEnc, _ := k.Encoder.(encode.TopicEncoder)
	if !k.RecordKeys {
		keyEnc, tomb = nil, nil
	}
	first := len(records)
	fail := func(rec sink.Record, err error) error {
		if poison == nil {
			return err
		}
		return poison(rec, len(records), err)
	}
	for _, e := range events {
		if e.Op == event.OpBegin || e.Op == event.OpCommit || (e.Op == event.OpSchema && !k.Schemas) {
			continue
		}
		rec, keep := k.Router.Apply(e)
		if !keep {
			continue
		}
		start := len(buf)
		var err error
		if topicEnc != nil {
			buf, err = topicEnc.EncodeTopic(buf, rec.Topic, rec.Event)
		} else {
			buf, err = k.Encoder.Encode(buf, rec.Event)
		}
		if err != nil {
			buf = buf[:start]
			if _, down := errors.AsType[*encode.RegistryUnavailableError](err); down {
				// Not the event's fault: the batch is retried, nothing
				// goes to the dead letters.
				return records, buf, fmt.Errorf("encoding %s event at %s: %w", e.Op, e.LSN, err)
			}
			if err := fail(rec, fmt.Errorf("encoding %s event at %s: %w", e.Op, e.LSN, err)); err != nil {
				return records, buf, err
			}
			continue
		}
		if len(buf) == start {
			continue
		}
		valueSpan, keySpan := span{start, len(buf)}, span{-1, -1}
		if keyEnc != nil {
			kstart := len(buf)
			var ok bool
			if topicEnc != nil {
				buf, ok, err = topicEnc.EncodeKeyTopic(buf, rec.Topic, rec.Event)
			} else {
				buf, ok, err = keyEnc.EncodeKey(buf, rec.Event)
			}
			if err != nil {
				buf = buf[:start]
				if _, down := errors.AsType[*encode.RegistryUnavailableError](err); down {
					return records, buf, fmt.Errorf("encoding the key of %s event at %s: %w", e.Op, e.LSN, err)
				}
				if err := fail(rec, fmt.Errorf("encoding the key of %s event at %s: %w", e.Op, e.LSN, err)); err != nil {
					return records, buf, err
				}
				continue
			}
			if ok {
				keySpan = span{kstart, len(buf)}
			}
		}
		spans, keySpans = append(spans, valueSpan), append(keySpans, keySpan)
		records = append(records, rec)
		if tomb != nil && keySpan.start >= 0 && tomb.Tombstone(rec.Event) {
			spans, keySpans = append(spans, span{-1, -1}), append(keySpans, keySpan)
			records = append(records, rec)
		}
	}
	// Values and keys point into one buffer, filled first so that it no
	// longer grows.
	for i, sp := range spans {
		r := &records[first+i]
		r.Value = nil
		if sp.start >= 0 {
			r.Value = buf[sp.start:sp.end:sp.end]
		}
		if keyEnc != nil {
			r.Key = nil
			if kp := keySpans[i]; kp.start >= 0 {
				r.Key = buf[kp.start:kp.end:kp.end]
			}
		}
	}
	return records, buf, nil
}
