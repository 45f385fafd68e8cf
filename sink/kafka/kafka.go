package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/kafkaclient"
	"github.com/pgfeed/pgfeed/sink"
)

// DefaultOffsetsTopic is where transactional sinks keep their positions
// when Options.OffsetsTopic is empty.
const DefaultOffsetsTopic = "pgfeed.offsets"

// SASL mechanisms.
const (
	SASLPlain       = kafkaclient.Plain
	SASLSCRAMSHA256 = kafkaclient.SCRAMSHA256
	SASLSCRAMSHA512 = kafkaclient.SCRAMSHA512
)

// Compression codecs.
var Compressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}

// Acks settings.
const (
	AcksAll    = "all"    // every in-sync replica has the record (the default)
	AcksLeader = "leader" // only the partition leader has it: lost if it dies before replicating
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("kafka sink is closed")

// SASL authenticates to the brokers.
type SASL struct {
	Mechanism string // SASLPlain, SASLSCRAMSHA256 or SASLSCRAMSHA512; empty: no SASL
	User      string
	Password  string
}

// Options configure a Sink. Only Brokers is required; the zero value of the
// rest is an idempotent, non-transactional producer with acks=all, the
// client's default compression (snappy), and topics that must exist.
type Options struct {
	Brokers []string // host:port of the seed brokers
	TLS     *tls.Config
	SASL    SASL
	// Compression is one of Compressions; empty means snappy.
	Compression string
	// Acks is AcksAll (also when empty) or AcksLeader. AcksLeader turns off
	// the idempotent producer, which needs acks=all, and cannot be used
	// with Transactional.
	Acks string
	// FallbackTopic receives records that routing left without a topic.
	// When empty such a record fails its batch.
	FallbackTopic string
	// Topics are checked (created with CreateTopics) at Open, so that a
	// missing topic fails at start; topics met later are checked when
	// first written to.
	Topics []string
	// CreateTopics creates missing topics with Partitions partitions and
	// Replication replicas (0 for either: the broker's default). Without
	// it a missing topic is an error that names it.
	CreateTopics bool
	Partitions   int32
	Replication  int16
	// MaxMessageBytes is the largest record the producer sends; 0 means
	// the client's default (about 1 MB, the broker's default
	// message.max.bytes). Raise both together.
	MaxMessageBytes int32

	// Transactional turns on exactly-once mode: each Write is a
	// transaction that also writes the sink's position to OffsetsTopic
	// under PositionKey. TransactionalID is required with it; two running
	// sinks with one id fence each other (the older one fails).
	Transactional   bool
	TransactionalID string
	// OffsetsTopic is DefaultOffsetsTopic when empty. pgfeed creates it
	// when missing (compacted, one partition), whatever CreateTopics says:
	// it is pgfeed's own bookkeeping.
	OffsetsTopic string
	// PositionKey is the record key of this sink's position; the
	// transactional id when empty. Sinks that share an offsets topic need
	// keys of their own.
	PositionKey string
	// TransactionTimeout bounds how long the brokers keep a transaction of
	// a dead producer open (and so hold back read_committed consumers);
	// 0 means 40s.
	TransactionTimeout time.Duration
}

// Sink produces records to Kafka. It implements sink.Positioned; its
// Position is only known in exactly-once mode.
type Sink struct {
	opts Options
	cl   *kgo.Client
	adm  *kadm.Client

	mu     sync.Mutex // Close may come from another goroutine than Write
	known  map[string]bool
	names  map[string][]byte // header values, see name
	pos    sink.Position
	hasPos bool
	err    error // a fenced producer stays failed
	closed bool
	// stale is set when a transaction failed in a way that may hide a
	// commit (its EndTxn answer lost): the position is read again before
	// the next write.
	stale bool

	recs []kgo.Record
	ptrs []*kgo.Record
	hdrs []kgo.RecordHeader
	buf  []byte
}

var _ sink.Positioned = (*Sink)(nil)

// Open connects to the brokers and checks what a sink needs before it
// writes: that a broker answers and accepts the credentials, that
// Options.Topics, the fallback topic and (in exactly-once mode) the offsets
// topic exist or could be created; in exactly-once mode it also fences
// older producers of the same transactional id and reads the sink's
// position. Each error is one line that says what is wrong.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	if opts.Transactional && opts.TransactionalID == "" {
		return nil, errors.New("opening kafka sink: exactly-once mode needs a transactional id")
	}
	if opts.OffsetsTopic == "" {
		opts.OffsetsTopic = DefaultOffsetsTopic
	}
	if opts.PositionKey == "" {
		opts.PositionKey = opts.TransactionalID
	}
	if opts.TransactionTimeout <= 0 {
		opts.TransactionTimeout = 40 * time.Second
	}
	copts, err := clientOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("opening kafka sink: %w", err)
	}
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("opening kafka sink: %w", err)
	}
	s := &Sink{opts: opts, cl: cl, adm: kadm.NewClient(cl), known: make(map[string]bool), names: make(map[string][]byte)}
	if err := s.open(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sink) open(ctx context.Context) error {
	if err := s.cl.Ping(ctx); err != nil {
		return connectError(s.opts, err)
	}
	// Ping only asks for API versions; metadata exercises authorization too.
	if _, err := s.adm.BrokerMetadata(ctx); err != nil {
		return connectError(s.opts, err)
	}
	topics := append([]string(nil), s.opts.Topics...)
	if s.opts.FallbackTopic != "" {
		topics = append(topics, s.opts.FallbackTopic)
	}
	if err := s.ensureTopics(ctx, topics); err != nil {
		return err
	}
	if !s.opts.Transactional {
		return nil
	}
	if err := s.ensureOffsetsTopic(ctx); err != nil {
		return err
	}
	// Loading the producer id fences every older producer of the id and
	// aborts the transaction it left open, so that the position read next
	// is final.
	if _, _, err := s.cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("initializing transactional producer %q: %w", s.opts.TransactionalID, err)
	}
	pos, ok, err := readPosition(ctx, s.opts)
	if err != nil {
		return err
	}
	s.pos, s.hasPos = pos, ok
	return nil
}

