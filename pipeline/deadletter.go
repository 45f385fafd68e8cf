package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// deadLetter is a sink that receives other sinks' poison records. Several
// sinks, fed by several sources, may share it: mu keeps its writes one at
// a time, as the sink.Sink contract asks.
type deadLetter struct {
	k     *Sink
	stats *SinkStats
	mu    sync.Mutex
}

// poisoned is a record that cannot reach its sink: the event could not be
// encoded (rec.Value is nil), or the destination refused it for good.
type poisoned struct {
	rec   sink.Record
	err   error
	order int // where it was in the batch, for writing in batch order
}

// Envelope is what a dead-letter sink receives for each poison record, as
// one line of JSON: the error, the sink that could not take the record,
// the record as routed and encoded, and the event's identity.
type Envelope struct {
	Error string `json:"error"`
	Sink  string `json:"sink"`
	Topic string `json:"topic"`
	// Key and Value are the record's own when they are JSON (the value is
	// absent when the event could not be encoded); otherwise they are in
	// KeyBase64 and ValueBase64.
	Key         json.RawMessage `json:"key"`
	KeyBase64   []byte          `json:"key_base64,omitempty"`
	Value       json.RawMessage `json:"value"`
	ValueBase64 []byte          `json:"value_base64,omitempty"`
	// ID is the event's identity (commit_lsn:seq, the CloudEvents id), as
	// the sink would have used it (webhook Idempotency-Key, NATS Msg-Id).
	ID        string    `json:"id"`
	CommitLSN event.LSN `json:"commit_lsn"`
	Seq       int       `json:"seq"`
	LSN       event.LSN `json:"lsn"`
	Op        string    `json:"op"`
	Schema    string    `json:"schema,omitempty"`
	Table     string    `json:"table,omitempty"`
	At        time.Time `json:"dead_lettered_at"`
}

// errStuck marks a poison record met by a sink without a dead-letter sink:
// the worker retries it for ever and says so.
type errStuck struct{ err error }

func (e *errStuck) Error() string { return e.err.Error() }
func (e *errStuck) Unwrap() error { return e.err }

// rejected turns a sink's *sink.RejectedError into poisoned records.
func rejected(err error, recs []sink.Record) ([]poisoned, error) {
	rej, ok := errors.AsType[*sink.RejectedError](err)
	if !ok {
		return nil, err
	}
	out := make([]poisoned, 0, len(rej.Rejected))
	for _, r := range rej.Rejected {
		if r.Index < 0 || r.Index >= len(recs) {
			return nil, fmt.Errorf("sink reported record %d of a batch of %d as rejected: %w", r.Index, len(recs), err)
		}
		out = append(out, poisoned{rec: recs[r.Index], err: r.Err, order: 2*r.Index + 1})
	}
	return out, nil
}

// sendDeadLetters writes the poison records of a batch to the sink's
// dead-letter sink and returns once they are durable there.
func (w *worker) sendDeadLetters(poison []poisoned) error {
	dl := w.dl
	slices.SortStableFunc(poison, func(a, b poisoned) int { return a.order - b.order })
	recs := make([]sink.Record, len(poison))
	var size uint64
	now := time.Now().UTC()
	for i, p := range poison {
		e := p.rec.Event
		env := Envelope{
			Error: p.err.Error(), Sink: w.k.Name, Topic: p.rec.Topic,
			ID: encode.ID(e), CommitLSN: e.CommitLSN, Seq: e.Seq, LSN: e.LSN, Op: e.Op.String(),
			Schema: e.Schema, Table: e.Table, At: now,
		}
		env.Key, env.KeyBase64 = jsonOrBytes(p.rec.Key)
		env.Value, env.ValueBase64 = jsonOrBytes(p.rec.Value)
		v, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("encoding dead letter: %w", err)
		}
		rec := sink.Record{Event: e, Topic: p.rec.Topic, Key: p.rec.Key, Value: v}
		if r, keep := dl.k.Router.Apply(e); keep {
			rec.Topic = r.Topic // the dead-letter sink's own route
		}
		recs[i] = rec
		size += uint64(len(v))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dl.mu.Lock()
	err := dl.k.Sink.Write(ctx, recs)
	dl.mu.Unlock()
	if err != nil {
		dl.stats.WriteErrors.Add(1)
		return fmt.Errorf("writing %d poison records to dead-letter sink %s: %w", len(recs), dl.k.Name, err)
	}
	dl.stats.Events.Add(uint64(len(recs)))
	dl.stats.Bytes.Add(size)
	dl.stats.Batches.Add(1)
	w.stats.DeadLettered.Add(uint64(len(recs)))
	log := w.r.p.Logger.With("source", w.r.src.Name, "sink", w.k.Name)
	for _, p := range poison {
		log.Warn("poison record sent to the dead-letter sink", "dead_letter", dl.k.Name, "id", encode.ID(p.rec.Event), "err", p.err)
	}
	return nil
}

// jsonOrBytes returns b as one line of JSON when it is JSON, else as bytes
// for base64; nil stays null.
func jsonOrBytes(b []byte) (json.RawMessage, []byte) {
	if b == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, b) == nil {
		return buf.Bytes(), nil
	}
	return nil, b
}
