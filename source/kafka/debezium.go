package kafka

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// The record formats a Source reads (Options.Format).
const (
	FormatAuto     = ""         // each record by its shape
	FormatJSON     = "json"     // pgfeed's native JSON only
	FormatDebezium = "debezium" // Debezium's envelope only (JsonConverter, schemas on or off)
)

// The placeholder Debezium writes for a TOASTed value Postgres did not send.
const debeziumUnavailable = "__debezium_unavailable_value"

// DecodeRecord decodes one record's value (and, for Debezium, its key) in
// format, one of the Format constants. It returns a nil event and no error
// for records that carry nothing to deliver: tombstones (a null value) and
// Debezium's schema-change records. It is pure and never panics.
func DecodeRecord(format string, key, value []byte) (*event.Event, error) {
	if value == nil {
		return nil, nil // a tombstone: only there for log compaction
	}
	switch format {
	case FormatJSON:
		return Decode(value)
	case FormatDebezium:
		return DecodeDebezium(key, value)
	case FormatAuto:
		if isDebezium(value) {
			return DecodeDebezium(key, value)
		}
		return Decode(value)
	}
	return nil, fmt.Errorf("unknown record format %q (have: json, debezium)", format)
}

// isDebezium tells Debezium's envelope from native JSON by its top-level
// fields: a JsonConverter wrapper (an object or null "schema" beside
// "payload"; native JSON's "schema" is a string), a one-letter op, or a
// transaction or schema-change record, which have no op.
func isDebezium(b []byte) bool {
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return false
	}
	if _, ok := top["payload"]; ok {
		s := bytes.TrimSpace(top["schema"])
		return len(s) == 0 || s[0] == '{' || isNull(s)
	}
	if op, ok := top["op"]; ok {
		var s string
		return json.Unmarshal(op, &s) == nil && len(s) == 1
	}
	_, tx := top["status"]
	_, ddl := top["tableChanges"]
	return tx || ddl
}

// connectSchema is a Kafka Connect schema as JsonConverter writes it.
type connectSchema struct {
	Type       string            `json:"type"`
	Name       string            `json:"name"`
	Field      string            `json:"field"`
	Parameters map[string]string `json:"parameters"`
	Fields     []connectSchema   `json:"fields"`
	Items      *connectSchema    `json:"items"`
}

type dbzPayload struct {
	Op           string          `json:"op"`
	Before       json.RawMessage `json:"before"`
	After        json.RawMessage `json:"after"`
	Source       *dbzSource      `json:"source"`
	Message      *dbzMessage     `json:"message"`
	Status       string          `json:"status"` // transaction metadata: BEGIN or END
	ID           string          `json:"id"`     // "xid:commit LSN"
	TableChanges json.RawMessage `json:"tableChanges"`
}

type dbzSource struct {
	Schema   string  `json:"schema"`
	Table    string  `json:"table"`
	TxID     *uint64 `json:"txId"`
	LSN      *uint64 `json:"lsn"`
	TsMs     *int64  `json:"ts_ms"`
	TsUs     *int64  `json:"ts_us"`
	Sequence *string `json:"sequence"`
}

type dbzMessage struct {
	Prefix  string `json:"prefix"`
	Content []byte `json:"content"`
}

// unwrap splits a JsonConverter record into its schema (nil when schemas
// are off) and payload.
func unwrap(b []byte) (schema *connectSchema, payload json.RawMessage, err error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, nil, err
	}
	p, ok := top["payload"]
	if !ok {
		return nil, b, nil
	}
	if s := top["schema"]; !isNull(s) {
		schema = new(connectSchema)
		if err := json.Unmarshal(s, schema); err != nil {
			return nil, nil, fmt.Errorf("schema: %w", err)
		}
	}
	return schema, p, nil
}

// DecodeDebezium parses one record of Debezium's PostgreSQL envelope, the
// form a pgfeed sink with format = "debezium" writes, with or without the
// JsonConverter schema. key is the record's key (nil for a table without
// key). What the envelope cannot carry does not come back: see doc.go.
func DecodeDebezium(key, value []byte) (*event.Event, error) {
	e, err := decodeDebezium(key, value)
	if err != nil {
		return nil, fmt.Errorf("decoding debezium record: %w", err)
	}
	return e, nil
}