// connectError turns a failure to reach or authenticate to the brokers
// into one line with a hint.
func connectError(opts Options, err error) error {
	brokers := strings.Join(opts.Brokers, ",")
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("authenticating to kafka at %s as %q (%s): %w; check user and password", brokers, opts.SASL.User, opts.SASL.Mechanism, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("authenticating to kafka at %s: the brokers do not accept %s: %w", brokers, opts.SASL.Mechanism, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("connecting to kafka at %s as %q: not authorized: %w", brokers, opts.SASL.User, err)
	case opts.SASL.Mechanism != "" && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		// Some brokers close the connection on bad credentials instead of
		// answering with an error.
		return fmt.Errorf("authenticating to kafka at %s as %q (%s): the broker closed the connection; check user, password and mechanism: %w", brokers, opts.SASL.User, opts.SASL.Mechanism, err)
	}
	return fmt.Errorf("connecting to kafka at %s: %w (is a broker running there? TLS or SASL needed?)", brokers, err)
}

func clientOpts(o Options) ([]kgo.Opt, error) {
	opts, err := kafkaclient.Opts(o.Brokers, o.TLS, o.SASL.Mechanism, o.SASL.User, o.SASL.Password)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		// Topics are checked before the first record goes to them; an
		// unknown topic after that (deleted meanwhile) fails the batch
		// instead of waiting forever.
		kgo.UnknownTopicRetries(4),
		// Write hands over whole batches and waits for them: lingering for
		// more records would only add latency.
		kgo.ProducerLinger(0),
	)
	switch o.Acks {
	case "", AcksAll:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case AcksLeader:
		if o.Transactional {
			return nil, errors.New("acks = \"leader\" cannot be used with transactions, which need acks=all")
		}
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	default:
		return nil, fmt.Errorf("unknown acks %q (have: all, leader)", o.Acks)
	}
	if o.Compression != "" {
		c, err := codec(o.Compression)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.ProducerBatchCompression(c))
	}
	if o.MaxMessageBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(o.MaxMessageBytes))
	}
	if o.Transactional {
		opts = append(opts, kgo.TransactionalID(o.TransactionalID), kgo.TransactionTimeout(o.TransactionTimeout))
	}
	return opts, nil
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q (have: %s)", name, strings.Join(Compressions, ", "))
}

// Write produces the batch and returns once the brokers acknowledged every
// record; in exactly-once mode the batch is one transaction, committed
// before Write returns. On error nothing counts as written: outside
// exactly-once mode a prefix of the batch may be in Kafka (and comes again
// with the redelivery), in exactly-once mode the transaction is aborted and
// read_committed consumers never see it. Write leaves the sink's position
// alone: the events of a caller that does not keep stream positions (a
// Kafka source's, whose partitions interleave) say nothing of them.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	return s.write(ctx, batch, 0, false)
}

