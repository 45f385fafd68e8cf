package encode

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// Wal2JSONOptions are the wal2json plugin options pgfeed honours, named
// after them. The zero value is the plugin's defaults: types with their
// modifiers, no xids, timestamps, positions, type OIDs or NOT NULL flags,
// every table, and the actions insert, update and delete (format-version 1)
// or all four (format-version 2).
type Wal2JSONOptions struct {
	Xids      bool // include-xids: "xid" of the transaction
	Timestamp bool // include-timestamp: its commit time
	// LSN is include-lsn: format-version 1 adds "nextlsn", the position
	// just after the transaction's commit record (what a consumer acks);
	// format-version 2 adds "lsn" to each action and "nextlsn" to commits.
	LSN      bool
	NoTypes  bool // include-types=false: no column types
	TypeOids bool // include-type-oids: "columntypeoids"/"keytypeoids", "typeoid"
	// NoTypmod is include-typmod=false: format-version 1 prints pg_type's
	// typname ("int4", "varchar") instead of format_type with modifiers.
	NoTypmod bool
	NotNull  bool // include-not-null: "columnoptionals", "optional"
	PK       bool // include-pk: the primary key's columns
	// NoTransaction is include-transaction=false: format-version 2 writes
	// no B and C actions.
	NoTransaction bool
	// FilterTables (filter-tables) leaves out the changes of these tables;
	// AddTables (add-tables), when set, keeps only theirs. Both in the
	// plugin's syntax: "schema.table", "*" for every schema or table, "\"
	// to escape a character.
	FilterTables, AddTables []string
	// Actions (actions) lists the kinds of change written: "insert",
	// "update", "delete", "truncate". Nil: the plugin's default.
	Actions []string
	// TimeZone prints timestamptz values and commit timestamps in this zone,
	// as the plugin does in a session whose TimeZone it is. Nil: UTC,
	// pgfeed's session time zone. Years BC and the infinities keep UTC.
	TimeZone *time.Location
	// Truncates writes truncates in format-version 1 transactions, as a
	// {"kind":"truncate","schema":..,"table":..} change. The plugin drops
	// them there (format-version 2 has its "T" action), and so does pgfeed
	// by default.
	Truncates bool
}

// keepTable applies filter-tables and add-tables.
func (o *Wal2JSONOptions) keepTable(schema, table string) bool {
	for _, t := range o.FilterTables {
		if matchWal2JSONTable(t, schema, table) {
			return false
		}
	}
	if o.AddTables == nil {
		return true
	}
	for _, t := range o.AddTables {
		if matchWal2JSONTable(t, schema, table) {
			return true
		}
	}
	return false
}

// keepAction applies actions; v2 says whether truncate is a default.
func (o *Wal2JSONOptions) keepAction(op event.Op, v2 bool) bool {
	name := ""
	switch op {
	case event.OpInsert, event.OpRead:
		name = "insert"
	case event.OpUpdate:
		name = "update"
	case event.OpDelete:
		name = "delete"
	case event.OpTruncate:
		name = "truncate"
		if o.Actions == nil {
			return v2
		}
	default:
		return true
	}
	if o.Actions == nil {
		return true
	}
	for _, a := range o.Actions {
		if a == name {
			return true
		}
	}
	return false
}

// matchWal2JSONTable matches "schema.table" as the plugin does: a leading
// "*." is every schema, a trailing ".*" every table, "\" escapes.
func matchWal2JSONTable(pattern, schema, table string) bool {
	allSchemas := strings.HasPrefix(pattern, "*.")
	var sch []byte
	i := 0
	for ; i < len(pattern) && pattern[i] != '.'; i++ {
		if pattern[i] == '\\' && i+1 < len(pattern) {
			i++
		}
		sch = append(sch, pattern[i])
	}
	if i >= len(pattern) {
		return false // no schema: the plugin refuses such a pattern
	}
	rest := pattern[i+1:]
	allTables := rest == "*"
	var tab []byte
	for k := 0; k < len(rest); k++ {
		if rest[k] == '\\' && k+1 < len(rest) {
			k++
		}
		tab = append(tab, rest[k])
	}
	return (allSchemas || string(sch) == schema) && (allTables || string(tab) == table)
}

