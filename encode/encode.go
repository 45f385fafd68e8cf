package encode

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// Encoder turns an event into the bytes a sink writes.
//
// Encode appends the encoded event to dst and returns the extended slice. On
// error it returns dst unchanged (same length), so a caller batching many
// events into one buffer loses nothing already in it.
type Encoder interface {
	Encode(dst []byte, e *event.Event) ([]byte, error)
}

// KeyEncoder is implemented by formats whose records carry a key of their
// own, such as Debezium's key record with its schema: a sink's record key
// is then EncodeKey's output instead of the native JSON key. EncodeKey
// appends the key of e to dst and reports whether e has one; without one
// the record has no key.
type KeyEncoder interface {
	EncodeKey(dst []byte, e *event.Event) ([]byte, bool, error)
}

// Tombstoner is implemented by formats that follow some events with a
// tombstone: a record with the same key and a nil value (sink.Record.Value),
// which a compacted Kafka topic takes as "forget this key". Debezium writes
// one after each delete.
type Tombstoner interface {
	Tombstone(e *event.Event) bool
}

// The format names accepted by New.
const (
	FormatJSON        = "json"
	FormatWal2JSON    = "wal2json"
	FormatWal2JSON2   = "wal2json2"
	FormatDebezium    = "debezium"
	FormatCloudEvents = "cloudevents"
	FormatAvro        = "avro"
)

// Formats returns the format names New accepts, in the order the CLI lists them.
func Formats() []string {
	return []string{FormatJSON, FormatWal2JSON, FormatWal2JSON2, FormatDebezium, FormatCloudEvents, FormatAvro}
}

// Options configures the encoders. The zero value works: every field has a
// default, documented with the field. Fields that a format does not use are
// ignored by it.
type Options struct {
	// ServerName is the logical name of the source, Debezium's topic.prefix
	// (database.server.name before Debezium 2.0). Debezium puts it in
	// source.name and in the names of its schemas; Avro uses it as the root of
	// every record's namespace; CloudEvents derives the default Source from
	// it. Default "pgfeed".
	ServerName string

	// Database is the database name, Debezium's source.db. Default "", which
	// is valid but unhelpful: pipelines should set it.
	Database string

	// DebeziumPayloadOnly leaves out the Kafka Connect "schema" part of
	// Debezium events and writes the payload object alone, like Kafka
	// Connect's JsonConverter with schemas.enable=false. The default (false)
	// writes {"schema":...,"payload":...}, which is what a Debezium connector
	// writes with its default converter settings, so consumers written for a
	// stock Debezium deployment work unchanged.
	DebeziumPayloadOnly bool

	// DebeziumDecimalHandling is Debezium's decimal.handling.mode for
	// numeric and money: "precise" (the default, also for ""): Kafka
	// Connect Decimal bytes for numeric(p,s) and money,
	// io.debezium.data.VariableScaleDecimal for numeric without scale;
	// "string": exact decimal strings; "double": JSON numbers.
	DebeziumDecimalHandling string

	// DebeziumBinaryHandling is binary.handling.mode for bytea: "bytes"
	// (the default, also for ""; base64 in JSON under a bytes schema),
	// "base64" (a string schema) or "hex" (hex digits in a string).
	DebeziumBinaryHandling string

	// DebeziumTimePrecision is time.precision.mode: "adaptive" (the
	// default, also for ""; MicroTimestamp/Timestamp and MicroTime/Time by
	// the column's precision), "adaptive_time_microseconds" (time always
	// MicroTime) or "connect" (Kafka Connect's Date, Time and Timestamp, in
	// milliseconds).
	DebeziumTimePrecision string

	// DebeziumTransactionMetadata is provide.transaction.metadata: every
	// change carries "transaction":{"id":"xid:commit LSN","total_order":..,
	// "data_collection_order":..}, and END records (commit events, where a
	// caller passes them) count the transaction's events per table. The
	// counts are of the events this encoder saw. Default off, as in Debezium.
	DebeziumTransactionMetadata bool

	// DebeziumTruncates writes truncate events (op "t"), like Debezium with
	// "t" taken out of skipped.operations. By default, as in Debezium, a
	// truncate encodes to nothing, and pipelines write no record for it.
	DebeziumTruncates bool

	// DebeziumNoTombstones leaves out the tombstone (a record with the
	// delete's key and a null value) that follows each delete, like
	// Debezium's tombstones.on.delete=false. The default writes them, as
	// Debezium does, so compacted topics forget deleted rows.
	DebeziumNoTombstones bool

	// DebeziumVersion is what Debezium events report in source.version.
	// Default "pgfeed": the events are not made by a Debezium release, and a
	// consumer that branches on the version should know.
	DebeziumVersion string

	// CloudEventsSource is the CloudEvents "source" attribute, a URI
	// reference. Default "/pgfeed/<ServerName>/<Database>" (see
	// CloudEventsSource), "/pgfeed/<ServerName>" when Database is empty.
	CloudEventsSource string

	// Wal2JSON are the wal2json plugin options of the wal2json and
	// wal2json2 formats. Nil: include-xids, include-timestamp and
	// include-lsn, so that every transaction says its xid, commit time and
	// nextlsn, the position a pgdeltastream client acks.
	Wal2JSON *Wal2JSONOptions

	// Now is the clock for the fields that record when pgfeed processed an
	// event rather than when Postgres committed it (Debezium's payload.ts_ms,
	// the CloudEvents time of an event that carries no time of its own).
	// Default time.Now; tests pass a fixed clock.
	Now func() time.Time
}