func decodeDebezium(key, value []byte) (*event.Event, error) {
	schema, raw, err := unwrap(value)
	if err != nil {
		return nil, err
	}
	if isNull(raw) {
		return nil, nil // a tombstone inside the converter's wrapper
	}
	var p dbzPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if p.Op == "" {
		switch {
		case p.Status != "":
			return dbzTransaction(&p)
		case p.TableChanges != nil:
			return nil, nil // a schema-change record: columns come with every row
		}
		return nil, errors.New(`payload has no "op"`)
	}
	e := &event.Event{}
	switch p.Op {
	case "c":
		e.Op = event.OpInsert
	case "u":
		e.Op = event.OpUpdate
	case "d":
		e.Op = event.OpDelete
	case "r":
		e.Op = event.OpRead
	case "t":
		e.Op = event.OpTruncate
	case "m":
		e.Op = event.OpMessage
	default:
		return nil, fmt.Errorf("unknown op %q (want c, u, d, r, t or m)", p.Op)
	}
	if p.Source == nil {
		return nil, errors.New(`payload has no "source"`)
	}
	if err := dbzSourceInto(e, p.Source); err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	switch e.Op {
	case event.OpMessage:
		if p.Message == nil {
			return nil, errors.New(`message event has no "message"`)
		}
		// Debezium does not say whether a message was transactional; only
		// transactional ones belong to a transaction with an id.
		e.Message = &event.Message{Prefix: p.Message.Prefix, Content: p.Message.Content, Transactional: e.XID != 0}
		if e.Message.Content == nil {
			e.Message.Content = []byte{}
		}
	case event.OpTruncate:
	default:
		if err := dbzRows(e, schema, key, &p); err != nil {
			return nil, fmt.Errorf("%s event: %w", e.Op, err)
		}
	}
	return e, nil
}

func dbzSourceInto(e *event.Event, s *dbzSource) error {
	e.Schema, e.Table = s.Schema, s.Table
	if s.LSN != nil {
		e.LSN = event.LSN(*s.LSN)
	}
	if s.TxID != nil {
		if *s.TxID > math.MaxUint32 {
			return fmt.Errorf("txId %d is not a 32-bit transaction id", *s.TxID)
		}
		e.XID = uint32(*s.TxID)
	}
	switch {
	case s.TsUs != nil:
		e.CommitTime = time.UnixMicro(*s.TsUs).UTC()
	case s.TsMs != nil:
		e.CommitTime = time.UnixMilli(*s.TsMs).UTC()
	}
	// sequence is the JSON text of ["commit LSN","LSN"] in decimal.
	if s.Sequence != nil {
		var seq []*string
		if err := json.Unmarshal([]byte(*s.Sequence), &seq); err != nil {
			return fmt.Errorf("sequence %q: %w", *s.Sequence, err)
		}
		if len(seq) > 0 && seq[0] != nil {
			n, err := strconv.ParseUint(*seq[0], 10, 64)
			if err != nil {
				return fmt.Errorf("sequence %q: %w", *s.Sequence, err)
			}
			e.CommitLSN = event.LSN(n)
		}
	}
	return nil
}

// dbzTransaction turns a transaction metadata record into a begin or
// commit event.
func dbzTransaction(p *dbzPayload) (*event.Event, error) {
	e := &event.Event{}
	switch p.Status {
	case "BEGIN":
		e.Op = event.OpBegin
	case "END":
		e.Op = event.OpCommit
	default:
		return nil, fmt.Errorf("unknown transaction status %q (want BEGIN or END)", p.Status)
	}
	xid, lsn, ok := strings.Cut(p.ID, ":")
	x, err1 := strconv.ParseUint(xid, 10, 32)
	l, err2 := strconv.ParseUint(lsn, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("transaction id %q is not xid:commit LSN", p.ID)
	}
	// The id names the commit only: the begin's own position and the
	// commit's end are not in the record.
	e.XID, e.CommitLSN, e.LSN = uint32(x), event.LSN(l), event.LSN(l)
	return e, nil
}

// dbzColumn is how one column's Debezium values become Postgres text.
type dbzColumn struct {
	typ    *event.Type
	schema *connectSchema // nil when schemas are off: values are inferred
}

