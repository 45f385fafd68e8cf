package encode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// Debezium writes events in the envelope of Debezium's PostgreSQL connector
// (the 2.6+ shape: envelope version 2, ts_us and ts_ns), so consumers
// written for Debezium read pgfeed unchanged:
//
//	{"schema":{...},"payload":{"before":null,"after":{"id":2,"data":"2"},
//	 "source":{"version":"pgfeed","connector":"postgresql","name":"pgfeed","ts_ms":1795237...,
//	   "snapshot":"false","db":"app","sequence":"[\"23791520\",\"23791432\"]",
//	   "ts_us":1795237...,"ts_ns":1795237...,
//	   "schema":"public","table":"data","txId":732,"lsn":23791432,"xmin":null},
//	 "transaction":null,"op":"c","ts_ms":1795237...,"ts_us":..,"ts_ns":..}}
//
// The "schema" part is the Kafka Connect schema JsonConverter writes with
// schemas.enable=true, Debezium's default; Options.DebeziumPayloadOnly
// leaves it out and writes the payload object alone. Each row event also
// has a key record (EncodeKey: the primary key columns, with the schema
// "<server>.<schema>.<table>.Key"), and each delete is followed by a
// tombstone (Tombstone) unless Options.DebeziumNoTombstones.
//
// Envelope fields: op is c (insert), u (update), d (delete), r (read, a
// snapshot row) or t (truncate, written only with Options.DebeziumTruncates:
// Debezium skips truncates by default, and so an encoded truncate is
// empty). source.ts_ms is the commit time in
// milliseconds, ts_us and ts_ns in micro- and nanoseconds (the processing
// time when an event has none, like Debezium's snapshot rows); payload
// ts_ms, ts_us and ts_ns are when pgfeed encoded the event (Options.Now).
// source.lsn is the change's own WAL position as a number and txId the
// transaction id (null when zero). source.sequence is the JSON text
// of ["commit LSN","LSN"] in decimal: Debezium puts the previous commit
// there; pgfeed puts the event's own transaction's commit, which is equally
// monotonic in delivery order and, unlike the previous commit, identifies
// the transaction. snapshot is "true" for read events ("last" is never
// written: the encoder does not know which row is the last) and "false"
// otherwise. xmin is null, as Debezium writes it without
// xmin.fetch.interval.ms, and transaction null unless
// Options.DebeziumTransactionMetadata. Like
// Debezium, before carries what Postgres sent: null on updates under
// REPLICA IDENTITY DEFAULT that keep the key, the key columns (others null)
// on such deletes, the whole old row under FULL. Tombstones after deletes
// are records of their own: see Tombstone.
//
// Column values follow Debezium's defaults where that is cheap and exact,
// and otherwise the setting a Debezium user would pick:
//   - smallint, integer, bigint, oid: numbers (int16/int32/int64).
//   - real, double precision: numbers (float/double); NaN and ±Infinity are
//     the strings "NaN", "Infinity", "-Infinity", since JSON has no such
//     numbers.
//   - numeric: decimal.handling.mode precise (Options.DebeziumDecimalHandling):
//     numeric(p,s) as Kafka Connect Decimal (base64 of the unscaled
//     two's-complement integer, scale and precision in the schema), numeric
//     without scale as io.debezium.data.VariableScaleDecimal ({"scale":..,
//     "value":..}); NaN and ±Infinity are null. "string" and "double" write
//     exact decimal strings or JSON numbers. money: a Decimal of scale 2 (or
//     a string or number).
//   - boolean: true/false. bytea: base64 (binary.handling.mode=bytes).
//   - date: days since 1970-01-01 (io.debezium.time.Date).
//   - timestamp: microseconds since the epoch (io.debezium.time.MicroTimestamp),
//     or milliseconds (io.debezium.time.Timestamp) for timestamp(0..3), as
//     time.precision.mode=adaptive does.
//   - time: microseconds since midnight (io.debezium.time.MicroTime), or
//     milliseconds (io.debezium.time.Time) for time(0..3).
//   - timestamptz: an ISO-8601 string in UTC (io.debezium.time.ZonedTimestamp),
//     timetz: "04:56:29.368123Z" normalised to UTC (io.debezium.time.ZonedTime).
//   - ±infinity dates and timestamps: the largest and smallest int32/int64,
//     the values Postgres itself stores for them; timestamptz infinities are
//     the strings "infinity" and "-infinity".
//   - json, jsonb: a string holding the JSON text (io.debezium.data.Json);
//     uuid (io.debezium.data.Uuid), xml (io.debezium.data.Xml), enums,
//     ranges and every other type: Postgres's text form as a string.
//   - interval: microseconds (io.debezium.time.MicroDuration), months
//     counted as 365.25/12 days, as Debezium approximates them.
//   - arrays: JSON arrays (multi-dimensional ones flattened in row-major
//     order, one item type per column) whose elements follow the native mapping (so
//     elements of date or timestamp arrays are ISO strings); arrays of json
//     or jsonb are their Postgres text form as a string.
//   - An unchanged TOASTed value, which Postgres does not send, is
//     "__debezium_unavailable_value" (base64 of it for bytea, a one-element
//     array of it for arrays of strings), Debezium's placeholder; null for
//     the few types that cannot hold a string.
//
// Logical decoding messages are Debezium's message events (op "m", with
// message.prefix and base64 message.content); begin and commit are
// Debezium's transaction metadata records ({"status":"BEGIN"|"END","id":
// "xid:commit LSN",...}; END's event_count and data_collections count the
// transaction's events with DebeziumTransactionMetadata, and are null
// without it). Debezium's PostgreSQL connector has no schema
// change events; schema events are written in the shape of Debezium's
// schema-change records, with a subset of their column fields: {"source":..,
// "ts_ms":..,"databaseName":..,"schemaName":..,"ddl":null,"tableChanges":
// [{"type":"ALTER","id":"\"public\".\"data\"","table":{"primaryKeyColumnNames":
// [..],"columns":[{"name","typeName","typeExpression","position","optional"}]}}]}.
type Debezium struct {
	opts         Options
	sourceHead   []byte // `{"version":..,"connector":"postgresql","name":..,"ts_ms":`
	sourceSchema []byte // the Kafka Connect schema of "source"
	rels         relCache[*dbzRelation]

	txMu sync.Mutex
	txs  map[event.LSN]*dbzTxCount // by commit LSN, with DebeziumTransactionMetadata
}