func (o Options) serverName() string {
	if o.ServerName == "" {
		return "pgfeed"
	}
	return o.ServerName
}

func (o Options) wal2JSON() Wal2JSONOptions {
	if o.Wal2JSON == nil {
		return Wal2JSONOptions{Xids: true, Timestamp: true, LSN: true}
	}
	return *o.Wal2JSON
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// New returns the encoder of the named format ("json", "wal2json",
// "wal2json2", "debezium", "cloudevents" or "avro"); an empty name means
// "json". The wal2json encoder frames transactions (TxFramer) and so keeps
// state: each caller needs its own.
func New(format string, opts Options) (Encoder, error) {
	switch format {
	case FormatJSON, "":
		return JSON{}, nil
	case FormatWal2JSON:
		return NewWal2JSON(opts.wal2JSON()), nil
	case FormatWal2JSON2:
		return Wal2JSON2{Opts: opts.wal2JSON()}, nil
	case FormatDebezium:
		return NewDebezium(opts), nil
	case FormatCloudEvents:
		return NewCloudEvents(opts), nil
	case FormatAvro:
		a, err := NewAvro(opts)
		if err != nil {
			return nil, err // not a nil *Avro in a non-nil Encoder
		}
		return a, nil
	}
	return nil, fmt.Errorf("unknown format %q: use one of %s", format, strings.Join(Formats(), ", "))
}

// ContentType returns the media type of a format's output, for sinks that
// label what they write (an HTTP Content-Type, a Kafka header). CloudEvents
// gets the structured-mode type its HTTP binding asks for.
func ContentType(format string) string {
	switch format {
	case FormatCloudEvents:
		return "application/cloudevents+json"
	case FormatAvro:
		return "avro/binary"
	}
	return "application/json"
}

var errNilEvent = errors.New("encoding a nil event")

// errNoRelation is returned for row, truncate and schema events that do not
// carry their Relation: the formats that describe columns cannot work blind.
func errNoRelation(format string, e *event.Event) error {
	return fmt.Errorf("encoding %s event for %s.%s as %s: the event has no relation (columns)", e.Op, e.Schema, e.Table, format)
}

func errUnknownOp(format string, e *event.Event) error {
	return fmt.Errorf("encoding %s event as %s: the format has no rendering for it", e.Op, format)
}

// JSON is the native format of DESIGN.md: one object per event, as
// event.Event.AppendJSON writes it.
type JSON struct{}

// Encode appends the native JSON of e to dst.
func (JSON) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	return e.AppendJSON(dst), nil
}

// AppendKey appends the event's key as a JSON object of its key columns,
// such as {"id":2}, using the native type mapping, and reports whether there
// was one. The key comes from the new row when there is one, else from the
// old row. The key columns are the primary key or replica identity index,
// or every column of a table with neither (event.Column.Key). Events
// without a row, or whose key columns were not sent, have no key; dst is
// then returned unchanged. Sinks use it as the message key, so that every change of a row
// lands in the same partition.
func AppendKey(dst []byte, e *event.Event) ([]byte, bool) {
	if e == nil || e.Rel == nil {
		return dst, false
	}
	row := e.After
	if row == nil {
		row = e.Before
	}
	start := len(dst)
	n := 0
	for i := range e.Rel.Columns {
		col := &e.Rel.Columns[i]
		if !col.Key || i >= len(row) {
			continue
		}
		v := row[i]
		if v.State == event.Absent || v.State == event.Unchanged {
			continue
		}
		if n == 0 {
			dst = append(dst, '{')
		} else {
			dst = append(dst, ',')
		}
		n++
		dst = event.AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		dst = v.AppendJSON(dst, col.Type)
	}
	if n == 0 {
		return dst[:start], false
	}
	return append(dst, '}'), true
}

// Key returns the event's key as a JSON object ({"id":2}), or nil when the
// event has none. See AppendKey.
func Key(e *event.Event) []byte {
	k, ok := AppendKey(nil, e)
	if !ok {
		return nil
	}
	return k
}

// textType makes Value.AppendJSON write a value's Postgres text form as a
// JSON string, for formats that want the text where the native mapping
// would convert (wal2json's strings, Debezium's JSON-in-a-string).
var textType = &event.Type{Name: "text", Kind: event.KindText}

// appendRawString appends raw as a JSON string, escaped the way the native
// encoder escapes, without converting it to a Go string first.
func appendRawString(dst, raw []byte) []byte {
	return event.Value{State: event.Text, Raw: raw}.AppendJSON(dst, textType)
}

func appendUint(dst []byte, v uint64) []byte {
	if v < 10 {
		return append(dst, byte('0'+v))
	}
	var buf [20]byte
	i := len(buf)
	for v > 0 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(dst, buf[i:]...)
}

func appendInt(dst []byte, v int64) []byte {
	if v < 0 {
		dst = append(dst, '-')
		return appendUint(dst, uint64(-(v+1))+1)
	}
	return appendUint(dst, uint64(v))
}

// appendRFC3339Micro appends t in UTC with up to microsecond precision, the
// form the native JSON uses for commit_time.
func appendRFC3339Micro(dst []byte, t time.Time) []byte {
	return t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.999999Z")
}
