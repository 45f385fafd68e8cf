package encode

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/pgfeed/pgfeed/event"
)

// Avro writes binary Avro in the single-object encoding: the two bytes
// C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer's
// schema, then the datum. The fingerprint is taken over the Parsing
// Canonical Form as the specification defines it (logical types left out),
// which is what the Java and Python libraries compute, so a reader looks it
// up among the schemas it has seen and decodes with that one.
//
// Row and truncate events of a table use a record schema generated from the
// table's columns, named Envelope in the namespace
// "<ServerName>.<schema>.<table>" (names sanitised to Avro's [A-Za-z0-9_]):
//
//	op string                  "insert", "update", "delete", "read", "truncate"
//	schema, table string       the table's real names
//	lsn, commit_lsn long       WAL positions as numbers (event.LSN(x) prints them)
//	xid long, seq long
//	commit_time                null or long timestamp-micros
//	before, after              null or the record Value, one field per column
//	unchanged array<string>    columns whose unchanged TOASTed value was not sent
//	cascade, restart_identity  boolean, the options of a truncate
//
// Each Value field is a union of null and the column's type, default null;
// null also stands for columns Postgres did not send (non-key columns of a
// key-only old row, unchanged TOASTed values, which "unchanged" lists).
// Fields carry the column's real name ("pg_name", when sanitising changed
// it), its Postgres type ("pg_type") and, for key columns, "pg_key": true.
// Column types map to Avro as follows, exact in every case:
//   - smallint, integer: int; bigint, oid and other integers: long.
//   - real, double precision: double (NaN and infinities included).
//   - boolean: boolean. bytea: bytes.
//   - date: int with logicalType date (days since 1970-01-01).
//   - timestamp: long local-timestamp-micros; timestamptz: long
//     timestamp-micros (UTC); time: long time-micros. ±infinity is the
//     largest/smallest int or long, as Postgres stores it.
//   - uuid: string with logicalType uuid.
//   - numeric: string holding the exact decimal. Avro's decimal needs one
//     fixed scale, which a numeric without a modifier (the common case)
//     does not have, and cannot hold NaN or ±Infinity, which every numeric
//     column can.
//   - arrays: string holding the native JSON array, since the number of
//     dimensions is not part of a Postgres column type.
//   - json, jsonb: string holding the JSON text. Everything else (text,
//     varchar, interval, timetz, enums, ranges...): Postgres's text form.
//
// Logical messages use the fixed record Message (MessageSchema) and
// begin/commit the fixed record Transaction (TransactionSchema), both in the
// namespace ServerName ("pgfeed.Message" by default).
//
// Tables with key columns also have the record Key (same namespace),
// their key columns in table order, not nullable: Confluent uses it for
// record keys. Confluent wraps this encoder for the Confluent wire format,
// and sink/avrofile writes its datums into object container files.
//
// Schema events are how readers learn the table schemas: Encode of an
// OpSchema event returns the table's schema as JSON text (not a binary
// datum; it starts with '{', never with C3), and SchemaChanged tells a
// pipeline when to emit one, because the table is new to this encoder or
// its columns changed since the last schema event it encoded.
type Avro struct {
	ns          string
	rels        relCache[*avroRelation]
	message     avroFixed
	transaction avroFixed

	mu        sync.Mutex
	announced map[relKey]*avroRelation // schema last written for a schema event
}

type avroFixed struct {
	schema string
	header []byte
}

// avroRelation is what the encoder derives once per table shape.
type avroRelation struct {
	schema string
	header []byte // single-object header: magic and fingerprint
	convs  []avroConv
	// keySchema is the record Key of the key columns (event.Column.Key),
	// in the order of the table, and keyCols their indexes; "" when the
	// table has no key column.
	keySchema string
	keyCols   []int
}

// avroConv says how a column's text form becomes its Avro value.
type avroConv uint8

const (
	avroString avroConv = iota
	avroInt
	avroLong
	avroDouble
	avroBoolean
	avroBytes
	avroDate
	avroTimestampMicros
	avroLocalTimestampMicros
	avroTimeMicros
	avroJSONString // the native JSON of the value, as a string
)