// dbzTxCount counts the events of one transaction, for Debezium's
// transaction metadata.
type dbzTxCount struct {
	total  int64
	tables map[string]int64 // by "schema.table"
	order  []string         // the tables in order of their first event
}

// maxOpenTxs bounds the transactions counted at once: each is dropped at
// its END (commit), and the oldest when a caller never sends commits.
const maxOpenTxs = 64

// countTx counts e in its transaction and returns its total_order and
// data_collection_order.
func (d *Debezium) countTx(e *event.Event) (total, inTable int64) {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	c := d.txs[e.CommitLSN]
	if c == nil {
		if d.txs == nil {
			d.txs = map[event.LSN]*dbzTxCount{}
		}
		if len(d.txs) >= maxOpenTxs {
			oldest := e.CommitLSN
			for lsn := range d.txs {
				oldest = min(oldest, lsn)
			}
			delete(d.txs, oldest)
		}
		c = &dbzTxCount{tables: map[string]int64{}}
		d.txs[e.CommitLSN] = c
	}
	name := e.Schema + "." + e.Table
	if c.tables[name] == 0 {
		c.order = append(c.order, name)
	}
	c.total++
	c.tables[name]++
	return c.total, c.tables[name]
}

// endTx returns and forgets the counts of the transaction committed at lsn.
func (d *Debezium) endTx(lsn event.LSN) *dbzTxCount {
	d.txMu.Lock()
	defer d.txMu.Unlock()
	c := d.txs[lsn]
	delete(d.txs, lsn)
	return c
}

func appendTxID(dst []byte, e *event.Event) []byte {
	dst = appendUint(dst, uint64(e.XID))
	dst = append(dst, ':')
	return appendUint(dst, uint64(e.CommitLSN))
}

// The placeholder Debezium writes for values Postgres did not send.
const debeziumUnavailable = "__debezium_unavailable_value"

// NewDebezium returns a Debezium encoder. See Options for what it uses.
func NewDebezium(opts Options) *Debezium {
	d := &Debezium{opts: opts}
	version := opts.DebeziumVersion
	if version == "" {
		version = "pgfeed"
	}
	h := append([]byte(nil), `{"version":`...)
	h = event.AppendJSONString(h, version)
	h = append(h, `,"connector":"postgresql","name":`...)
	h = event.AppendJSONString(h, opts.serverName())
	d.sourceHead = append(h, `,"ts_ms":`...)
	d.sourceSchema = []byte(`{"type":"struct","fields":[` +
		`{"type":"string","optional":false,"field":"version"},` +
		`{"type":"string","optional":false,"field":"connector"},` +
		`{"type":"string","optional":false,"field":"name"},` +
		`{"type":"int64","optional":false,"field":"ts_ms"},` +
		`{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},` +
		`{"type":"string","optional":false,"field":"db"},` +
		`{"type":"string","optional":true,"field":"sequence"},` +
		`{"type":"int64","optional":true,"field":"ts_us"},` +
		`{"type":"int64","optional":true,"field":"ts_ns"},` +
		`{"type":"string","optional":false,"field":"schema"},` +
		`{"type":"string","optional":false,"field":"table"},` +
		`{"type":"int64","optional":true,"field":"txId"},` +
		`{"type":"int64","optional":true,"field":"lsn"},` +
		`{"type":"int64","optional":true,"field":"xmin"}` +
		`],"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"}`)
	d.rels.build = d.buildRelation
	return d
}