// WriteAt is Write for a caller that follows one source's stream in order
// (the pipeline's worker): in exactly-once mode it commits with the records
// the position, that every transaction up to commit is held whole (0: none
// completes in this batch) and that the batch's last change event is
// written; and it first drops the records that the position says Kafka
// holds. Outside exactly-once mode it is Write.
func (s *Sink) WriteAt(ctx context.Context, batch []sink.Record, commit event.LSN) error {
	return s.write(ctx, batch, commit, true)
}

func (s *Sink) write(ctx context.Context, batch []sink.Record, commit event.LSN, positioned bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.err != nil {
		return s.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("producing to kafka: %w", err)
	}
	// Records over the size limit would make the broker refuse their
	// whole batch, again on every retry: they are set aside for the
	// pipeline's dead letter, and the others written.
	batch, tooBig := s.oversized(batch)
	positioned = positioned && s.opts.Transactional
	pos := s.pos
	if positioned {
		if s.stale {
			p, ok, err := readPosition(ctx, s.opts)
			if err != nil {
				return err
			}
			s.pos, s.hasPos, s.stale = p, ok, false
		}
		batch = s.unwritten(batch)
		pos = s.next(batch, commit)
	}
	if len(batch) == 0 && (!positioned || pos == s.pos) {
		return tooBig
	}
	if err := s.build(batch); err != nil {
		return err
	}
	if err := s.ensureTopics(ctx, s.batchTopics()); err != nil {
		return err
	}
	var err error
	if !s.opts.Transactional {
		err = s.produce(ctx, batch)
	} else {
		err = s.transact(ctx, batch, pos, positioned)
	}
	if err != nil {
		return err
	}
	return tooBig
}

// defaultMaxMessageBytes is franz-go's default largest batch, which is
// the broker's default message.max.bytes.
const defaultMaxMessageBytes = 1_000_012

// oversized returns the records of batch that fit the size limit, and a
// *sink.RejectedError (nil when every record fits) for the others, which
// the broker would refuse whatever the retry.
func (s *Sink) oversized(batch []sink.Record) ([]sink.Record, error) {
	limit := int(s.opts.MaxMessageBytes)
	if limit <= 0 {
		limit = defaultMaxMessageBytes
	}
	// Key, value and headers, plus what the record format adds around them.
	const overhead = 128
	size := func(r *sink.Record) int { return len(r.Key) + len(r.Value) + overhead }
	var rej *sink.RejectedError
	for i := range batch {
		if n := size(&batch[i]); n > limit {
			if rej == nil {
				rej = &sink.RejectedError{}
			}
			rej.Rejected = append(rej.Rejected, sink.Rejected{Index: i, Err: fmt.Errorf("record of about %d bytes is over max_message_bytes (%d): raise it with the topic's max.message.bytes, or drop large columns", n, limit)})
		}
	}
	if rej == nil {
		return batch, nil
	}
	fit := make([]sink.Record, 0, len(batch)-len(rej.Rejected))
	next := 0
	for i := range batch {
		if next < len(rej.Rejected) && rej.Rejected[next].Index == i {
			next++
			continue
		}
		fit = append(fit, batch[i])
	}
	return fit, rej
}

// unwritten drops the records that the committed position says Kafka
// holds already: a batch redelivered after a commit whose answer was lost,
// or after a restart from a checkpoint that lagged. Snapshot reads are
// never dropped (a snapshot read again is a new one).
func (s *Sink) unwritten(batch []sink.Record) []sink.Record {
	if !s.hasPos {
		return batch
	}
	held := func(e *event.Event) bool {
		if e == nil || e.Op == event.OpRead || e.CommitLSN == 0 {
			return false
		}
		return e.CommitLSN <= s.pos.Commit ||
			(e.CommitLSN == s.pos.LastCommit && e.Seq >= 1 && e.Seq <= s.pos.LastSeq)
	}
	n := 0
	for i := range batch {
		if held(batch[i].Event) {
			n++
		}
	}
	if n == 0 {
		return batch
	}
	out := make([]sink.Record, 0, len(batch)-n)
	for i := range batch {
		if !held(batch[i].Event) {
			out = append(out, batch[i])
		}
	}
	return out
}