// NewAvro returns an Avro encoder. It uses Options.ServerName.
func NewAvro(opts Options) (*Avro, error) {
	a := &Avro{ns: avroName(opts.serverName())}
	a.rels.build = a.buildRelation
	var err error
	a.message, err = newAvroFixed(`{"type":"record","name":"Message","namespace":"` + a.ns + `","fields":[` +
		`{"name":"op","type":"string"},` +
		`{"name":"lsn","type":"long"},` +
		`{"name":"commit_lsn","type":"long"},` +
		`{"name":"xid","type":"long"},` +
		`{"name":"commit_time","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null},` +
		`{"name":"seq","type":"long"},` +
		`{"name":"prefix","type":"string"},` +
		`{"name":"content","type":"bytes"},` +
		`{"name":"transactional","type":"boolean"}]}`)
	if err != nil {
		return nil, err
	}
	a.transaction, err = newAvroFixed(`{"type":"record","name":"Transaction","namespace":"` + a.ns + `","fields":[` +
		`{"name":"op","type":"string"},` +
		`{"name":"lsn","type":"long"},` +
		`{"name":"commit_lsn","type":"long"},` +
		`{"name":"end_lsn","type":"long"},` +
		`{"name":"xid","type":"long"},` +
		`{"name":"commit_time","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null}]}`)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// newAvroFixed prepares one of the encoder's constant schemas, whose only
// variable part is the sanitised namespace.
func newAvroFixed(schema string) (avroFixed, error) {
	header, err := singleObjectHeader(schema)
	if err != nil {
		return avroFixed{}, fmt.Errorf("preparing the avro schema %s: %w", schema, err)
	}
	return avroFixed{schema: schema, header: header}, nil
}

// MessageSchema returns the schema of logical message events.
func (a *Avro) MessageSchema() string { return a.message.schema }

// TransactionSchema returns the schema of begin and commit events.
func (a *Avro) TransactionSchema() string { return a.transaction.schema }

// Schema returns the schema of rel's row and truncate events, as JSON.
func (a *Avro) Schema(rel *event.Relation) (string, error) {
	r, err := a.rels.get(rel)
	if err != nil {
		return "", err
	}
	return r.schema, nil
}

// RecordSchema returns the schema of the record Encode writes for e: the
// table's for row and truncate events, MessageSchema or TransactionSchema.
func (a *Avro) RecordSchema(e *event.Event) (string, error) {
	if e == nil {
		return "", errNilEvent
	}
	switch e.Op {
	case event.OpMessage:
		return a.message.schema, nil
	case event.OpBegin, event.OpCommit:
		return a.transaction.schema, nil
	}
	if e.Rel == nil {
		return "", errNoRelation(FormatAvro, e)
	}
	return a.Schema(e.Rel)
}

// SchemaChanged reports whether rel's schema differs from the one the last
// schema event for its table carried, or no schema event for the table was
// encoded yet: the pipeline should then emit an OpSchema event for rel
// before its rows, so readers can decode them. It changes nothing; encoding
// the schema event does.
func (a *Avro) SchemaChanged(rel *event.Relation) bool {
	r, err := a.rels.get(rel)
	if err != nil {
		return true // Encode will report the error
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	last := a.announced[relKey{rel.Schema, rel.Table}]
	return last == nil || (last != r && last.schema != r.schema)
}

// Encode appends the single-object encoding of e to dst, or, for a schema
// event, the JSON text of its table's schema.
func (a *Avro) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	start := len(dst)
	switch e.Op {
	case event.OpInsert, event.OpUpdate, event.OpDelete, event.OpRead, event.OpTruncate:
		if e.Rel == nil {
			return dst, errNoRelation(FormatAvro, e)
		}
		r, err := a.rels.get(e.Rel)
		if err != nil {
			return dst, err
		}
		dst, err = appendAvroChange(dst, r.header, e, r)
		if err != nil {
			return dst[:start], err
		}
		return dst, nil
	case event.OpMessage:
		return appendAvroMessage(dst, a.message.header, e), nil
	case event.OpBegin, event.OpCommit:
		return appendAvroTransaction(dst, a.transaction.header, e), nil
	case event.OpSchema:
		if e.Rel == nil {
			return dst, errNoRelation(FormatAvro, e)
		}
		r, err := a.rels.get(e.Rel)
		if err != nil {
			return dst, err
		}
		a.mu.Lock()
		if a.announced == nil {
			a.announced = make(map[relKey]*avroRelation)
		}
		a.announced[relKey{e.Rel.Schema, e.Rel.Table}] = r
		a.mu.Unlock()
		return append(dst, r.schema...), nil
	}
	return dst, errUnknownOp(FormatAvro, e)
}

// appendAvroMessage appends header and the Message datum of e.
func appendAvroMessage(dst, header []byte, e *event.Event) []byte {
	var m event.Message
	if e.Message != nil {
		m = *e.Message
	}
	dst = append(dst, header...)
	dst = appendAvroString(dst, e.Op.String())
	dst = appendAvroLong(dst, int64(e.LSN))
	dst = appendAvroLong(dst, int64(e.CommitLSN))
	dst = appendAvroLong(dst, int64(e.XID))
	dst = appendAvroTime(dst, e)
	dst = appendAvroLong(dst, int64(e.Seq))
	dst = appendAvroString(dst, m.Prefix)
	dst = appendAvroBytes(dst, m.Content)
	return appendAvroBool(dst, m.Transactional)
}

// appendAvroTransaction appends header and the Transaction datum of e.
func appendAvroTransaction(dst, header []byte, e *event.Event) []byte {
	dst = append(dst, header...)
	dst = appendAvroString(dst, e.Op.String())
	dst = appendAvroLong(dst, int64(e.LSN))
	dst = appendAvroLong(dst, int64(e.CommitLSN))
	dst = appendAvroLong(dst, int64(e.EndLSN))
	dst = appendAvroLong(dst, int64(e.XID))
	return appendAvroTime(dst, e)
}

// appendAvroChange appends header and the Envelope datum of a row or
// truncate event.
func appendAvroChange(dst, header []byte, e *event.Event, r *avroRelation) ([]byte, error) {
	dst = append(dst, header...)
	dst = appendAvroString(dst, e.Op.String())
	dst = appendAvroString(dst, e.Rel.Schema)
	dst = appendAvroString(dst, e.Rel.Table)
	dst = appendAvroLong(dst, int64(e.LSN))
	dst = appendAvroLong(dst, int64(e.CommitLSN))
	dst = appendAvroLong(dst, int64(e.XID))
	dst = appendAvroTime(dst, e)
	dst = appendAvroLong(dst, int64(e.Seq))
	var err error
	before, after := e.Before, e.After
	if e.Op == event.OpTruncate {
		before, after = nil, nil
	}
	for _, row := range [2]event.Row{before, after} {
		if row == nil {
			dst = appendAvroLong(dst, 0)
			continue
		}
		dst = appendAvroLong(dst, 1)
		if dst, err = appendAvroRow(dst, e, r, row); err != nil {
			return dst, err
		}
	}
	// unchanged: one block with every name, then the empty block that ends
	// an Avro array.
	n := 0
	for _, v := range after {
		if v.State == event.Unchanged {
			n++
		}
	}
	if n > 0 {
		dst = appendAvroLong(dst, int64(n))
		for i, v := range after {
			if v.State == event.Unchanged && i < len(e.Rel.Columns) {
				dst = appendAvroString(dst, e.Rel.Columns[i].Name)
			}
		}
	}
	dst = appendAvroLong(dst, 0)
	dst = appendAvroBool(dst, e.Op == event.OpTruncate && e.Cascade)
	return appendAvroBool(dst, e.Op == event.OpTruncate && e.RestartIdentity), nil
}

func appendAvroRow(dst []byte, e *event.Event, r *avroRelation, row event.Row) ([]byte, error) {
	for i, conv := range r.convs {
		if i >= len(row) || row[i].State != event.Text {
			dst = appendAvroLong(dst, 0) // the union's null branch
			continue
		}
		dst = appendAvroLong(dst, 1)
		var ok bool
		col := &e.Rel.Columns[i]
		if dst, ok = appendAvroValue(dst, row[i].Raw, col.Type, conv); !ok {
			return dst, fmt.Errorf("encoding %s.%s column %q as avro: value %q is not a valid %s", e.Rel.Schema, e.Rel.Table, col.Name, row[i].Raw, typeName(col.Type))
		}
	}
	return dst, nil
}

func typeName(t *event.Type) string {
	if t == nil {
		return "unknown"
	}
	return t.Name
}

func appendAvroValue(dst, raw []byte, t *event.Type, conv avroConv) ([]byte, bool) {
	switch conv {
	case avroString:
		return appendAvroRaw(dst, raw), true
	case avroInt:
		v, ok := parseInt64(raw)
		if !ok || v < math.MinInt32 || v > math.MaxInt32 {
			return dst, false
		}
		return appendAvroLong(dst, v), true
	case avroLong:
		v, ok := parseInt64(raw)
		if !ok {
			return dst, false
		}
		return appendAvroLong(dst, v), true
	case avroDouble:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return dst, false
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), true
	case avroBoolean:
		return appendAvroBool(dst, len(raw) > 0 && raw[0] == 't'), true
	case avroBytes:
		if len(raw) >= 2 && raw[0] == '\\' && raw[1] == 'x' && len(raw)%2 == 0 {
			// The hex output format, the default since PostgreSQL 9.0:
			// decode straight into dst.
			dst = appendAvroLong(dst, int64(len(raw)-2)/2)
			out, err := hex.AppendDecode(dst, raw[2:])
			return out, err == nil
		}
		b, err := event.Value{State: event.Text, Raw: raw}.Decode(t)
		if err != nil {
			return dst, false
		}
		bs, ok := b.([]byte)
		return appendAvroBytes(dst, bs), ok
	case avroDate:
		d, ok := parseDate(raw)
		return appendAvroLong(dst, int64(d)), ok
	case avroTimestampMicros:
		us, ok := parseTimestamptz(raw)
		return appendAvroLong(dst, us), ok
	case avroLocalTimestampMicros:
		us, ok := parseTimestamp(raw)
		return appendAvroLong(dst, us), ok
	case avroTimeMicros:
		us, ok := parseTime(raw)
		return appendAvroLong(dst, us), ok
	case avroJSONString:
		// The length goes before the text but is known only after it:
		// write the text, then shift it to make room for the length.
		start := len(dst)
		dst = event.Value{State: event.Text, Raw: raw}.AppendJSON(dst, t)
		return prefixLength(dst, start), true
	}
	return dst, false
}