// Encode appends the Debezium form of e to dst.
func (d *Debezium) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	start := len(dst)
	var err error
	switch e.Op {
	case event.OpTruncate:
		if !d.opts.DebeziumTruncates {
			return dst, nil // skipped.operations=t, Debezium's default
		}
		dst, err = d.appendChange(dst, e)
	case event.OpInsert, event.OpUpdate, event.OpDelete, event.OpRead:
		dst, err = d.appendChange(dst, e)
	case event.OpMessage:
		dst = d.appendMessage(dst, e)
	case event.OpBegin, event.OpCommit:
		dst = d.appendTransaction(dst, e)
	case event.OpSchema:
		dst, err = d.appendSchemaChange(dst, e)
	default:
		err = errUnknownOp(FormatDebezium, e)
	}
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// dbzRelation is what the encoder derives once per table shape.
type dbzRelation struct {
	schema    []byte // the envelope's Kafka Connect schema
	keySchema []byte // the key's; nil for a table without key
	cols      []dbzColumn
}

type dbzColumn struct {
	conv        dbzConv
	placeholder string // JSON for an unchanged TOAST value
}

// dbzConv says how a column's text form becomes Debezium's JSON value.
type dbzConv uint8

const (
	dbzNative          dbzConv = iota // the native mapping (Value.AppendJSON)
	dbzText                           // Postgres's text form as a string
	dbzDate                           // days since the epoch
	dbzMicroTimestamp                 // microseconds since the epoch
	dbzMilliTimestamp                 // milliseconds since the epoch
	dbzMicroTime                      // microseconds since midnight
	dbzMilliTime                      // milliseconds since midnight
	dbzZonedTime                      // "HH:MM:SS.ffffffZ"
	dbzDecimal                        // Kafka Connect Decimal: base64 of the unscaled two's complement
	dbzVariableDecimal                // io.debezium.data.VariableScaleDecimal: {"scale":..,"value":..}
	dbzDouble                         // a numeric as a JSON number
	dbzMicroDuration                  // an interval in microseconds
	dbzMoney                          // money as a Decimal of scale 2
	dbzMoneyText                      // money as a decimal string
	dbzMoneyDouble                    // money as a JSON number
	dbzArray                          // an array, multi-dimensional ones flattened
	dbzHex                            // bytea as hex digits
)

// The binary.handling.mode values of Options.DebeziumBinaryHandling.
const (
	BinaryBytes  = "bytes"
	BinaryBase64 = "base64"
	BinaryHex    = "hex"
)

// The time.precision.mode values of Options.DebeziumTimePrecision.
const (
	TimeAdaptive             = "adaptive"
	TimeAdaptiveMicroseconds = "adaptive_time_microseconds"
	TimeConnect              = "connect"
)

// The decimal.handling.mode values of Options.DebeziumDecimalHandling.
const (
	DecimalPrecise = "precise"
	DecimalString  = "string"
	DecimalDouble  = "double"
)

func (d *Debezium) buildRelation(rel *event.Relation) (*dbzRelation, error) {
	r := &dbzRelation{cols: make([]dbzColumn, len(rel.Columns))}
	var fields []byte
	for i := range rel.Columns {
		col := &rel.Columns[i]
		if i > 0 {
			fields = append(fields, ',')
		}
		var conv dbzConv
		fields, conv, r.cols[i].placeholder = appendDebeziumField(fields, col, rel.NoKey, &d.opts)
		r.cols[i].conv = conv
	}
	prefix := d.opts.serverName() + "." + rel.Schema + "." + rel.Table
	value := func(field string) []byte {
		s := append([]byte(`{"type":"struct","fields":[`), fields...)
		s = append(s, `],"optional":true,"name":`...)
		s = event.AppendJSONString(s, prefix+".Value")
		s = append(s, `,"field":"`...)
		s = append(s, field...)
		return append(s, `"}`...)
	}
	s := append([]byte(nil), `{"type":"struct","fields":[`...)
	s = append(s, value("before")...)
	s = append(s, ',')
	s = append(s, value("after")...)
	s = append(s, ',')
	s = append(s, d.sourceSchema...)
	s = append(s, `,{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}`...)
	s = append(s, `,{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"}`...)
	s = append(s, `],"optional":false,"name":`...)
	s = event.AppendJSONString(s, prefix+".Envelope")
	r.schema = append(s, `,"version":2}`...)

	// The key: the primary key's (or replica identity index's) columns,
	// none for a table without either, whose records Debezium sends
	// without a key.
	if !rel.NoKey {
		k := append([]byte(nil), `{"type":"struct","fields":[`...)
		n := 0
		for i := range rel.Columns {
			col := &rel.Columns[i]
			if !col.Key {
				continue
			}
			if n > 0 {
				k = append(k, ',')
			}
			n++
			k, _, _ = appendDebeziumField(k, col, false, &d.opts)
		}
		if n > 0 {
			k = append(k, `],"optional":false,"name":`...)
			k = event.AppendJSONString(k, prefix+".Key")
			r.keySchema = append(k, '}')
		}
	}
	return r, nil
}