// ParseWal2JSONOptions reads the plugin's options as pg_recvlogical's -o
// takes them, comma-separated: "include-xids=1,include-lsn=true". A name
// alone means true. The lists of filter-tables, add-tables and actions go
// on over the commas that follow them ("add-tables=public.a,public.b"): a
// table has a dot, an action is one of the four names. timezone=NAME (an
// IANA zone) is pgfeed's: the session time zone the plugin would print
// timestamps in (see TimeZone). format-version,
// write-in-chunks and pretty-print=0 are accepted (the format is chosen by
// the encoder; output is never pretty).
func ParseWal2JSONOptions(s string) (Wal2JSONOptions, error) {
	var o Wal2JSONOptions
	var list *[]string // the list option the last item opened
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, val, hasVal := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !hasVal && list != nil && (list != &o.Actions && strings.Contains(item, ".") || list == &o.Actions && isWal2JSONAction(item)) {
			*list = append(*list, item)
			continue
		}
		list = nil
		switch name {
		case "filter-tables", "add-tables", "actions":
			switch name {
			case "filter-tables":
				list = &o.FilterTables
			case "add-tables":
				list = &o.AddTables
			default:
				list = &o.Actions
			}
			*list = []string{}
			if v := strings.TrimSpace(val); v != "" {
				*list = append(*list, v)
			}
			continue
		}
		on := true
		if hasVal && name != "format-version" && name != "timezone" {
			switch strings.ToLower(strings.TrimSpace(val)) {
			case "1", "t", "true", "on", "y", "yes":
			case "0", "f", "false", "off", "n", "no":
				on = false
			default:
				return o, fmt.Errorf("wal2json option %s: %q is not a boolean", name, val)
			}
		}
		switch name {
		case "include-xids":
			o.Xids = on
		case "include-timestamp":
			o.Timestamp = on
		case "include-lsn":
			o.LSN = on
		case "include-types":
			o.NoTypes = !on
		case "include-type-oids":
			o.TypeOids = on
		case "include-typmod":
			o.NoTypmod = !on
		case "include-not-null":
			o.NotNull = on
		case "include-pk":
			o.PK = on
		case "include-transaction":
			o.NoTransaction = !on
		case "include-truncates":
			o.Truncates = on
		case "timezone":
			// pgfeed's own: the session TimeZone the plugin would print in.
			loc, err := time.LoadLocation(strings.TrimSpace(val))
			if err != nil {
				return o, fmt.Errorf("wal2json option timezone: %w", err)
			}
			o.TimeZone = loc
			continue
		case "format-version", "write-in-chunks", "include-unchanged-toast":
			// The plugin ignores include-unchanged-toast since 2.0, as pgfeed does.
		case "include-schemas":
			if !on {
				return o, fmt.Errorf("wal2json option include-schemas=false is not supported")
			}
		case "pretty-print":
			if on {
				return o, fmt.Errorf("wal2json option pretty-print is not supported: pgfeed writes one object per line")
			}
		default:
			return o, fmt.Errorf("unknown wal2json option %q: pgfeed supports include-xids, include-timestamp, include-lsn, include-types, include-type-oids, include-typmod, include-not-null, include-pk, include-transaction, filter-tables, add-tables, actions", name)
		}
	}
	for _, a := range o.Actions {
		if !isWal2JSONAction(a) {
			return o, fmt.Errorf("wal2json option actions: %q is not insert, update, delete or truncate", a)
		}
	}
	for _, t := range append(append([]string(nil), o.FilterTables...), o.AddTables...) {
		if !strings.Contains(t, ".") {
			return o, fmt.Errorf("wal2json table %q: want schema.table (* for every schema or table)", t)
		}
	}
	return o, nil
}

func isWal2JSONAction(s string) bool {
	return s == "insert" || s == "update" || s == "delete" || s == "truncate"
}

