package config

import (
	"log/slog"
	"time"

	"github.com/pgfeed/pgfeed/route"
)

// Config is a parsed and validated configuration of `pgfeed run`.
type Config struct {
	// Checkpoint is the bbolt file that holds each source's acknowledged
	// position; "pgfeed.db" when not set. A relative path is relative to
	// the working directory, as every path of a command line is. The value
	// "postgres" keeps them in PostgreSQL instead (CheckpointStore).
	Checkpoint string
	// CheckpointStore is where checkpoints are kept: "" (the Checkpoint
	// file) or "postgres" (checkpoint = "postgres"; see HA).
	CheckpointStore string
	// CheckpointDSN is the database of a "postgres" store: the first
	// postgres source's DSN unless checkpoint_dsn is set.
	CheckpointDSN string
	// HA is active/passive operation ([ha]).
	HA   HA
	Log  Log
	HTTP HTTP
	// Sources and Sinks are in the order of the file.
	Sources []*Source
	Sinks   []*Sink
}

// Source returns the named source, or nil.
func (c *Config) Source(name string) *Source {
	for _, s := range c.Sources {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Sink returns the named sink, or nil.
func (c *Config) Sink(name string) *Sink {
	for _, s := range c.Sinks {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// SinksOf returns the sinks that read the named source, in file order.
func (c *Config) SinksOf(source string) []*Sink {
	var out []*Sink
	for _, s := range c.Sinks {
		for _, name := range s.Sources {
			if name == source {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Log configures logging ([log]).
type Log struct {
	Level  slog.Level // level = "debug", "info" (the default), "warn" or "error"
	Format string     // format = "text" (the default) or "json"
}

// HTTP configures the admin API and metrics server ([http]).
type HTTP struct {
	// Listen is the host:port to serve on; empty (the default) runs no
	// server. WebSocket sinks without a listen of their own are served here.
	Listen string
	// Token is the bearer token the /debug/ endpoints require; empty
	// allows them only on a loopback listen address.
	Token string
}

// Source types.
const (
	SourcePostgres = "postgres"
	SourceKafka    = "kafka"
)

// Source is a [sources.NAME] table: where changes come from.
type Source struct {
	// Name is the table's name; it names the source in sinks' sources, logs
	// and metrics, and so is limited to letters, digits, "_" and "-".
	Name string
	Type string // SourcePostgres (the default) or SourceKafka
	// Settings are the type's own: *PostgresSource or *KafkaSource.
	Settings SourceSettings
}

// SourceSettings is the part of a source's settings that depends on its
// type: *PostgresSource or *KafkaSource.
type SourceSettings interface{ sourceType() string }

// PostgresSource reads a database's changes through a replication slot.
type PostgresSource struct {
	DSN string // required; a URL or key=value connection string
	// Slot is the replication slot, "pgfeed_NAME" by default. Each source
	// has its own: two readers of one slot would each get part of the stream.
	Slot string
	// Publication is the publication the slot decodes; by default named as
	// the slot.
	Publication string
	Create      bool // create the slot and publication when missing
	// Tables and Exclude select the tables (route.ParseTablePattern); no
	// Tables means every table.
	Tables  []string
	Exclude []string
	// Snapshot delivers every row of the tables as read events when the
	// slot is created, so a sink starts with the whole data, not only what
	// changes afterwards.
	Snapshot bool
	Retain   Retain
	// Heartbeat is how often to check that the slot advances and write a
	// heartbeat when it does not; 0: the default (1m), negative: never.
	Heartbeat time.Duration
	// Failover creates the slot as a failover slot (PostgreSQL 17+), so
	// that a promoted standby has it; nil: wherever the server supports it.
	Failover *bool
	// Filters maps "schema.table" to a row filter, the expression of the
	// publication's WHERE for that table (route.NormalizeWhere), from
	// [sources.NAME.filter."schema.table"] where = "...". PostgreSQL 15 and
	// later apply it before a row leaves the server.
	Filters map[string]string
}

func (*PostgresSource) sourceType() string { return SourcePostgres }

// KafkaSource reads events that another pgfeed wrote to Kafka in the native
// JSON or the Debezium format, in a consumer group, as a read_committed consumer.
type KafkaSource struct {
	Brokers []string // host:port of the seed brokers; required
	Topics  []string // required
	Group   string   // consumer group; "pgfeed-NAME" by default
	TLS     *TLS     // [sources.NAME.tls]; nil: plaintext
	SASL    SASL     // [sources.NAME.sasl]
	// InstanceID makes this pgfeed a static member of the group: when it
	// restarts it takes its partitions back at once. Unique per pgfeed.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member; 0:
	// the client's default (45s).
	SessionTimeout time.Duration
	// Format of the records: "json" (pgfeed's native JSON), "debezium"
	// (Debezium's envelope, schemas on or off), or empty ("auto", the
	// default) to tell each record by its shape.
	Format string
}

func (*KafkaSource) sourceType() string { return SourceKafka }

// Sink types.
const (
	SinkStdout    = "stdout"
	SinkFile      = "file"
	SinkDiscard   = "discard"
	SinkKafka     = "kafka"
	SinkNATS      = "nats"
	SinkRedis     = "redis"
	SinkWebhook   = "webhook"
	SinkWebSocket = "websocket"
)

// Sink is a [sinks.NAME] table: where changes go, and what the sink does
// to them on the way.
type Sink struct {
	Name    string // as Source.Name
	Type    string // one of the Sink* constants
	Sources []string
	Format  string // json (the default), wal2json, wal2json2, debezium, cloudevents or avro
	// Avro is [sinks.NAME.avro], set when Format is avro (defaults filled in).
	Avro    *Avro
	Tables  Tables
	Columns Columns
	Route   Route
	// DeadLetter names the sink that receives this sink's poison records
	// (dead_letter = "NAME"): events that cannot be encoded, and records
	// the destination refuses for good (a webhook's 4xx), each in a JSON
	// envelope with the error. The named sink reads no source of its own.
	// Empty: a poison record stops the sink, which retries it and logs
	// that it is stuck, and never drops it.
	DeadLetter string
	// Settings are the type's own: *StdoutSink, *FileSink, *DiscardSink,
	// *KafkaSink, *NATSSink, *RedisSink, *WebhookSink or *WebSocketSink.
	Settings SinkSettings
}

// Tables is [sinks.NAME.tables]: the tables the sink gets, as table
// patterns (route.ParseTablePattern). No Include means every table the
// sink's sources deliver; Exclude wins over Include.
type Tables struct {
	Include []string
	Exclude []string
}

// Columns is [sinks.NAME.columns]: column patterns
// (route.ParseColumnPattern) the sink must not see whole.
type Columns struct {
	Drop []string // removed from rows, keys and relations
	Mask []string // values replaced by route.MaskText
}

// Route is [sinks.NAME.route]: the destination (topic, subject, stream,
// ...) of each event, as route.ParseTemplate templates.
type Route struct {
	// Default is the destination of table events: route.DefaultTemplate
	// unless set here or by the type's own key (topic for Kafka, subject
	// for NATS, stream or channel for Redis).
	Default string
	// Tables maps a table ("schema.table") to a destination of its own.
	Tables map[string]string
	// Other is the destination of events of no table (messages, begin and
	// commit): route.DefaultOtherTemplate unless set.
	Other string
}

// RouteOptions returns the sink's routing settings for route.New.
func (s *Sink) RouteOptions() route.Options {
	return route.Options{
		Include: s.Tables.Include,
		Exclude: s.Tables.Exclude,
		Drop:    s.Columns.Drop,
		Mask:    s.Columns.Mask,
		Default: s.Route.Default,
		Tables:  s.Route.Tables,
		Other:   s.Route.Other,
	}
}

// SinkSettings is the part of a sink's settings that depends on its type.
type SinkSettings interface{ sinkType() string }

// StdoutSink writes one event per line to standard output. It has no
// settings of its own.
type StdoutSink struct{}

// FileSink appends events to files.
type FileSink struct {
	Path        string        // where the sink writes; required
	RotateBytes int64         // start a new file past this size; 0: never
	RotateEvery time.Duration // start a new file this often; 0: never
}

// DiscardSink acknowledges every event without writing it: a source whose
// changes nobody needs for now still advances its slot through it.
type DiscardSink struct{}

// KafkaSink produces events to Kafka, one record per event, with the
// route's destination as topic and the event's key as record key. Zero
// values mean the sink's defaults (sink/kafka.Options).
type KafkaSink struct {
	Brokers []string // host:port of the seed brokers; required
	TLS     *TLS     // [sinks.NAME.tls]; nil: plaintext
	SASL    SASL     // [sinks.NAME.sasl]
	// Compression is none, gzip, snappy, lz4 or zstd; empty: snappy.
	Compression string
	// Acks is "all" (also when empty) or "leader", which turns off the
	// idempotent producer and cannot be used with Transactional.
	Acks string
	// FallbackTopic receives events that the route gives no topic.
	FallbackTopic string
	// CreateTopics creates missing topics with Partitions and Replication
	// (0: the broker's defaults); without it a missing topic is an error.
	CreateTopics bool
	Partitions   int32
	Replication  int16
	// MaxMessageBytes is the largest record the producer sends; 0: about
	// 1 MB, the broker's default max.message.bytes.
	MaxMessageBytes int64
	// Transactional is exactly-once mode: each batch and the sink's
	// position are one Kafka transaction. TransactionalID is then
	// required, and unique among every producer of the cluster.
	Transactional   bool
	TransactionalID string
	// OffsetsTopic keeps the positions of transactional sinks; empty:
	// "pgfeed.offsets".
	OffsetsTopic string
}

// SASL is a client's SASL authentication.
type SASL struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: none
	User      string
	Password  string
}

// NATSSink publishes events to NATS, with the route's destination as
// subject ("pgfeed.{schema}.{table}" unless subject or route.default says
// otherwise).
type NATSSink struct {
	URL string // nats://host:port, or several separated by commas; required
	// JetStream (jetstream, true by default) publishes to a stream, with
	// the event's identity as Nats-Msg-Id, and waits for every ack. False
	// publishes with core NATS: at-most-once, only for subscribers
	// connected at the time.
	JetStream bool
	// Stream (stream) is the JetStream stream to check at start, or to
	// create (create_stream). Without it, pgfeed checks that some stream
	// captures StreamSubjects.
	Stream       string
	CreateStream bool
	// StreamSubjects (stream_subjects) are the subject filters of the
	// stream: by default derived from the route's templates, each cut at
	// its first placeholder ("pgfeed.{schema}.{table}" gives "pgfeed.>").
	StreamSubjects []string
	// Settings of a created stream: duplicate_window (2m by default),
	// storage ("file", the default, or "memory"), replicas, max_age,
	// max_bytes.
	DuplicateWindow time.Duration
	Storage         string
	Replicas        int
	MaxAge          time.Duration
	MaxBytes        int64
	// Credentials, one way at most: user and password, token, creds (a
	// .creds file: the user JWT and NKey seed of an operator-mode account)
	// or nkey (a file holding an NKey user seed, "SU...").
	User, Password string
	Token          string
	Creds          string
	NKey           string
	TLS            *TLS
	// AckTimeout (ack_timeout, 30s by default) bounds the wait for each
	// acknowledgement.
	AckTimeout time.Duration
}

// Redis sink modes.
const (
	RedisStream  = "stream"  // XADD to a stream: kept until trimmed
	RedisChannel = "channel" // PUBLISH to a channel: only current subscribers get it
)

// RedisSink writes events to Redis streams or channels, named by the route.
type RedisSink struct {
	Addr     string // host:port; required
	Username string // for ACL users; empty: the default user
	Password string
	DB       int
	TLS      *TLS
	Mode     string // RedisStream (the default, set by stream =) or RedisChannel (channel =)
	// MaxLen (max_len) trims each stream to about this many entries
	// (XADD MAXLEN ~); 0, the default, never trims.
	MaxLen int64
	// Idempotent (idempotent, true by default for streams) skips events
	// that a stream already holds, so a redelivery after a crash is not
	// appended twice.
	Idempotent bool
	// Timeout (timeout, 10s by default) bounds connecting and each write.
	Timeout time.Duration
}

// Webhook modes.
const (
	WebhookBatch  = "batch"  // a JSON array of events per request
	WebhookSingle = "single" // one event per request
	// WebhookBinary is one CloudEvent per request in the HTTP binding's
	// binary content mode: attributes in ce-* headers, data as the body.
	// It needs format = "cloudevents".
	WebhookBinary = "binary"
)

// WebhookSink POSTs events to a URL.
type WebhookSink struct {
	URL     string            // http:// or https://; required
	Headers map[string]string // extra request headers, e.g. Authorization = "Bearer ${TOKEN}"
	Timeout time.Duration     // per request attempt; 10s by default
	// Secret signs every request with HMAC-SHA256 (X-Pgfeed-Signature);
	// empty: requests are not signed.
	Secret string
	Mode   string // WebhookBatch (the default), WebhookSingle or WebhookBinary
	// MaxBatch bounds the events of one request in batch mode (500).
	MaxBatch int
	// MaxInFlight bounds the requests open at once (1: in commit order).
	MaxInFlight int
	// Retries is how often a request is tried again after a 5xx, 429,
	// timeout or connection error before the write fails and the pipeline
	// writes the batch again (8); 0: never.
	Retries int
	// MinBackoff and MaxBackoff bound the wait between retries (200ms, 30s).
	MinBackoff, MaxBackoff time.Duration
	TLS                    *TLS // nil: the system's defaults for https
}

// WebSocketSink serves events to WebSocket clients.
type WebSocketSink struct {
	// Listen is the host:port to serve on; empty means the [http] server.
	Listen string
	Path   string // "/changes" by default
	// MaxLagRecords and MaxLagBytes bound what one client may hold sent
	// and unacked (max_lag_records, max_lag_bytes; 0: the sink's
	// defaults); beyond, its frames wait for its acks.
	MaxLagRecords int
	MaxLagBytes   int64
	// AckTimeout drops a client that holds frames unacked this long
	// without acking anything (ack_timeout; 0: the sink's default).
	AckTimeout time.Duration
}

func (*StdoutSink) sinkType() string    { return SinkStdout }
func (*FileSink) sinkType() string      { return SinkFile }
func (*DiscardSink) sinkType() string   { return SinkDiscard }
func (*KafkaSink) sinkType() string     { return SinkKafka }
func (*NATSSink) sinkType() string      { return SinkNATS }
func (*RedisSink) sinkType() string     { return SinkRedis }
func (*WebhookSink) sinkType() string   { return SinkWebhook }
func (*WebSocketSink) sinkType() string { return SinkWebSocket }