// appendDebeziumField appends the Kafka Connect schema of one column and
// returns how its values are converted and what an unavailable value is.
func appendDebeziumField(dst []byte, col *event.Column, noKey bool, o *Options) ([]byte, dbzConv, string) {
	decimals := o.DebeziumDecimalHandling
	const unavailable = `"` + debeziumUnavailable + `"`
	var (
		typ         = "string"
		name        string
		conv        = dbzNative
		placeholder = unavailable
		items       string
		params      string // the schema's "parameters" object
		structOf    string // the fields of a struct schema
	)
	t := col.Type
	if t == nil {
		t = textType
	}
	precision := col.TypeMod // timestamp(p), time(p): the modifier is p; -1 means 6
	switch t.Kind {
	case event.KindInt:
		typ = intSchemaType(t)
	case event.KindNumeric:
		switch decimals {
		case DecimalString:
			conv = dbzText
		case DecimalDouble:
			typ, conv = "double", dbzDouble
		default: // precise
			if col.TypeMod >= 4 {
				m := int64(col.TypeMod) - 4
				precision, scale := (m>>16)&0xffff, ((m&0x7ff)^1024)-1024
				typ, name, conv = "bytes", "org.apache.kafka.connect.data.Decimal", dbzDecimal
				params = `{"scale":"` + strconv.FormatInt(scale, 10) + `","connect.decimal.precision":"` + strconv.FormatInt(precision, 10) + `"}`
			} else {
				typ, name, conv = "struct", "io.debezium.data.VariableScaleDecimal", dbzVariableDecimal
				structOf = `[{"type":"int32","optional":false,"field":"scale"},{"type":"bytes","optional":false,"field":"value"}]`
			}
		}
	case event.KindFloat:
		typ = floatSchemaType(t)
	case event.KindBool:
		typ = "boolean"
	case event.KindBytea:
		switch o.DebeziumBinaryHandling {
		case BinaryBase64:
		case BinaryHex:
			conv, placeholder = dbzHex, `"`+hex.EncodeToString([]byte(debeziumUnavailable))+`"`
		default:
			typ = "bytes"
		}
		if conv == dbzNative {
			placeholder = `"` + base64.StdEncoding.EncodeToString([]byte(debeziumUnavailable)) + `"`
		}
	case event.KindJSON:
		name, conv = "io.debezium.data.Json", dbzText
	case event.KindDate:
		typ, name, conv = "int32", "io.debezium.time.Date", dbzDate
		if o.DebeziumTimePrecision == TimeConnect {
			name = "org.apache.kafka.connect.data.Date"
		}
	case event.KindTimestamp:
		typ, name, conv = "int64", "io.debezium.time.MicroTimestamp", dbzMicroTimestamp
		switch {
		case o.DebeziumTimePrecision == TimeConnect:
			name, conv = "org.apache.kafka.connect.data.Timestamp", dbzMilliTimestamp
		case precision >= 0 && precision <= 3:
			name, conv = "io.debezium.time.Timestamp", dbzMilliTimestamp
		}
	case event.KindTimestamptz:
		name = "io.debezium.time.ZonedTimestamp"
	case event.KindArray:
		if t.Elem == nil || t.Elem.Kind == event.KindJSON {
			conv = dbzText
			break
		}
		typ, conv = "array", dbzArray
		items = elemSchemaType(t.Elem)
		if items != "string" {
			placeholder = "null"
		} else {
			placeholder = "[" + unavailable + "]"
		}
	default: // text-like types, told apart by OID
		switch t.OID {
		case oidTime:
			typ, name, conv = "int64", "io.debezium.time.MicroTime", dbzMicroTime
			switch {
			case o.DebeziumTimePrecision == TimeConnect:
				typ, name, conv = "int32", "org.apache.kafka.connect.data.Time", dbzMilliTime
			case o.DebeziumTimePrecision == TimeAdaptiveMicroseconds:
			case precision >= 0 && precision <= 3:
				typ, name, conv = "int32", "io.debezium.time.Time", dbzMilliTime
			}
		case oidTimetz:
			name, conv = "io.debezium.time.ZonedTime", dbzZonedTime
		case oidInterval:
			typ, name, conv = "int64", "io.debezium.time.MicroDuration", dbzMicroDuration
		case oidMoney:
			switch decimals {
			case DecimalString:
				conv = dbzMoneyText
			case DecimalDouble:
				typ, conv = "double", dbzMoneyDouble
			default:
				typ, name, conv = "bytes", "org.apache.kafka.connect.data.Decimal", dbzMoney
				params = `{"scale":"2"}`
			}
		case oidUUID:
			name = "io.debezium.data.Uuid"
		case oidXML:
			name = "io.debezium.data.Xml"
		}
	}
	if typ != "string" && typ != "bytes" && typ != "array" {
		placeholder = "null" // numbers, booleans and temporal integers are never TOASTed
	}
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, '"')
	if structOf != "" {
		dst = append(dst, `,"fields":`...)
		dst = append(dst, structOf...)
	}
	if items != "" {
		dst = append(dst, `,"items":{"type":"`...)
		dst = append(dst, items...)
		dst = append(dst, `","optional":true}`...)
	}
	// Key columns of a primary key or replica identity index are NOT NULL;
	// a table with neither keys on every column, and none is known to be.
	optional := !col.Key || noKey
	if optional {
		dst = append(dst, `,"optional":true`...)
	} else {
		dst = append(dst, `,"optional":false`...)
	}
	if name != "" {
		dst = append(dst, `,"name":"`...)
		dst = append(dst, name...)
		dst = append(dst, `","version":1`...)
	}
	if params != "" {
		dst = append(dst, `,"parameters":`...)
		dst = append(dst, params...)
	}
	dst = append(dst, `,"field":`...)
	dst = event.AppendJSONString(dst, col.Name)
	dst = append(dst, '}')
	return dst, conv, placeholder
}

