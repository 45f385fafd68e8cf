// Package sink defines what a destination of a pipeline implements. Each
// destination (stdout, file, discard, and later Kafka, NATS, Redis, webhook,
// WebSocket) is a package of its own under sink/.
package sink

import (
	"bytes"
	"context"
	"fmt"

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
// of a failed batch. A Sink is used by one goroutine at a time.
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