// prefixLength inserts the Avro length of dst[start:] before it.
func prefixLength(dst []byte, start int) []byte {
	n := len(dst) - start
	var buf [binary.MaxVarintLen64]byte
	l := binary.PutVarint(buf[:], int64(n))
	dst = append(dst, buf[:l]...)
	copy(dst[start+l:], dst[start:start+n])
	copy(dst[start:], buf[:l])
	return dst
}

// appendAvroLong writes an Avro int or long: zig-zag, then base-128
// varint, which is exactly encoding/binary's Varint.
func appendAvroLong(dst []byte, v int64) []byte { return binary.AppendVarint(dst, v) }

func appendAvroBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func appendAvroString(dst []byte, s string) []byte {
	dst = appendAvroLong(dst, int64(len(s)))
	return append(dst, s...)
}

func appendAvroRaw(dst, b []byte) []byte {
	dst = appendAvroLong(dst, int64(len(b)))
	return append(dst, b...)
}

func appendAvroBytes(dst, b []byte) []byte { return appendAvroRaw(dst, b) }

// appendAvroTime writes the nullable commit_time.
func appendAvroTime(dst []byte, e *event.Event) []byte {
	if e.CommitTime.IsZero() {
		return appendAvroLong(dst, 0)
	}
	dst = appendAvroLong(dst, 1)
	return appendAvroLong(dst, e.CommitTime.UnixMicro())
}