// next returns the position the sink holds once batch is written.
func (s *Sink) next(batch []sink.Record, commit event.LSN) sink.Position {
	pos := s.pos
	if commit > pos.Commit {
		pos.Commit = commit
	}
	for i := len(batch) - 1; i >= 0; i-- {
		e := batch[i].Event
		if e == nil || e.Op == event.OpRead || e.Seq < 1 {
			continue // snapshot reads are never skipped on resume; schema events carry no seq
		}
		pos.LastCommit, pos.LastSeq = e.CommitLSN, e.Seq
		break
	}
	if pos.LastCommit <= pos.Commit {
		pos.LastCommit, pos.LastSeq = 0, 0
	}
	return pos
}

// build fills s.recs with the batch's records; their byte slices point into
// the batch and into s.buf, which stay untouched until the write is done.
func (s *Sink) build(batch []sink.Record) error {
	const perRecord = 6
	s.recs = s.recs[:0]
	s.ptrs = s.ptrs[:0]
	s.buf = s.buf[:0]
	if cap(s.hdrs) < perRecord*len(batch) {
		s.hdrs = make([]kgo.RecordHeader, 0, perRecord*len(batch))
	}
	s.hdrs = s.hdrs[:0]
	// Header values of each record (lsn, commit_lsn, seq) as offsets of s.buf.
	var spans [][4]int
	for i := range batch {
		r := &batch[i]
		topic := r.Topic
		if topic == "" {
			topic = s.opts.FallbackTopic
		}
		if topic == "" {
			return fmt.Errorf("producing record %d of the batch: routing gave it no topic, and no fallback topic is set", i)
		}
		var sp [4]int
		if e := r.Event; e != nil {
			sp[0] = len(s.buf)
			s.buf = e.LSN.AppendText(s.buf)
			sp[1] = len(s.buf)
			s.buf = e.CommitLSN.AppendText(s.buf)
			sp[2] = len(s.buf)
			s.buf = strconv.AppendInt(s.buf, int64(e.Seq), 10)
			sp[3] = len(s.buf)
		}
		spans = append(spans, sp)
		s.recs = append(s.recs, kgo.Record{Topic: topic, Key: r.Key, Value: r.Value})
	}
	// s.buf no longer grows: slices into it are stable now.
	for i := range batch {
		e := batch[i].Event
		if e == nil {
			continue
		}
		sp := spans[i]
		start := len(s.hdrs)
		s.hdrs = append(s.hdrs,
			kgo.RecordHeader{Key: "op", Value: s.name(e.Op.String())},
			kgo.RecordHeader{Key: "schema", Value: s.name(e.Schema)},
			kgo.RecordHeader{Key: "table", Value: s.name(e.Table)},
			kgo.RecordHeader{Key: "lsn", Value: s.buf[sp[0]:sp[1]:sp[1]]},
			kgo.RecordHeader{Key: "commit_lsn", Value: s.buf[sp[1]:sp[2]:sp[2]]},
			kgo.RecordHeader{Key: "seq", Value: s.buf[sp[2]:sp[3]:sp[3]]},
		)
		s.recs[i].Headers = s.hdrs[start:len(s.hdrs):len(s.hdrs)]
	}
	for i := range s.recs {
		s.ptrs = append(s.ptrs, &s.recs[i])
	}
	return nil
}

// name returns the bytes of an op, schema or table name for a header,
// shared by every record: the names are few, the records many.
func (s *Sink) name(n string) []byte {
	b, ok := s.names[n]
	if !ok {
		b = []byte(n)
		s.names[n] = b
	}
	return b[:len(b):len(b)]
}

func (s *Sink) batchTopics() []string {
	var topics []string
	for i := range s.recs {
		t := s.recs[i].Topic
		if !s.known[t] && !contains(topics, t) {
			topics = append(topics, t)
		}
	}
	return topics
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// produce sends the records and waits for every acknowledgement.
func (s *Sink) produce(ctx context.Context, batch []sink.Record) error {
	results := s.cl.ProduceSync(ctx, s.ptrs...)
	if r, err := firstErr(results); err != nil {
		return s.recordError(batch, r, err)
	}
	return nil
}

// firstErr returns the first failed record, except when records were too
// large: the broker refuses a whole batch of records to a partition, and
// the largest of them is the one to name.
func firstErr(results kgo.ProduceResults) (*kgo.Record, error) {
	var first, largest *kgo.ProduceResult
	for i := range results {
		r := &results[i]
		if r.Err == nil {
			continue
		}
		if first == nil {
			first = r
		}
		if tooLarge(r.Err) && (largest == nil || recordSize(r.Record) > recordSize(largest.Record)) {
			largest = r
		}
	}
	if largest != nil {
		return largest.Record, largest.Err
	}
	if first != nil {
		return first.Record, first.Err
	}
	return nil, nil
}

func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge)
}