func dbzRows(e *event.Event, schema *connectSchema, key []byte, p *dbzPayload) error {
	before, err := object(p.Before)
	if err != nil {
		return fmt.Errorf("before: %w", err)
	}
	after, err := object(p.After)
	if err != nil {
		return fmt.Errorf("after: %w", err)
	}
	keyNames, err := dbzKeyNames(key)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	rel := &event.Relation{Schema: e.Schema, Table: e.Table, Identity: event.IdentityDefault, NoKey: key == nil}
	var cols []dbzColumn
	index := map[string]int{}
	add := func(name string, c dbzColumn) {
		if i, ok := index[name]; ok {
			if cols[i].schema == nil {
				rel.Columns[i].Type = widen(rel.Columns[i].Type, c.typ)
				cols[i].typ = rel.Columns[i].Type
			}
			return
		}
		index[name] = len(rel.Columns)
		rel.Columns = append(rel.Columns, event.Column{Name: name, Type: c.typ})
		cols = append(cols, c)
	}
	// The schema lists every column with its Connect type; without it the
	// types are inferred from the values, like native JSON's.
	if rowSchema := rowFields(schema); rowSchema != nil {
		for i := range rowSchema {
			f := &rowSchema[i]
			add(f.Field, dbzColumn{typ: connectType(f), schema: f})
		}
	}
	for _, rows := range [][]field{after, before} {
		for _, f := range rows {
			add(f.name, dbzColumn{typ: inferType(f.raw)})
		}
	}
	for i := range rel.Columns {
		c := &rel.Columns[i]
		if c.Type == nil { // null in every row: nothing says more
			c.Type, cols[i].typ = typeText, typeText
		}
		_, isKey := keyNames[c.Name]
		c.Key = isKey || rel.NoKey
	}
	row := func(fields []field, raw json.RawMessage) (event.Row, error) {
		if isNull(raw) {
			return nil, nil
		}
		r := make(event.Row, len(rel.Columns))
		for _, f := range fields {
			i := index[f.name]
			v, err := dbzValue(f.raw, cols[i])
			if err != nil {
				return nil, fmt.Errorf("column %q: %w", f.name, err)
			}
			r[i] = v
		}
		return r, nil
	}
	if e.Before, err = row(before, p.Before); err != nil {
		return err
	}
	if e.After, err = row(after, p.After); err != nil {
		return err
	}
	keyOnly(e.Before, rel)
	e.Rel = rel
	return nil
}

// keyOnly turns an old row whose every non-key column is null back into
// the key-only old row Postgres sent under REPLICA IDENTITY DEFAULT:
// Debezium writes the columns it did not get as null.
func keyOnly(before event.Row, rel *event.Relation) {
	if before == nil || rel.NoKey {
		return
	}
	keys := 0
	for i, c := range rel.Columns {
		if c.Key {
			keys++
		} else if before[i].State != event.Null && before[i].State != event.Absent {
			return
		}
	}
	if keys == 0 || keys == len(rel.Columns) {
		return
	}
	for i, c := range rel.Columns {
		if !c.Key {
			before[i] = event.Value{State: event.Absent}
		}
	}
}

// rowFields returns the columns of the envelope schema's after (or before)
// struct; nil without a schema.
func rowFields(s *connectSchema) []connectSchema {
	if s == nil {
		return nil
	}
	for _, name := range []string{"after", "before"} {
		for _, f := range s.Fields {
			if f.Field == name && f.Type == "struct" {
				return f.Fields
			}
		}
	}
	return nil
}

// dbzKeyNames returns the column names of a key record; nil for no key.
func dbzKeyNames(key []byte) (map[string]struct{}, error) {
	if key == nil {
		return nil, nil
	}
	_, payload, err := unwrap(key)
	if err != nil {
		return nil, err
	}
	fields, err := object(payload)
	if err != nil {
		return nil, err
	}
	names := make(map[string]struct{}, len(fields))
	for _, f := range fields {
		names[f.name] = struct{}{}
	}
	return names, nil
}

// inferType is typeOf with a string placeholder taken for what it stands
// in for: nothing known.
func inferType(raw json.RawMessage) *event.Type {
	if isPlaceholder(raw) {
		return nil
	}
	return typeOf(raw)
}

func isPlaceholder(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	switch string(raw) {
	case `"` + debeziumUnavailable + `"`, `["` + debeziumUnavailable + `"]`:
		return true
	}
	// bytea's placeholder is the placeholder's bytes in base64.
	return string(raw) == `"`+base64.StdEncoding.EncodeToString([]byte(debeziumUnavailable))+`"`
}

// Built-in types of Connect schemas.
var (
	typeInt2       = event.BuiltinType(21)
	typeInt4       = event.BuiltinType(23)
	typeFloat4     = event.BuiltinType(700)
	typeBytea      = event.BuiltinType(17)
	typeNumeric    = event.BuiltinType(1700)
	typeDate       = event.BuiltinType(1082)
	typeTime       = event.BuiltinType(1083)
	typeTimetz     = event.BuiltinType(1266)
	typeTimestamp  = event.BuiltinType(1114)
	typeTimestamtz = event.BuiltinType(1184)
	typeInterval   = event.BuiltinType(1186)
	typeUUID       = event.BuiltinType(2950)
	typeXML        = event.BuiltinType(142)
)