// parseInt64 parses a decimal integer without allocating.
func parseInt64(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

func (a *Avro) buildRelation(rel *event.Relation) (*avroRelation, error) {
	r := &avroRelation{convs: make([]avroConv, len(rel.Columns))}
	s := append([]byte(nil), `{"type":"record","name":"Envelope","namespace":"`...)
	s = append(s, a.ns...)
	s = append(s, '.')
	s = append(s, avroName(rel.Schema)...)
	s = append(s, '.')
	s = append(s, avroName(rel.Table)...)
	s = append(s, `","fields":[`+
		`{"name":"op","type":"string"},`+
		`{"name":"schema","type":"string"},`+
		`{"name":"table","type":"string"},`+
		`{"name":"lsn","type":"long"},`+
		`{"name":"commit_lsn","type":"long"},`+
		`{"name":"xid","type":"long"},`+
		`{"name":"commit_time","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null},`+
		`{"name":"seq","type":"long"},`+
		`{"name":"before","type":["null",{"type":"record","name":"Value","fields":[`...)
	used := make(map[string]bool, len(rel.Columns))
	var key []byte // the fields of the Key record
	for i := range rel.Columns {
		col := &rel.Columns[i]
		if i > 0 {
			s = append(s, ',')
		}
		name := avroName(col.Name)
		for n := 2; used[name]; n++ {
			name = avroName(col.Name) + "_" + strconv.Itoa(n)
		}
		used[name] = true
		var typ string
		typ, r.convs[i] = avroType(col.Type)
		s = append(s, `{"name":"`...)
		s = append(s, name...)
		s = append(s, `","type":["null",`...)
		s = append(s, typ...)
		s = append(s, `],"default":null`...)
		if name != col.Name {
			s = append(s, `,"pg_name":`...)
			s = event.AppendJSONString(s, col.Name)
		}
		s = append(s, `,"pg_type":`...)
		s = event.AppendJSONString(s, typeName(col.Type))
		if col.Key {
			s = append(s, `,"pg_key":true`...)
			// Key fields are not nullable, as in Debezium's key records: a
			// key with a null or unsent column is no key (EncodeKey).
			if len(key) > 0 {
				key = append(key, ',')
			}
			key = append(key, `{"name":"`...)
			key = append(key, name...)
			key = append(key, `","type":`...)
			key = append(key, typ...)
			if name != col.Name {
				key = append(key, `,"pg_name":`...)
				key = event.AppendJSONString(key, col.Name)
			}
			key = append(key, `,"pg_type":`...)
			key = event.AppendJSONString(key, typeName(col.Type))
			key = append(key, '}')
			r.keyCols = append(r.keyCols, i)
		}
		s = append(s, '}')
	}
	if len(r.keyCols) > 0 {
		k := append([]byte(nil), `{"type":"record","name":"Key","namespace":"`...)
		k = append(k, a.ns...)
		k = append(k, '.')
		k = append(k, avroName(rel.Schema)...)
		k = append(k, '.')
		k = append(k, avroName(rel.Table)...)
		k = append(k, `","fields":[`...)
		k = append(k, key...)
		r.keySchema = string(append(k, "]}"...))
		if _, err := avro.ParseWithCache(r.keySchema, "", &avro.SchemaCache{}); err != nil {
			return nil, fmt.Errorf("building the avro key schema of %s.%s: %w", rel.Schema, rel.Table, err)
		}
	}
	s = append(s, `]}],"default":null},`+
		`{"name":"after","type":["null","Value"],"default":null},`+
		`{"name":"unchanged","type":{"type":"array","items":"string"},"default":[]},`+
		`{"name":"cascade","type":"boolean","default":false},`+
		`{"name":"restart_identity","type":"boolean","default":false}]}`...)
	r.schema = string(s)
	header, err := singleObjectHeader(r.schema)
	if err != nil {
		return nil, fmt.Errorf("building the avro schema of %s.%s: %w", rel.Schema, rel.Table, err)
	}
	r.header = header
	return r, nil
}

// avroType returns the Avro type of a column (without the null branch) and
// how its values are converted.
func avroType(t *event.Type) (string, avroConv) {
	if t == nil {
		return `"string"`, avroString
	}
	switch t.Kind {
	case event.KindInt:
		if t.OID == oidInt2 || t.OID == oidInt4 {
			return `"int"`, avroInt
		}
		return `"long"`, avroLong
	case event.KindFloat:
		return `"double"`, avroDouble
	case event.KindBool:
		return `"boolean"`, avroBoolean
	case event.KindBytea:
		return `"bytes"`, avroBytes
	case event.KindDate:
		return `{"type":"int","logicalType":"date"}`, avroDate
	case event.KindTimestamp:
		return `{"type":"long","logicalType":"local-timestamp-micros"}`, avroLocalTimestampMicros
	case event.KindTimestamptz:
		return `{"type":"long","logicalType":"timestamp-micros"}`, avroTimestampMicros
	case event.KindArray:
		return `"string"`, avroJSONString
	}
	switch t.OID {
	case oidTime:
		return `{"type":"long","logicalType":"time-micros"}`, avroTimeMicros
	case oidUUID:
		return `{"type":"string","logicalType":"uuid"}`, avroString
	}
	return `"string"`, avroString // text, numeric, json, and the rest: the text form
}

// avroName turns an identifier into a valid Avro name: letters, digits and
// underscores, not starting with a digit. Other characters, multi-byte ones
// included, become one underscore each.
func avroName(s string) string {
	b := make([]byte, 0, len(s)+1)
	for _, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b = append(b, byte(r))
		} else {
			b = append(b, '_')
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		b = append([]byte{'_'}, b...)
	}
	return string(b)
}