func intSchemaType(t *event.Type) string {
	switch t.OID {
	case oidInt2:
		return "int16"
	case oidInt4:
		return "int32"
	}
	return "int64"
}

func floatSchemaType(t *event.Type) string {
	if t.OID == oidFloat4 {
		return "float"
	}
	return "double"
}

// elemSchemaType is the Connect type of an array element under the native
// mapping, which is what array elements are written with.
func elemSchemaType(t *event.Type) string {
	switch t.Kind {
	case event.KindInt:
		return intSchemaType(t)
	case event.KindFloat:
		return floatSchemaType(t)
	case event.KindBool:
		return "boolean"
	case event.KindBytea:
		return "bytes"
	}
	return "string"
}

func (d *Debezium) appendChange(dst []byte, e *event.Event) ([]byte, error) {
	if e.Rel == nil {
		return dst, errNoRelation(FormatDebezium, e)
	}
	r, err := d.rels.get(e.Rel)
	if err != nil {
		return dst, err
	}
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, `{"schema":`...)
		dst = append(dst, r.schema...)
		dst = append(dst, `,"payload":`...)
	}
	dst = append(dst, `{"before":`...)
	if dst, err = d.appendRow(dst, e, r, e.Before); err != nil {
		return dst, err
	}
	dst = append(dst, `,"after":`...)
	if dst, err = d.appendRow(dst, e, r, e.After); err != nil {
		return dst, err
	}
	dst = append(dst, `,"source":`...)
	now := d.opts.now()
	dst = d.appendSource(dst, e, e.Schema, e.Table, now)
	if d.opts.DebeziumTransactionMetadata && e.Op != event.OpRead && e.CommitLSN != 0 {
		total, inTable := d.countTx(e)
		dst = append(dst, `,"transaction":{"id":"`...)
		dst = appendTxID(dst, e)
		dst = append(dst, `","total_order":`...)
		dst = appendInt(dst, total)
		dst = append(dst, `,"data_collection_order":`...)
		dst = appendInt(dst, inTable)
		dst = append(dst, `},"op":"`...)
	} else {
		dst = append(dst, `,"transaction":null,"op":"`...)
	}
	switch e.Op {
	case event.OpInsert:
		dst = append(dst, 'c')
	case event.OpUpdate:
		dst = append(dst, 'u')
	case event.OpDelete:
		dst = append(dst, 'd')
	case event.OpRead:
		dst = append(dst, 'r')
	case event.OpTruncate:
		dst = append(dst, 't')
	}
	dst = append(dst, '"')
	dst = appendTimes(dst, now)
	dst = append(dst, '}')
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, '}')
	}
	return dst, nil
}

// appendTimes appends "ts_ms", "ts_us" and "ts_ns" of t.
func appendTimes(dst []byte, t time.Time) []byte {
	dst = append(dst, `,"ts_ms":`...)
	dst = appendInt(dst, t.UnixMilli())
	dst = append(dst, `,"ts_us":`...)
	dst = appendInt(dst, t.UnixMicro())
	dst = append(dst, `,"ts_ns":`...)
	return appendInt(dst, t.UnixNano())
}