func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// transact writes the records, and with positioned the position, in one
// transaction.
func (s *Sink) transact(ctx context.Context, batch []sink.Record, pos sink.Position, positioned bool) error {
	if err := s.cl.BeginTransaction(); err != nil {
		return s.txnError("beginning transaction", err)
	}
	if positioned {
		s.ptrs = append(s.ptrs, &kgo.Record{Topic: s.opts.OffsetsTopic, Key: []byte(s.opts.PositionKey), Value: encodePosition(pos)})
	}
	results := s.cl.ProduceSync(ctx, s.ptrs...)
	var failed error
	if r, err := firstErr(results); err != nil {
		if r.Topic == s.opts.OffsetsTopic {
			failed = fmt.Errorf("producing position to %s: %w", s.opts.OffsetsTopic, err)
		} else {
			failed = s.recordError(batch, r, err)
		}
	}
	// Ending a transaction must not be cut short: a cancelled EndTxn leaves
	// its outcome unknown.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if failed == nil {
		err := s.cl.EndTransaction(endCtx, kgo.TryCommit)
		if err == nil {
			if positioned {
				s.pos, s.hasPos = pos, true
			}
			return nil
		}
		failed = s.txnError("committing transaction", err)
	}
	if err := s.cl.AbortBufferedRecords(endCtx); err != nil {
		failed = errors.Join(failed, s.txnError("aborting transaction", err))
	} else if err := s.cl.EndTransaction(endCtx, kgo.TryAbort); err != nil {
		failed = errors.Join(failed, s.txnError("aborting transaction", err))
	}
	if positioned {
		s.stale = true
	}
	if fenced(failed) && s.err == nil {
		s.err = s.fencedError(failed)
	}
	if s.err != nil {
		return s.err
	}
	return failed
}

// fenced reports whether err says a newer producer took the transactional id.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}

func (s *Sink) fencedError(err error) error {
	return fmt.Errorf("producing to kafka: another producer with transactional id %q took over (two pgfeeds running one sink?); this one stops writing: %w", s.opts.TransactionalID, err)
}

// txnError wraps a transaction failure; a fenced producer fails for good.
func (s *Sink) txnError(doing string, err error) error {
	if fenced(err) {
		s.err = s.fencedError(err)
		return s.err
	}
	return fmt.Errorf("%s of transactional id %q: %w", doing, s.opts.TransactionalID, err)
}

// recordError names the record that failed.
func (s *Sink) recordError(batch []sink.Record, r *kgo.Record, err error) error {
	i := 0
	for i < len(s.recs) && &s.recs[i] != r {
		i++
	}
	what := fmt.Sprintf("record %d of the batch (topic %q", i, r.Topic)
	if i < len(batch) {
		if e := batch[i].Event; e != nil {
			what += fmt.Sprintf(", %s of %s.%s, commit_lsn %s seq %d", e.Op, e.Schema, e.Table, e.CommitLSN, e.Seq)
		}
		if batch[i].Key != nil {
			what += fmt.Sprintf(", key %.200s", batch[i].Key)
		}
	}
	what += fmt.Sprintf(", %d bytes)", recordSize(r))
	if tooLarge(err) {
		return fmt.Errorf("producing %s: too large for the broker: raise the topic's max.message.bytes and the sink's max_message_bytes, or drop large columns: %w", what, err)
	}
	return fmt.Errorf("producing %s: %w", what, err)
}

// Position returns the position committed by the newest transaction of this
// sink's transactional id: read from the offsets topic at Open, then kept
// by each WriteAt. Outside exactly-once mode it is always false.
func (s *Sink) Position(context.Context) (sink.Position, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos, s.hasPos, nil
}

// Close flushes nothing (Write already waited for every record) and
// closes the connections. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.cl.Close()
	return nil
}