// TxFramer is implemented by encoders whose record is a whole transaction
// rather than one event, such as wal2json's format-version 1, which prints
// one JSON object per transaction. The caller hands such an encoder every
// event, begin and commit included, and concatenates what Encode appends;
// InFrame reports whether that output is in the middle of a record (after a
// begin, before its commit): a line-oriented caller ends a line only when
// it is false and something was written. EndFrame appends what ends an
// open record whose commit will not come (the stream broke off; the
// transaction is delivered again), so that what was written of it stays
// valid, and appends nothing when no record is open.
type TxFramer interface {
	Encoder
	InFrame() bool
	EndFrame(dst []byte) []byte
}

// Wal2JSON writes events the way the wal2json output plugin prints them with
// format-version 1: one object per transaction, which is what pgdeltastream
// clients (and other wal2json v1 readers) parse:
//
//	{"xid":732,"timestamp":"2026-11-23 04:56:29.368123+00","change":[
//	  {"kind":"update","schema":"public","table":"data",
//	   "columnnames":["id","data"],"columntypes":["integer","text"],"columnvalues":[2,"2"],
//	   "oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[2]}}],"nextlsn":"0/16B37A0"}
//
// It follows the plugin, not the native mapping, wherever the two differ,
// and is compared with the plugin itself on the same WAL by the tests of
// internal/formatcheck:
//   - Values are Postgres's text form as JSON strings, except smallint,
//     integer, bigint, oid, real, double precision and numeric, which are bare
//     numbers (NaN and ±Infinity become null), boolean, which is true/false,
//     and bytea, which is its hex digits without the leading \x. json and
//     jsonb are strings holding the JSON text; timestamps keep Postgres's form.
//     Domains are strings whatever their base type, as in the plugin.
//   - Column types are format_type names with their modifiers ("character
//     varying(60)", "numeric(10,2)", "timestamp(3) with time zone"), or
//     pg_type's typname with NoTypmod.
//   - An unchanged TOASTed column is left out of all the arrays.
//   - oldkeys is on every update and delete: the old row Postgres sent
//     (every column under REPLICA IDENTITY FULL, the key columns otherwise),
//     or, for an update that did not change the key, the key columns of the
//     new row. Null values are left out of oldkeys.
//   - Updates and deletes of a table without replica identity (NOTHING, or
//     DEFAULT without a primary key) are left out, truncates too (unless
//     Truncates), as the plugin does; transactional messages are changes of
//     their transaction, non-transactional ones an object of their own.
//
// Framing needs the begin and commit events (TxFramer). Events that come
// without their begin (a pipeline hands the encoder changes only) are each
// written as a one-change object, {"change":[...]}, which v1 readers also
// take; a truncate is then {"change":[{"kind":"truncate",..}]}, so that
// nothing is lost. A Wal2JSON keeps the state of the open transaction: it is
// used by one goroutine at a time. Its zero value has the plugin's default
// options.
type Wal2JSON struct {
	Opts Wal2JSONOptions

	inTx bool
	n    int // changes written in the open transaction
}

// NewWal2JSON returns a format-version 1 encoder with the given options.
func NewWal2JSON(o Wal2JSONOptions) *Wal2JSON { return &Wal2JSON{Opts: o} }

// InFrame reports whether a transaction's object is open (TxFramer).
func (w *Wal2JSON) InFrame() bool { return w.inTx }

// EndFrame closes an open transaction object, without nextlsn: the
// transaction did not end, and comes again (TxFramer).
func (w *Wal2JSON) EndFrame(dst []byte) []byte {
	if !w.inTx {
		return dst
	}
	w.inTx = false
	return append(dst, "]}"...)
}