// EncodeKey appends the Kafka record key Debezium gives a row event: a
// struct of the table's primary key (or replica identity index) columns,
// {"schema":{..,"name":"<server>.<schema>.<table>.Key"},"payload":{"id":2}}
// (the payload alone with DebeziumPayloadOnly), with the columns' value
// encodings. It reports false, and appends nothing, for events without a
// key: tables without primary key or identity index, which Debezium sends
// with a null key, and events that are neither row changes nor messages,
// whose key is {"prefix":..} (io.debezium.connector.postgresql.MessageKey)
// (KeyEncoder).
func (d *Debezium) EncodeKey(dst []byte, e *event.Event) ([]byte, bool, error) {
	if e != nil && e.Op == event.OpMessage && e.Message != nil {
		// A logical decoding message's key is its prefix.
		if !d.opts.DebeziumPayloadOnly {
			dst = append(dst, `{"schema":{"type":"struct","fields":[{"type":"string","optional":true,"field":"prefix"}],"optional":false,"name":"io.debezium.connector.postgresql.MessageKey"},"payload":`...)
		}
		dst = append(dst, `{"prefix":`...)
		dst = event.AppendJSONString(dst, e.Message.Prefix)
		dst = append(dst, '}')
		if !d.opts.DebeziumPayloadOnly {
			dst = append(dst, '}')
		}
		return dst, true, nil
	}
	if e == nil || e.Rel == nil || !e.Op.IsRowChange() {
		return dst, false, nil
	}
	r, err := d.rels.get(e.Rel)
	if err != nil || r.keySchema == nil {
		return dst, false, err
	}
	start := len(dst)
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, `{"schema":`...)
		dst = append(dst, r.keySchema...)
		dst = append(dst, `,"payload":`...)
	}
	dst = append(dst, '{')
	n := 0
	for i := range e.Rel.Columns {
		col := &e.Rel.Columns[i]
		if !col.Key {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = event.AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		v, ok := keyValue(e.After, i)
		if !ok {
			v, ok = keyValue(e.Before, i)
		}
		if !ok || v.State != event.Text {
			dst = append(dst, "null"...)
			continue
		}
		if dst, err = appendDebeziumValue(dst, v.Raw, col, r.cols[i].conv); err != nil {
			return dst[:start], false, fmt.Errorf("encoding the key of %s.%s, column %q, as debezium: %w", e.Schema, e.Table, col.Name, err)
		}
	}
	dst = append(dst, '}')
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, '}')
	}
	return dst, true, nil
}

// keyValue returns column i of row if the row holds a value for it: an
// update that leaves a TOASTed key column alone sends it in the old row only.
func keyValue(row event.Row, i int) (event.Value, bool) {
	if i >= len(row) {
		return event.Value{}, false
	}
	v := row[i]
	return v, v.State == event.Text || v.State == event.Null
}

// Tombstone reports whether e is followed by a tombstone, a record with
// e's key and a null value, so that Kafka's log compaction can drop the
// key: after every delete of a table with a key, unless
// DebeziumNoTombstones (Debezium's tombstones.on.delete) (Tombstoner).
func (d *Debezium) Tombstone(e *event.Event) bool {
	return !d.opts.DebeziumNoTombstones && e != nil && e.Op == event.OpDelete && e.Rel != nil && !e.Rel.NoKey
}

