// Package sink defines what a destination of a pipeline implements. Each
// destination (stdout, file, discard, and later Kafka, NATS, Redis, webhook,
// WebSocket) is a package of its own under sink/.
package sink

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/pgfeed/pgfeed/event"
)

// Record is one event, routed and encoded, ready for a sink.
type Record struct {
	Event *event.Event // the event itself, for sinks that need its metadata
	Topic string       // destination chosen by routing, e.g. "public.users"
	Key   []byte       // message key: the encoded event key (route.Key), nil when none
	Value []byte       // the encoded event

	// Source names the pipeline source the event came from (sources.NAME):
	// events of two databases can share a position, so a sink that dedupes
	// keys on it too (see Identity).
	Source string
}

// Sink writes batches of records to one destination.
//
// Write returns nil only once every record of the batch is durable at the
// destination (written and fsynced, acknowledged by the broker): the pipeline
// acks the batch's positions as soon as Write returns, and a position acked
// is never delivered again. On error nothing of the batch counts as written,
// and the pipeline will deliver it again, so sinks must tolerate duplicates
// of a failed batch. A sink fed by several sources gets Writes from one
// worker per source, possibly at once: a Sink must be safe for concurrent
// use (order matters only within one source's Writes, which come one at a
// time).
//
// A sink that the destination refuses some records of for good (an HTTP
// 4xx, a message too large for the broker) returns a *RejectedError that
// lists them: every other record of the batch is then durable, and the
// pipeline hands the listed ones to the sink's dead-letter destination
// instead of retrying the batch.
type Sink interface {
	Write(ctx context.Context, batch []Record) error
	Close() error
}

// CheckLines refuses a batch with a value that would not be one line: sinks
// that frame records by newlines (stdout, file) call it before writing
// anything, so that a broken value cannot corrupt the framing for readers.
func CheckLines(batch []Record) error {
	for i := range batch {
		if bytes.IndexByte(batch[i].Value, '\n') >= 0 {
			return fmt.Errorf("value of record %d of the batch (topic %q) contains a newline; line-based sinks need one-line values (a compact encoder)", i, batch[i].Topic)
		}
	}
	return nil
}

// RejectedError is what Write returns when the destination refused some
// records of the batch for good and accepted all the others: retrying the
// refused ones would fail the same way. Rejected lists them in batch order.
type RejectedError struct {
	Rejected []Rejected
}

// Rejected is one record that the destination refused.
type Rejected struct {
	Index int   // the record's index in the batch given to Write
	Err   error // why the destination refused it
}

// Error names how many records were refused and the first reason.
func (e *RejectedError) Error() string {
	if len(e.Rejected) == 0 {
		return "no record rejected"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d record(s) rejected by the destination", len(e.Rejected))
	fmt.Fprintf(&b, "; record %d: %v", e.Rejected[0].Index, e.Rejected[0].Err)
	return b.String()
}

// Unwrap returns the reason of every rejected record.
func (e *RejectedError) Unwrap() []error {
	errs := make([]error, len(e.Rejected))
	for i, r := range e.Rejected {
		errs[i] = r.Err
	}
	return errs
}

// Position is how far a sink holds its source's stream, as recorded at the
// destination itself, atomically with the records.
type Position struct {
	// Commit is the commit LSN of the newest transaction the destination
	// holds whole: every event up to it was written.
	Commit event.LSN
	// LastCommit and LastSeq identify (commit_lsn, seq) the newest event
	// written when it belongs to a transaction after Commit that one batch
	// could not hold whole: its events up to LastSeq were written, the rest
	// were not. LastCommit is zero when there is no such transaction.
	LastCommit event.LSN
	LastSeq    int
}

// Positioned is a sink that commits, with each batch, the position up to
// which it holds the stream (Kafka in exactly-once mode: records and
// position in one transaction). That position is authoritative: a crash
// between the destination's commit and the local checkpoint leaves the
// checkpoint behind it, and the pipeline resumes from the destination's.
type Positioned interface {
	Sink
	// WriteAt is Write that also records that every transaction up to
	// commit is now held whole (0: no transaction of the batch completes
	// in it). The records' own events give the partial position.
	WriteAt(ctx context.Context, batch []Record, commit event.LSN) error
	// Position returns the position of the newest successful WriteAt, read
	// from the destination when the sink opened; false when the
	// destination holds none (a new sink, or one not in that mode).
	Position(ctx context.Context) (Position, bool, error)
}