// connectType is the Postgres type a Connect schema stands for, as far as
// it says: the semantic name first, then the base type.
func connectType(f *connectSchema) *event.Type {
	switch f.Name {
	case "org.apache.kafka.connect.data.Decimal", "io.debezium.data.VariableScaleDecimal":
		return typeNumeric
	case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
		return typeDate
	case "io.debezium.time.MicroTimestamp", "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
		return typeTimestamp
	case "io.debezium.time.ZonedTimestamp":
		return typeTimestamtz
	case "io.debezium.time.MicroTime", "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
		return typeTime
	case "io.debezium.time.ZonedTime":
		return typeTimetz
	case "io.debezium.time.MicroDuration":
		return typeInterval
	case "io.debezium.data.Json":
		return typeJSON
	case "io.debezium.data.Uuid":
		return typeUUID
	case "io.debezium.data.Xml":
		return typeXML
	}
	switch f.Type {
	case "int8", "int16":
		return typeInt2
	case "int32":
		return typeInt4
	case "int64":
		return typeInt
	case "float", "float32":
		return typeFloat4
	case "double", "float64":
		return typeFloat
	case "boolean":
		return typeBool
	case "bytes":
		return typeBytea
	case "array":
		if f.Items != nil {
			if t := connectType(f.Items); t != nil && t.Kind != event.KindArray {
				// Elements follow the native mapping: dates and times are
				// ISO strings, so their array is one of text.
				switch t.Kind {
				case event.KindInt, event.KindFloat, event.KindBool:
					return event.BuiltinType(arrayOID[t.OID])
				}
			}
		}
		return event.BuiltinType(1009) // text[]
	}
	return typeText
}

// arrayOID maps the element types an array schema can name to their array.
var arrayOID = map[uint32]uint32{16: 1000, 20: 1016, 21: 1005, 23: 1007, 700: 1021, 701: 1022}