// Encode appends the wal2json v1 output of e to dst.
func (w *Wal2JSON) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	o := &w.Opts
	switch e.Op {
	case event.OpBegin:
		// A begin while a transaction is open means its end never came (a
		// reconnect): what was written of it cannot be taken back, and the
		// new transaction starts a new object.
		w.inTx, w.n = true, 0
		dst = append(dst, '{')
		if o.Xids {
			dst = append(dst, `"xid":`...)
			dst = appendUint(dst, uint64(e.XID))
			dst = append(dst, ',')
		}
		if o.Timestamp {
			dst = appendWal2JSONTimestamp(dst, e, o.TimeZone)
			dst = append(dst, ',')
		}
		return append(dst, `"change":[`...), nil
	case event.OpCommit:
		if !w.inTx {
			// No begin came: an empty transaction object.
			dst = append(dst, '{')
			if o.Xids {
				dst = append(dst, `"xid":`...)
				dst = appendUint(dst, uint64(e.XID))
				dst = append(dst, ',')
			}
			if o.Timestamp {
				dst = appendWal2JSONTimestamp(dst, e, o.TimeZone)
				dst = append(dst, ',')
			}
			dst = append(dst, `"change":[`...)
		}
		w.inTx = false
		dst = append(dst, ']')
		if o.LSN {
			// The plugin writes nextlsn before the changes; pgoutput tells
			// the end of the transaction only at its commit.
			dst = append(dst, `,"nextlsn":"`...)
			dst = e.EndLSN.AppendText(dst)
			dst = append(dst, '"')
		}
		return append(dst, '}'), nil
	case event.OpInsert, event.OpRead, event.OpUpdate, event.OpDelete:
		if e.Rel == nil {
			return dst, errNoRelation(FormatWal2JSON, e)
		}
		if !o.keepAction(e.Op, false) || !o.keepTable(e.Schema, e.Table) {
			return dst, nil
		}
		if !w.inTx {
			dst = append(dst, `{"change":[`...)
			dst = appendWal2JSONChange(dst, e, o)
			return append(dst, "]}"...), nil
		}
		if (e.Op == event.OpUpdate || e.Op == event.OpDelete) && !hasIdentity(e.Rel) {
			return dst, nil
		}
		dst = w.sep(dst)
		return appendWal2JSONChange(dst, e, o), nil
	case event.OpTruncate:
		if !o.keepTable(e.Schema, e.Table) {
			return dst, nil
		}
		if w.inTx {
			if !o.Truncates {
				return dst, nil
			}
			dst = w.sep(dst)
			return appendWal2JSONTruncate(dst, e), nil
		}
		dst = append(dst, `{"change":[`...)
		dst = appendWal2JSONTruncate(dst, e)
		return append(dst, "]}"...), nil
	case event.OpMessage:
		var m event.Message
		if e.Message != nil {
			m = *e.Message
		}
		if !w.inTx || !m.Transactional {
			dst = append(dst, `{"change":[`...)
			dst = appendWal2JSONMessage(dst, &m)
			return append(dst, "]}"...), nil
		}
		dst = w.sep(dst)
		return appendWal2JSONMessage(dst, &m), nil
	case event.OpSchema:
		return dst, nil
	}
	return dst, errUnknownOp(FormatWal2JSON, e)
}

func (w *Wal2JSON) sep(dst []byte) []byte {
	w.n++
	if w.n > 1 {
		dst = append(dst, ',')
	}
	return dst
}

// hasIdentity reports whether the plugin can print the old key of a table's
// updates and deletes: it skips them on tables whose replica identity is
// NOTHING, or DEFAULT without a primary key.
func hasIdentity(rel *event.Relation) bool {
	switch rel.Identity {
	case event.IdentityNothing:
		return false
	case event.IdentityDefault:
		return !rel.NoKey
	}
	return true
}

// appendWal2JSONTimestamp appends "timestamp" as timestamptz_to_str prints
// the commit time; pgfeed's sessions run in UTC.
func appendWal2JSONTimestamp(dst []byte, e *event.Event, tz *time.Location) []byte {
	dst = append(dst, `"timestamp":"`...)
	dst = appendPGTimestamptz(dst, e.CommitTime, tz)
	return append(dst, '"')
}

