package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/kafkaclient"
)

// Options configure a Source.
type Options struct {
	Brokers []string // host:port of the seed brokers; required
	Topics  []string // required
	Group   string   // consumer group; required
	TLS     *tls.Config
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
	// InstanceID makes this member static (KIP-345): restarted with the
	// same id, it takes its partitions back at once instead of waiting for
	// the group to time the old member out. Unique per member.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to others; 0: 45s.
	SessionTimeout time.Duration
	// Format is the records' format: FormatJSON (native JSON),
	// FormatDebezium, or FormatAuto (the zero value) to tell each record by
	// its shape.
	Format string
	// Logger receives transient errors (retried); nil: none.
	Logger *slog.Logger
}

// Source reads events from Kafka topics in a consumer group. A Source is
// used by one goroutine: Poll, then Commit once the batch is durable
// everywhere, then Poll again.
type Source struct {
	opts Options
	cl   *kgo.Client
}

// Batch is what one Poll returned: the events, in each partition's order,
// and the records to commit once every sink holds them.
type Batch struct {
	Events []*event.Event
	recs   []*kgo.Record
}

// Open joins the consumer group after checking that a broker answers and
// that the topics exist. Records are read as a read_committed consumer, so
// the aborted transactions of an exactly-once sink are never seen.
func Open(ctx context.Context, opts Options) (*Source, error) {
	base, err := check(ctx, opts)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	group := []kgo.Opt{kgo.ConsumerGroup(opts.Group)}
	if opts.InstanceID != "" {
		group = append(group, kgo.InstanceID(opts.InstanceID))
	}
	if opts.SessionTimeout > 0 {
		group = append(group, kgo.SessionTimeout(opts.SessionTimeout))
	}
	cl, err := kgo.NewClient(append(append(base, group...),
		kgo.ConsumeTopics(opts.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// A batch handed out is not taken away by a rebalance before its
		// offsets are committed (Commit allows rebalancing again).
		kgo.BlockRebalanceOnPoll(),
	)...)
	if err != nil {
		return nil, fmt.Errorf("opening kafka source: %w", err)
	}
	return &Source{opts: opts, cl: cl}, nil
}

// Check connects to the brokers and checks that the topics exist, without
// joining the group: for a pipeline that reports what is wrong before it
// starts.
func Check(ctx context.Context, opts Options) error {
	_, err := check(ctx, opts)
	return err
}

func check(ctx context.Context, opts Options) ([]kgo.Opt, error) {
	if len(opts.Brokers) == 0 || len(opts.Topics) == 0 || opts.Group == "" {
		return nil, errors.New("opening kafka source: brokers, topics and group are required")
	}
	switch opts.Format {
	case FormatAuto, FormatJSON, FormatDebezium:
	default:
		return nil, fmt.Errorf("opening kafka source: unknown format %q (have: json, debezium)", opts.Format)
	}
	brokers := strings.Join(opts.Brokers, ",")
	base, err := kafkaclient.Opts(opts.Brokers, opts.TLS, opts.SASLMechanism, opts.SASLUser, opts.SASLPassword)
	if err != nil {
		return nil, fmt.Errorf("opening kafka source: %w", err)
	}
	adm, err := kgo.NewClient(base...)
	if err != nil {
		return nil, fmt.Errorf("opening kafka source: %w", err)
	}
	defer adm.Close()
	if err := adm.Ping(ctx); err != nil {
		return nil, fmt.Errorf("connecting to kafka at %s: %w (is a broker running there? TLS or SASL needed?)", brokers, err)
	}
	details, err := kadm.NewClient(adm).ListTopics(ctx, opts.Topics...)
	if err != nil {
		return nil, fmt.Errorf("listing kafka topics at %s: %w", brokers, err)
	}
	for _, t := range opts.Topics {
		if d, ok := details[t]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("opening kafka source: topic %q does not exist at %s", t, brokers)
		} else if d.Err != nil {
			return nil, fmt.Errorf("reading metadata of topic %q: %w", t, d.Err)
		}
	}
	return base, nil
}

// Poll waits for records and returns up to max of them decoded. Schema
// events, tombstones and Debezium's schema change and transaction records
// are skipped (columns come with every row). A record that is not an event
// in Options.Format fails the poll with an error naming it: skipping it
// would drop a change without a word.
func (s *Source) Poll(ctx context.Context, max int) (Batch, error) {
	for {
		fs := s.cl.PollRecords(ctx, max)
		if err := ctx.Err(); err != nil {
			return Batch{}, err
		}
		if fs.IsClientClosed() {
			return Batch{}, errors.New("kafka source is closed")
		}
		var ferr error
		transient := false
		fs.EachError(func(t string, p int32, err error) {
			if ferr != nil {
				return
			}
			if fatal(err) {
				ferr = fmt.Errorf("fetching %s partition %d: %w", t, p, err)
				return
			}
			transient = true
			s.opts.Logger.Warn("kafka source: retrying", "topic", t, "partition", p, "err", err)
		})
		if ferr != nil {
			return Batch{}, ferr
		}
		var b Batch
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			b.recs = append(b.recs, r)
			if derr != nil || isSchema(r) {
				return
			}
			e, err := DecodeRecord(s.opts.Format, r.Key, r.Value)
			if err != nil {
				derr = fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
			if e == nil {
				return // a tombstone or schema change: committed, nothing to deliver
			}
			if err := identify(e, r); err != nil {
				derr = fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				return
			}
			b.Events = append(b.Events, e)
		})
		if derr != nil {
			return Batch{}, derr
		}
		if len(b.recs) > 0 {
			return b, nil
		}
		s.cl.AllowRebalance()
		if transient {
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// fatal reports whether a fetch or group error will not go away by
// itself: authentication and authorization failures, and other errors the
// brokers say not to retry. Network errors and retriable ones the client
// retries.
func fatal(err error) bool {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return false
	}
	return !ke.Retriable
}

// identify completes an event's identity from the headers a pgfeed sink
// writes (commit_lsn, seq) where the record's format has no room for it:
// Debezium's envelope has no seq.
func identify(e *event.Event, r *kgo.Record) error {
	for _, h := range r.Headers {
		switch {
		case h.Key == "seq" && e.Seq == 0:
			n, err := strconv.Atoi(string(h.Value))
			if err != nil || n < 0 {
				return fmt.Errorf("header seq %q is not a sequence number", h.Value)
			}
			e.Seq = n
		case h.Key == "commit_lsn" && e.CommitLSN == 0:
			lsn, err := event.ParseLSN(string(h.Value))
			if err != nil {
				return fmt.Errorf("header commit_lsn: %w", err)
			}
			e.CommitLSN = lsn
		}
	}
	return nil
}

func isSchema(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == "op" {
			return string(h.Value) == "schema"
		}
	}
	return false
}

// Commit commits the offsets of the batch: call it only once every sink
// made the batch durable. It then lets the group rebalance.
func (s *Source) Commit(ctx context.Context, b Batch) error {
	defer s.cl.AllowRebalance()
	if len(b.recs) == 0 {
		return nil
	}
	if err := s.cl.CommitRecords(ctx, b.recs...); err != nil {
		return fmt.Errorf("committing offsets of group %s: %w", s.opts.Group, err)
	}
	return nil
}

// Close leaves the group; offsets not committed are read again by the next
// member.
func (s *Source) Close() {
	s.cl.AllowRebalance()
	s.cl.Close()
}