// dbzValue turns one Debezium JSON value into Postgres's text form.
func dbzValue(raw json.RawMessage, c dbzColumn) (event.Value, error) {
	raw = bytes.TrimSpace(raw)
	if isNull(raw) {
		return event.Value{State: event.Null}, nil
	}
	if isPlaceholder(raw) {
		return event.Value{State: event.Unchanged}, nil
	}
	if c.schema == nil {
		return value(raw)
	}
	text := func(s string) (event.Value, error) { return event.Value{State: event.Text, Raw: []byte(s)}, nil }
	f := c.schema
	switch f.Name {
	case "org.apache.kafka.connect.data.Decimal":
		var b []byte
		if err := json.Unmarshal(raw, &b); err != nil {
			return event.Value{}, fmt.Errorf("decimal: %w", err)
		}
		scale, err := strconv.Atoi(f.Parameters["scale"])
		if err != nil {
			return event.Value{}, fmt.Errorf("decimal without a scale parameter: %w", err)
		}
		return text(formatDecimal(b, scale))
	case "io.debezium.data.VariableScaleDecimal":
		var v struct {
			Scale int    `json:"scale"`
			Value []byte `json:"value"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return event.Value{}, fmt.Errorf("variable scale decimal: %w", err)
		}
		return text(formatDecimal(v.Value, v.Scale))
	case "io.debezium.time.Date", "org.apache.kafka.connect.data.Date":
		n, err := integer(raw)
		if err != nil {
			return event.Value{}, err
		}
		switch n {
		case math.MaxInt32:
			return text("infinity")
		case math.MinInt32:
			return text("-infinity")
		}
		return text(pgDate(time.Unix(n*86400, 0).UTC(), "2006-01-02"))
	case "io.debezium.time.MicroTimestamp", "io.debezium.time.Timestamp", "org.apache.kafka.connect.data.Timestamp":
		n, err := integer(raw)
		if err != nil {
			return event.Value{}, err
		}
		switch n {
		case math.MaxInt64:
			return text("infinity")
		case math.MinInt64:
			return text("-infinity")
		}
		t := time.UnixMicro(n)
		if f.Name != "io.debezium.time.MicroTimestamp" {
			t = time.UnixMilli(n)
		}
		return text(pgDate(t.UTC(), "2006-01-02 15:04:05.999999"))
	case "io.debezium.time.ZonedTimestamp":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return event.Value{}, fmt.Errorf("zoned timestamp: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return text(s) // infinity, -infinity, BC: as written
		}
		return text(t.UTC().Format("2006-01-02 15:04:05.999999") + "+00")
	case "io.debezium.time.MicroTime", "io.debezium.time.Time", "org.apache.kafka.connect.data.Time":
		n, err := integer(raw)
		if err != nil {
			return event.Value{}, err
		}
		if f.Name != "io.debezium.time.MicroTime" {
			n *= 1000
		}
		return text(clock(n))
	case "io.debezium.time.ZonedTime":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return event.Value{}, fmt.Errorf("zoned time: %w", err)
		}
		if z, ok := strings.CutSuffix(s, "Z"); ok {
			s = z + "+00"
		}
		return text(s)
	case "io.debezium.time.MicroDuration":
		n, err := integer(raw)
		if err != nil {
			return event.Value{}, err
		}
		return text(interval(n))
	}
	switch f.Type {
	case "bytes":
		var b []byte
		if err := json.Unmarshal(raw, &b); err != nil {
			return event.Value{}, fmt.Errorf("bytes: %w", err)
		}
		return text(`\x` + hex.EncodeToString(b))
	case "array":
		return pgArray(raw)
	}
	return value(raw)
}

func integer(raw json.RawMessage) (int64, error) {
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want an integer, got %.40s", raw)
	}
	return n, nil
}

// formatDecimal prints the unscaled two's-complement big-endian integer b
// with scale digits after the point, as Postgres prints a numeric.
func formatDecimal(b []byte, scale int) string {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	digits := new(big.Int).Abs(n).String()
	sign := ""
	if n.Sign() < 0 {
		sign = "-"
	}
	if scale <= 0 {
		if n.Sign() == 0 || scale < -1000 {
			return sign + digits
		}
		return sign + digits + strings.Repeat("0", -scale)
	}
	if scale > 1000 {
		scale = 1000 // more than numeric allows: bound the padding
	}
	if len(digits) <= scale {
		digits = strings.Repeat("0", scale-len(digits)+1) + digits
	}
	return sign + digits[:len(digits)-scale] + "." + digits[len(digits)-scale:]
}

// pgDate formats t as Postgres prints it: years before 1 with " BC".
func pgDate(t time.Time, layout string) string {
	if y := t.Year(); y <= 0 {
		return t.AddDate(1-2*y, 0, 0).Format(layout) + " BC"
	}
	return t.Format(layout)
}

// clock prints microseconds since midnight as Postgres prints a time
// (24:00:00 included).
func clock(us int64) string {
	neg := us < 0
	if neg {
		us = -us
	}
	s := fmt.Sprintf("%02d:%02d:%02d", us/3_600_000_000, us/60_000_000%60, us/1_000_000%60)
	if frac := us % 1_000_000; frac != 0 {
		s += strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// interval prints a MicroDuration as a Postgres interval of days and time;
// Debezium counted months as 30.4375 days, so they come back as days.
func interval(us int64) string {
	days := us / 86_400_000_000
	rest := us % 86_400_000_000
	var parts []string
	switch days {
	case 0:
	case 1:
		parts = append(parts, "1 day")
	default:
		parts = append(parts, strconv.FormatInt(days, 10)+" days")
	}
	if rest != 0 || days == 0 {
		parts = append(parts, clock(rest))
	}
	return strings.Join(parts, " ")
}

// pgArray turns a JSON array of the native element mapping into an array
// literal of Postgres's text form.
func pgArray(raw json.RawMessage) (event.Value, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return event.Value{}, fmt.Errorf("array: %w", err)
	}
	b := []byte{'{'}
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		v, err := value(it)
		if err != nil {
			return event.Value{}, fmt.Errorf("array element %d: %w", i, err)
		}
		if v.State == event.Null {
			b = append(b, "NULL"...)
			continue
		}
		if bytes.HasPrefix(bytes.TrimSpace(it), []byte("[")) || bytes.HasPrefix(bytes.TrimSpace(it), []byte("{")) {
			return event.Value{}, fmt.Errorf("array element %d is not a scalar", i)
		}
		b = append(b, '"')
		for _, c := range v.Raw {
			if c == '"' || c == '\\' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		b = append(b, '"')
	}
	return event.Value{State: event.Text, Raw: append(b, '}')}, nil
}
