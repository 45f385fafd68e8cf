package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// idleRead is how long readPosition waits for records that should be
// there at once before it takes the partition as read.
const idleRead = 5 * time.Second

// positionRecord is the value of a record of the offsets topic, in JSON so
// that an operator can read it with any Kafka tool.
type positionRecord struct {
	Commit     event.LSN `json:"commit_lsn"`
	LastCommit event.LSN `json:"last_commit_lsn,omitzero"`
	LastSeq    int       `json:"last_seq,omitzero"`
}

func encodePosition(p sink.Position) []byte {
	b, _ := json.Marshal(positionRecord{Commit: p.Commit, LastCommit: p.LastCommit, LastSeq: p.LastSeq})
	return b
}

func decodePosition(b []byte) (sink.Position, error) {
	var r positionRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return sink.Position{}, err
	}
	return sink.Position{Commit: r.Commit, LastCommit: r.LastCommit, LastSeq: r.LastSeq}, nil
}

// readPosition reads the offsets topic up to its last stable offset, as a
// read_committed consumer, and returns the newest position under the
// sink's key. Aborted transactions are invisible to it; the producer id was
// loaded before, so no transaction of this id is still open.
func readPosition(ctx context.Context, opts Options) (sink.Position, bool, error) {
	copts, err := clientOpts(Options{Brokers: opts.Brokers, TLS: opts.TLS, SASL: opts.SASL})
	if err != nil {
		return sink.Position{}, false, err
	}
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		return sink.Position{}, false, err
	}
	defer cl.Close()
	topic := opts.OffsetsTopic
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return sink.Position{}, false, fmt.Errorf("reading the end of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return sink.Position{}, false, fmt.Errorf("reading the end of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return sink.Position{}, false, fmt.Errorf("reading the start of %s: %w", topic, err)
	}
	want := map[int32]int64{} // partition → last stable offset, for those with records
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start := int64(0)
		if so, ok := starts.Lookup(topic, o.Partition); ok {
			start = so.Offset
		}
		if o.Offset > start {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(want) == 0 {
		return sink.Position{}, false, nil
	}
	// Control records (transaction markers) are kept so that the reader
	// sees offsets up to the last stable one even when the log ends with
	// a marker.
	rd, err := kgo.NewClient(append(copts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return sink.Position{}, false, err
	}
	defer rd.Close()
	var (
		pos   sink.Position
		found bool
		key   = []byte(opts.PositionKey)
	)
	for len(want) > 0 {
		// Everything below the last stable offset is readable at once; a
		// fetch that waits finds nothing more there (compaction may have
		// removed the records the end offsets counted).
		pctx, cancel := context.WithTimeout(ctx, idleRead)
		fetches := rd.PollFetches(pctx)
		idle := pctx.Err() != nil && fetches.NumRecords() == 0
		cancel()
		if err := ctx.Err(); err != nil {
			return sink.Position{}, false, fmt.Errorf("reading positions from %s: %w", topic, err)
		}
		if idle {
			break
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("reading positions from %s partition %d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return sink.Position{}, false, ferr
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() || !bytes.Equal(r.Key, key) {
				return
			}
			if p, err := decodePosition(r.Value); err == nil {
				pos, found = p, true
			}
		})
	}
	return pos, found, nil
}