// appendRow writes every column of the relation, as JsonConverter does for a
// struct: columns Postgres did not send are null.
func (d *Debezium) appendRow(dst []byte, e *event.Event, r *dbzRelation, row event.Row) ([]byte, error) {
	if row == nil || e.Op == event.OpTruncate {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '{')
	for i := range e.Rel.Columns {
		col := &e.Rel.Columns[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = event.AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		if i >= len(row) {
			dst = append(dst, "null"...)
			continue
		}
		switch v := row[i]; v.State {
		case event.Text:
			var err error
			if dst, err = appendDebeziumValue(dst, v.Raw, col, r.cols[i].conv); err != nil {
				return dst, fmt.Errorf("encoding %s.%s column %q as debezium: %w", e.Schema, e.Table, col.Name, err)
			}
		case event.Unchanged:
			dst = append(dst, r.cols[i].placeholder...)
		default:
			dst = append(dst, "null"...)
		}
	}
	return append(dst, '}'), nil
}

// appendFlatArray appends an array under the native mapping of its
// elements, in one dimension: a Connect schema has one item type per
// column, and pgoutput does not say how many dimensions a column has, so
// {{1,2},{3,4}} is written [1,2,3,4] (row-major order) and agrees with it.
func appendFlatArray(dst, raw []byte, t *event.Type) ([]byte, error) {
	start := len(dst)
	dst = event.Value{State: event.Text, Raw: raw}.AppendJSON(dst, t)
	out := dst[start:]
	if len(out) < 2 || out[0] != '[' || out[1] != '[' {
		return dst, nil // one dimension (or empty): as it is
	}
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	var nested []any
	if err := d.Decode(&nested); err != nil {
		return dst[:start], fmt.Errorf("flattening array %q: %w", raw, err)
	}
	var flat []any
	var walk func(v any)
	walk = func(v any) {
		if a, ok := v.([]any); ok {
			for _, x := range a {
				walk(x)
			}
			return
		}
		flat = append(flat, v)
	}
	walk(nested)
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(flat); err != nil {
		return dst[:start], fmt.Errorf("flattening array %q: %w", raw, err)
	}
	return append(dst[:start], bytes.TrimRight(buf.Bytes(), "\n")...), nil
}

func appendDebeziumValue(dst, raw []byte, col *event.Column, conv dbzConv) ([]byte, error) {
	switch conv {
	case dbzNative:
		return event.Value{State: event.Text, Raw: raw}.AppendJSON(dst, col.Type), nil
	case dbzArray:
		return appendFlatArray(dst, raw, col.Type)
	case dbzHex:
		if len(raw) >= 2 && raw[0] == '\\' && raw[1] == 'x' {
			return appendRawString(dst, raw[2:]), nil
		}
	case dbzText:
		return appendRawString(dst, raw), nil
	case dbzDate:
		if days, ok := parseDate(raw); ok {
			return appendInt(dst, int64(days)), nil
		}
	case dbzMicroTimestamp, dbzMilliTimestamp:
		if us, ok := parseTimestamp(raw); ok {
			if conv == dbzMilliTimestamp && us != timestampInfinity && us != timestampNegInfinity {
				us = floorDiv(us, 1000)
			}
			return appendInt(dst, us), nil
		}
	case dbzMicroTime, dbzMilliTime:
		if us, ok := parseTime(raw); ok {
			if conv == dbzMilliTime {
				us /= 1000
			}
			return appendInt(dst, us), nil
		}
	case dbzDecimal, dbzVariableDecimal, dbzDouble, dbzMoney, dbzMoneyText, dbzMoneyDouble:
		return appendDebeziumDecimal(dst, raw, col, conv)
	case dbzMicroDuration:
		if us, ok := parseIntervalMicros(raw); ok {
			return appendInt(dst, us), nil
		}
	case dbzZonedTime:
		if us, ok := parseTimetz(raw); ok {
			dst = append(dst, '"')
			dst = appendClock(dst, us)
			return append(dst, `Z"`...), nil
		}
	}
	return dst, fmt.Errorf("value %q is not in the ISO form of %s (is the session's DateStyle ISO?)", raw, col.Type.Name)
}

// appendSource writes Debezium's source block. schema and table are empty
// for events that belong to no table (messages).
func (d *Debezium) appendSource(dst []byte, e *event.Event, schema, table string, now time.Time) []byte {
	dst = append(dst, d.sourceHead...)
	ts := now
	if !e.CommitTime.IsZero() {
		ts = e.CommitTime
	}
	dst = appendInt(dst, ts.UnixMilli())
	if e.Op == event.OpRead {
		dst = append(dst, `,"snapshot":"true","db":`...)
	} else {
		dst = append(dst, `,"snapshot":"false","db":`...)
	}
	dst = event.AppendJSONString(dst, d.opts.Database)
	dst = append(dst, `,"sequence":"[`...)
	if e.CommitLSN == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, `\"`...)
		dst = appendUint(dst, uint64(e.CommitLSN))
		dst = append(dst, `\"`...)
	}
	dst = append(dst, `,\"`...)
	dst = appendUint(dst, uint64(e.LSN))
	dst = append(dst, `\"]","ts_us":`...)
	dst = appendInt(dst, ts.UnixMicro())
	dst = append(dst, `,"ts_ns":`...)
	dst = appendInt(dst, ts.UnixNano())
	dst = append(dst, `,"schema":`...)
	dst = event.AppendJSONString(dst, schema)
	dst = append(dst, `,"table":`...)
	dst = event.AppendJSONString(dst, table)
	dst = append(dst, `,"txId":`...)
	dst = appendUintOrNull(dst, uint64(e.XID))
	dst = append(dst, `,"lsn":`...)
	dst = appendUintOrNull(dst, uint64(e.LSN))
	return append(dst, `,"xmin":null}`...)
}

func appendUintOrNull(dst []byte, v uint64) []byte {
	if v == 0 {
		return append(dst, "null"...)
	}
	return appendUint(dst, v)
}

func (d *Debezium) appendMessage(dst []byte, e *event.Event) []byte {
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, `{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"op"},{"type":"int64","optional":true,"field":"ts_ms"},`...)
		dst = append(dst, d.sourceSchema...)
		dst = append(dst, `,{"type":"struct","fields":[{"type":"string","optional":false,"field":"prefix"},{"type":"bytes","optional":true,"field":"content"}],"optional":false,"name":"io.debezium.connector.postgresql.Message","field":"message"}],"optional":false,"name":"io.debezium.connector.postgresql.MessageValue"},"payload":`...)
	}
	now := d.opts.now()
	dst = append(dst, `{"op":"m","ts_ms":`...)
	dst = appendInt(dst, now.UnixMilli())
	dst = append(dst, `,"source":`...)
	dst = d.appendSource(dst, e, "", "", now)
	dst = append(dst, `,"message":{"prefix":`...)
	var m event.Message
	if e.Message != nil {
		m = *e.Message
	}
	dst = event.AppendJSONString(dst, m.Prefix)
	dst = append(dst, `,"content":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, m.Content)
	dst = append(dst, `"}}`...)
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, '}')
	}
	return dst
}