// appendPGTimestamptz appends t as Postgres prints a timestamptz in the
// zone tz (UTC when nil): "2026-11-23 10:26:29.368123+05:30", the offset's
// minutes and seconds only when not zero.
func appendPGTimestamptz(dst []byte, t time.Time, tz *time.Location) []byte {
	if tz == nil {
		tz = time.UTC
	}
	t = t.In(tz)
	dst = t.AppendFormat(dst, "2006-01-02 15:04:05.999999")
	_, off := t.Zone()
	if off < 0 {
		dst = append(dst, '-')
		off = -off
	} else {
		dst = append(dst, '+')
	}
	dst = append2(dst, int64(off/3600))
	if off%3600 != 0 {
		dst = append(dst, ':')
		dst = append2(dst, int64(off%3600/60))
		if off%60 != 0 {
			dst = append(dst, ':')
			dst = append2(dst, int64(off%60))
		}
	}
	return dst
}

// inZone rewrites a timestamptz text in UTC into the zone tz, or returns
// it as it is (tz nil or UTC, infinities, years BC, text it cannot read).
func inZone(raw []byte, tz *time.Location) []byte {
	if tz == nil || tz == time.UTC || len(raw) < 4 || raw[len(raw)-1] == 'C' {
		return raw
	}
	us, ok := parseTimestamptz(raw)
	if !ok || us == timestampInfinity || us == timestampNegInfinity {
		return raw
	}
	return appendPGTimestamptz(nil, time.UnixMicro(us), tz)
}

func appendWal2JSONTruncate(dst []byte, e *event.Event) []byte {
	dst = append(dst, `{"kind":"truncate","schema":`...)
	dst = event.AppendJSONString(dst, e.Schema)
	dst = append(dst, `,"table":`...)
	dst = event.AppendJSONString(dst, e.Table)
	return append(dst, '}')
}

func appendWal2JSONMessage(dst []byte, m *event.Message) []byte {
	dst = append(dst, `{"kind":"message","transactional":`...)
	if m.Transactional {
		dst = append(dst, "true"...)
	} else {
		dst = append(dst, "false"...)
	}
	dst = append(dst, `,"prefix":`...)
	dst = event.AppendJSONString(dst, m.Prefix)
	dst = append(dst, `,"content":`...)
	dst = appendRawString(dst, messageContent(m.Content))
	return append(dst, '}')
}

// messageContent is what the plugin prints of a message: it copies the
// content as a C string, so it ends at the first NUL byte.
func messageContent(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

func appendWal2JSONChange(dst []byte, e *event.Event, o *Wal2JSONOptions) []byte {
	dst = append(dst, `{"kind":"`...)
	switch e.Op {
	case event.OpUpdate:
		dst = append(dst, "update"...)
	case event.OpDelete:
		dst = append(dst, "delete"...)
	default:
		dst = append(dst, "insert"...)
	}
	dst = append(dst, `","schema":`...)
	dst = event.AppendJSONString(dst, e.Schema)
	dst = append(dst, `,"table":`...)
	dst = event.AppendJSONString(dst, e.Table)
	cols := e.Rel.Columns
	if e.Op != event.OpDelete && e.After != nil {
		include := func(i int) bool {
			return e.After[i].State == event.Text || e.After[i].State == event.Null
		}
		dst = append(dst, `,"columnnames":`...)
		dst = appendWal2JSONNames(dst, cols, len(e.After), include)
		if !o.NoTypes {
			dst = append(dst, `,"columntypes":`...)
			dst = appendWal2JSONTypes(dst, cols, len(e.After), include, o.NoTypmod)
		}
		if o.TypeOids {
			dst = append(dst, `,"columntypeoids":`...)
			dst = appendWal2JSONOids(dst, cols, len(e.After), include)
		}
		if o.NotNull {
			dst = append(dst, `,"columnoptionals":`...)
			if o.NoTypes {
				// The plugin fills the flags in with the types.
				dst = append(dst, "[]"...)
			} else {
				dst = appendWal2JSONOptionals(dst, e.Rel, len(e.After), include)
			}
		}
		dst = append(dst, `,"columnvalues":`...)
		dst = appendWal2JSONValues(dst, cols, e.After, include, o.TimeZone)
	}
	if o.PK && e.Rel.Identity == event.IdentityDefault && !e.Rel.NoKey {
		// Under REPLICA IDENTITY DEFAULT the key columns are the primary key's.
		isKey := func(i int) bool { return cols[i].Key }
		dst = append(dst, `,"pk":{"pknames":`...)
		dst = appendWal2JSONNames(dst, cols, len(cols), isKey)
		dst = append(dst, `,"pktypes":`...)
		if o.NoTypes {
			dst = append(dst, "[]"...)
		} else {
			dst = appendWal2JSONTypes(dst, cols, len(cols), isKey, o.NoTypmod)
		}
		dst = append(dst, '}')
	}
	if e.Op == event.OpUpdate || e.Op == event.OpDelete {
		old := e.Before
		keyOnly := false
		if old == nil && e.Op == event.OpUpdate {
			// The key did not change, so Postgres sent no old row; wal2json
			// prints the identity columns of the new row instead.
			old, keyOnly = e.After, true
		}
		include := func(i int) bool {
			return old[i].State == event.Text && (!keyOnly || cols[i].Key)
		}
		dst = append(dst, `,"oldkeys":{"keynames":`...)
		dst = appendWal2JSONNames(dst, cols, len(old), include)
		if !o.NoTypes {
			dst = append(dst, `,"keytypes":`...)
			dst = appendWal2JSONTypes(dst, cols, len(old), include, o.NoTypmod)
		}
		if o.TypeOids {
			dst = append(dst, `,"keytypeoids":`...)
			dst = appendWal2JSONOids(dst, cols, len(old), include)
		}
		dst = append(dst, `,"keyvalues":`...)
		dst = appendWal2JSONValues(dst, cols, old, include, o.TimeZone)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendWal2JSONArray appends a JSON array with one element, written by
// elem, for each column among the first n that include keeps: the shape of
// every per-column list wal2json writes (names, types, oids, optionals,
// values).
func appendWal2JSONArray(dst []byte, n int, include func(int) bool, elem func(dst []byte, i int) []byte) []byte {
	dst = append(dst, '[')
	first := true
	for i := 0; i < n; i++ {
		if !include(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = elem(dst, i)
	}
	return append(dst, ']')
}

func appendWal2JSONNames(dst []byte, cols []event.Column, n int, include func(int) bool) []byte {
	return appendWal2JSONArray(dst, min(n, len(cols)), include, func(dst []byte, i int) []byte {
		return event.AppendJSONString(dst, cols[i].Name)
	})
}

func appendWal2JSONTypes(dst []byte, cols []event.Column, n int, include func(int) bool, typname bool) []byte {
	return appendWal2JSONArray(dst, min(n, len(cols)), include, func(dst []byte, i int) []byte {
		if typname {
			return appendTypnameJSON(dst, cols[i].Type)
		}
		return appendFormatTypeJSON(dst, &cols[i])
	})
}

func appendWal2JSONOids(dst []byte, cols []event.Column, n int, include func(int) bool) []byte {
	return appendWal2JSONArray(dst, min(n, len(cols)), include, func(dst []byte, i int) []byte {
		var oid uint32
		if cols[i].Type != nil {
			oid = cols[i].Type.OID
		}
		return appendUint(dst, uint64(oid))
	})
}

// appendWal2JSONOptionals appends "columnoptionals": false for a NOT NULL
// column. pgoutput does not say which columns are NOT NULL; the key columns
// of a table with a primary key or replica identity index are, and every
// other column is reported nullable.
func appendWal2JSONOptionals(dst []byte, rel *event.Relation, n int, include func(int) bool) []byte {
	return appendWal2JSONArray(dst, min(n, len(rel.Columns)), include, func(dst []byte, i int) []byte {
		if rel.Columns[i].Key && !rel.NoKey {
			return append(dst, "false"...)
		}
		return append(dst, "true"...)
	})
}

func appendWal2JSONValues(dst []byte, cols []event.Column, row event.Row, include func(int) bool, tz *time.Location) []byte {
	return appendWal2JSONArray(dst, min(len(row), len(cols)), include, func(dst []byte, i int) []byte {
		return appendWal2JSONValue(dst, row[i], cols[i].Type, tz)
	})
}

// The OIDs wal2json treats specially when printing values.
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidXML         = 142
	oidMoney       = 790
	oidFloat4      = 700
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidTimetz      = 1266
	oidBit         = 1560
	oidVarbit      = 1562
	oidNumeric     = 1700
	oidUUID        = 2950
)

func appendWal2JSONValue(dst []byte, v event.Value, t *event.Type, tz *time.Location) []byte {
	if v.State != event.Text {
		return append(dst, "null"...)
	}
	var oid uint32
	if t != nil {
		oid = t.OID
	}
	raw := v.Raw
	switch oid {
	case oidTimestamptz:
		raw = inZone(raw, tz)
	case oidInt2, oidInt4, oidInt8, oidOID, oidFloat4, oidFloat8, oidNumeric:
		if isSpecialNumber(raw) {
			return append(dst, "null"...)
		}
		if isNumberText(raw) {
			return append(dst, raw...)
		}
	case oidBool:
		if string(raw) == "t" {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case oidBytea:
		if len(raw) >= 2 && raw[0] == '\\' && raw[1] == 'x' {
			raw = raw[2:]
		}
	}
	return appendRawString(dst, raw)
}

// isSpecialNumber matches what wal2json turns into null: NaN and the
// infinities, compared case-insensitively by prefix as it does.
func isSpecialNumber(b []byte) bool {
	return hasPrefixFold(b, "NaN") || hasPrefixFold(b, "Infinity") || hasPrefixFold(b, "-Infinity")
}

func hasPrefixFold(b []byte, p string) bool {
	if len(b) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lower(b[i]) != lower(p[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// isNumberText is wal2json's test for printing a number bare, made strict:
// wal2json prints anything made of digits, signs, dots and exponents, which
// can be invalid JSON ("00", "1."); Postgres never prints such numbers, and
// we quote them should one appear, so the output stays valid JSON.
func isNumberText(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i == len(b)
}

// appendFormatTypeJSON appends the column's type as format_type(oid, typmod)
// prints it, as a JSON string. A name that format_type quotes ("char") is
// printed the way wal2json prints it: its quotes become the JSON string's.
func appendFormatTypeJSON(dst []byte, col *event.Column) []byte {
	t := col.Type
	if t == nil {
		return append(dst, `"unknown"`...)
	}
	if n := len(t.Name); n >= 2 && t.Name[0] == '"' && t.Name[n-1] == '"' && plainText(t.Name[1:n-1]) {
		return append(dst, t.Name...)
	}
	// An array's modifier belongs to its element: character varying(10)[].
	base, array := t, false
	if t.Kind == event.KindArray && t.Elem != nil {
		base, array = t.Elem, true
	}
	start := len(dst)
	dst = append(dst, '"')
	if withMod, ok := appendTypeMod(dst, base, col.TypeMod); ok {
		dst = withMod
		if array {
			dst = append(dst, "[]"...)
		}
		return append(dst, '"')
	}
	return event.AppendJSONString(dst[:start], t.Name)
}

func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' || s[i] < 0x20 {
			return false
		}
	}
	return true
}

// appendTypeMod renders format_type's output for the built-in types whose
// name changes with a type modifier, and reports false for every other type,
// whose name is Type.Name.
func appendTypeMod(dst []byte, t *event.Type, typmod int32) ([]byte, bool) {
	switch t.OID {
	case oidBpchar:
		if typmod < 0 {
			// format_type prints bpchar without a length as "bpchar": plain
			// "character" would mean character(1).
			return append(dst, "bpchar"...), true
		}
		return appendParen(append(dst, "character"...), int64(typmod)-4), true
	case oidVarchar:
		if typmod >= 0 {
			return appendParen(append(dst, "character varying"...), int64(typmod)-4), true
		}
	case oidNumeric:
		if typmod >= 4 {
			m := int64(typmod) - 4
			precision := (m >> 16) & 0xffff
			scale := ((m & 0x7ff) ^ 1024) - 1024 // negative scales exist since PostgreSQL 15
			dst = append(dst, "numeric("...)
			dst = appendInt(dst, precision)
			dst = append(dst, ',')
			dst = appendInt(dst, scale)
			return append(dst, ')'), true
		}
	case oidInterval:
		if typmod >= 0 {
			return appendIntervalMod(append(dst, "interval"...), typmod), true
		}
	case oidBit, oidVarbit:
		if typmod >= 0 {
			return appendParen(append(dst, t.Name...), int64(typmod)), true
		}
	case oidTimestamp, oidTimestamptz, oidTime, oidTimetz:
		if typmod >= 0 {
			// The precision goes after the first word: "timestamp(3) with time zone".
			word, rest := t.Name, ""
			for i := 0; i < len(t.Name); i++ {
				if t.Name[i] == ' ' {
					word, rest = t.Name[:i], t.Name[i:]
					break
				}
			}
			dst = appendParen(append(dst, word...), int64(typmod))
			return append(dst, rest...), true
		}
	}
	return dst, false
}

// intervalFields are intervaltypmodout's names of an interval's field
// masks (INTERVAL DAY TO SECOND and the like), by the mask of their bits.
var intervalFields = map[int32]string{
	1 << 2: " year", 1 << 1: " month", 1 << 3: " day", 1 << 10: " hour", 1 << 11: " minute", 1 << 12: " second",
	1<<2 | 1<<1: " year to month", 1<<3 | 1<<10: " day to hour", 1<<3 | 1<<10 | 1<<11: " day to minute",
	1<<3 | 1<<10 | 1<<11 | 1<<12: " day to second", 1<<10 | 1<<11: " hour to minute",
	1<<10 | 1<<11 | 1<<12: " hour to second", 1<<11 | 1<<12: " minute to second",
}

// appendIntervalMod appends an interval's modifier as intervaltypmodout
// prints it: its fields, then its precision ("interval day to second(3)").
func appendIntervalMod(dst []byte, typmod int32) []byte {
	dst = append(dst, intervalFields[(typmod>>16)&0x7fff]...)
	if p := typmod & 0xffff; p != 0xffff {
		dst = appendParen(dst, int64(p))
	}
	return dst
}

func appendParen(dst []byte, n int64) []byte {
	dst = append(dst, '(')
	dst = appendInt(dst, n)
	return append(dst, ')')
}

// typnames are pg_type.typname of the built-in types whose format_type
// name differs from it; the plugin prints typname when include-typmod is off.
var typnames = map[uint32]string{
	16: "bool", 18: "char", 20: "int8", 21: "int2", 23: "int4", 700: "float4", 701: "float8",
	1042: "bpchar", 1043: "varchar", 1083: "time", 1114: "timestamp", 1184: "timestamptz",
	1266: "timetz", 1560: "bit", 1562: "varbit", 2249: "record",
}

// appendTypnameJSON appends pg_type.typname of t as a JSON string: an
// array's is its element's with a leading underscore.
func appendTypnameJSON(dst []byte, t *event.Type) []byte {
	if t == nil {
		return append(dst, `"unknown"`...)
	}
	if t.Kind == event.KindArray && t.Elem != nil {
		return event.AppendJSONString(dst, "_"+typname(t.Elem))
	}
	return event.AppendJSONString(dst, typname(t))
}

func typname(t *event.Type) string {
	if n, ok := typnames[t.OID]; ok {
		return n
	}
	// format_type's name, less its schema and quotes.
	name := t.Name
	if n := len(name); n >= 2 && name[n-1] == '"' {
		if k := strings.LastIndex(name[:n-1], `"`); k >= 0 {
			for k > 0 && name[k-1] == '"' { // a doubled quote inside the name
				k = strings.LastIndex(name[:k-1], `"`)
			}
			return strings.ReplaceAll(name[k+1:n-1], `""`, `"`)
		}
	}
	if k := strings.LastIndexByte(name, '.'); k >= 0 {
		name = name[k+1:]
	}
	return name
}