func (d *Debezium) appendTransaction(dst []byte, e *event.Event) []byte {
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, `{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"status"},{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":true,"field":"event_count"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"data_collection"},{"type":"int64","optional":false,"field":"event_count"}],"optional":false},"optional":true,"field":"data_collections"},{"type":"int64","optional":false,"field":"ts_ms"}],"optional":false,"name":"io.debezium.connector.common.TransactionMetadataValue","version":1},"payload":`...)
	}
	if e.Op == event.OpBegin {
		dst = append(dst, `{"status":"BEGIN","id":"`...)
	} else {
		dst = append(dst, `{"status":"END","id":"`...)
	}
	dst = appendTxID(dst, e)
	var c *dbzTxCount
	if e.Op == event.OpCommit && d.opts.DebeziumTransactionMetadata {
		c = d.endTx(e.CommitLSN)
		if c == nil {
			c = &dbzTxCount{} // a transaction of no event this encoder saw
		}
	}
	if c == nil {
		dst = append(dst, `","event_count":null,"data_collections":null,"ts_ms":`...)
	} else {
		dst = append(dst, `","event_count":`...)
		dst = appendInt(dst, c.total)
		dst = append(dst, `,"data_collections":[`...)
		for i, name := range c.order {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"data_collection":`...)
			dst = event.AppendJSONString(dst, name)
			dst = append(dst, `,"event_count":`...)
			dst = appendInt(dst, c.tables[name])
			dst = append(dst, '}')
		}
		dst = append(dst, `],"ts_ms":`...)
	}
	ts := e.CommitTime
	if ts.IsZero() {
		ts = d.opts.now()
	}
	dst = appendInt(dst, ts.UnixMilli())
	dst = append(dst, '}')
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, '}')
	}
	return dst
}

func (d *Debezium) appendSchemaChange(dst []byte, e *event.Event) ([]byte, error) {
	if e.Rel == nil {
		return dst, errNoRelation(FormatDebezium, e)
	}
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, `{"schema":{"type":"struct","fields":[`...)
		dst = append(dst, d.sourceSchema...)
		dst = append(dst, `,{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"field":"databaseName"},{"type":"string","optional":true,"field":"schemaName"},{"type":"string","optional":true,"field":"ddl"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"type"},{"type":"string","optional":false,"field":"id"},{"type":"struct","fields":[{"type":"array","items":{"type":"string","optional":false},"optional":true,"field":"primaryKeyColumnNames"},{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"name"},{"type":"string","optional":false,"field":"typeName"},{"type":"string","optional":true,"field":"typeExpression"},{"type":"int32","optional":false,"field":"position"},{"type":"boolean","optional":true,"field":"optional"}],"optional":false},"optional":false,"field":"columns"}],"optional":true,"field":"table"}],"optional":false},"optional":false,"field":"tableChanges"}],"optional":false,"name":"pgfeed.SchemaChangeValue"},"payload":`...)
	}
	rel := e.Rel
	now := d.opts.now()
	dst = append(dst, `{"source":`...)
	dst = d.appendSource(dst, e, rel.Schema, rel.Table, now)
	dst = append(dst, `,"ts_ms":`...)
	dst = appendInt(dst, now.UnixMilli())
	dst = append(dst, `,"databaseName":`...)
	dst = event.AppendJSONString(dst, d.opts.Database)
	dst = append(dst, `,"schemaName":`...)
	dst = event.AppendJSONString(dst, rel.Schema)
	dst = append(dst, `,"ddl":null,"tableChanges":[{"type":"ALTER","id":`...)
	dst = event.AppendJSONString(dst, quoteIdent(rel.Schema)+"."+quoteIdent(rel.Table))
	dst = append(dst, `,"table":{"primaryKeyColumnNames":[`...)
	n := 0
	for _, c := range rel.Columns {
		if c.Key && !rel.NoKey {
			if n > 0 {
				dst = append(dst, ',')
			}
			n++
			dst = event.AppendJSONString(dst, c.Name)
		}
	}
	dst = append(dst, `],"columns":[`...)
	for i := range rel.Columns {
		c := &rel.Columns[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"name":`...)
		dst = event.AppendJSONString(dst, c.Name)
		dst = append(dst, `,"typeName":`...)
		if c.Type != nil {
			dst = event.AppendJSONString(dst, c.Type.Name)
		} else {
			dst = append(dst, `"unknown"`...)
		}
		dst = append(dst, `,"typeExpression":`...)
		dst = appendFormatTypeJSON(dst, c)
		dst = append(dst, `,"position":`...)
		dst = appendInt(dst, int64(i+1))
		if !c.Key || rel.NoKey {
			dst = append(dst, `,"optional":true}`...)
		} else {
			dst = append(dst, `,"optional":false}`...)
		}
	}
	dst = append(dst, "]}}]}"...)
	if !d.opts.DebeziumPayloadOnly {
		dst = append(dst, '}')
	}
	return dst, nil
}

// quoteIdent quotes an identifier the way Debezium writes table ids:
// always in double quotes, inner quotes doubled.
func quoteIdent(s string) string {
	q := make([]byte, 0, len(s)+2)
	q = append(q, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			q = append(q, '"')
		}
		q = append(q, s[i])
	}
	return string(append(q, '"'))
}
