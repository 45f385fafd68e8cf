package encode

import (
	"github.com/pgfeed/pgfeed/event"
)

// Wal2JSON writes events the way the wal2json output plugin prints them with
// format-version 1 and its default options, one change per object, which is
// what pgdeltastream clients (and other wal2json v1 readers) parse:
//
//	{"change":[{"kind":"update","schema":"public","table":"data",
//	  "columnnames":["id","data"],"columntypes":["integer","text"],"columnvalues":[2,"2"],
//	  "oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[2]}}]}
//
// It follows wal2json, not the native mapping, wherever the two differ, so
// that existing readers see what they always saw:
//   - Values are Postgres's text form as JSON strings, except smallint,
//     integer, bigint, oid, real, double precision and numeric, which are bare
//     numbers (NaN and ±Infinity become null), boolean, which is true/false,
//     and bytea, which is its hex digits without the leading \x. json and
//     jsonb are strings holding the JSON text; timestamps keep Postgres's form.
//   - Column types are format_type names with their modifiers, as wal2json's
//     default include-typmod prints them: "character varying(60)",
//     "numeric(10,2)", "timestamp(3) with time zone". Modifiers are rendered
//     for the built-in types that have them, except interval.
//   - An unchanged TOASTed column is left out of all three arrays.
//   - oldkeys is present on updates and deletes when there is an old key:
//     the old row Postgres sent (every column under REPLICA IDENTITY FULL,
//     the key columns otherwise), or, for an update that did not change the
//     key, the key columns of the new row, as wal2json does. Null values are
//     left out of oldkeys.
//
// Events wal2json v1 has no change for are written so that v1 readers skip
// them: begin and commit become a change-less object with the fields
// wal2json's include-xids, include-lsn and include-timestamp options add
// ({"xid":732,"timestamp":"...","change":[]}; commit adds "nextlsn", the end
// of the transaction), and schema events become {"change":[]}. Read events
// (snapshot rows) are inserts. Truncates, which wal2json v1 drops, are
// written as {"change":[{"kind":"truncate","schema":..,"table":..}]}, the v1
// rendering of format-version 2's "T" action, so they are not lost. Logical
// messages are written as wal2json v1 prints them:
// {"kind":"message","transactional":true,"prefix":"..","content":".."}.
type Wal2JSON struct{}

// Encode appends the wal2json v1 form of e to dst.
func (Wal2JSON) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	switch e.Op {
	case event.OpInsert, event.OpRead, event.OpUpdate, event.OpDelete:
		if e.Rel == nil {
			return dst, errNoRelation(FormatWal2JSON, e)
		}
		return appendWal2JSONChange(dst, e), nil
	case event.OpTruncate:
		dst = append(dst, `{"change":[{"kind":"truncate","schema":`...)
		dst = event.AppendJSONString(dst, e.Schema)
		dst = append(dst, `,"table":`...)
		dst = event.AppendJSONString(dst, e.Table)
		return append(dst, "}]}"...), nil
	case event.OpMessage:
		dst = append(dst, `{"change":[{"kind":"message","transactional":`...)
		var m event.Message
		if e.Message != nil {
			m = *e.Message
		}
		if m.Transactional {
			dst = append(dst, "true"...)
		} else {
			dst = append(dst, "false"...)
		}
		dst = append(dst, `,"prefix":`...)
		dst = event.AppendJSONString(dst, m.Prefix)
		dst = append(dst, `,"content":`...)
		dst = appendRawString(dst, m.Content)
		return append(dst, "}]}"...), nil
	case event.OpBegin, event.OpCommit:
		dst = append(dst, `{"xid":`...)
		dst = appendUint(dst, uint64(e.XID))
		if e.Op == event.OpCommit {
			dst = append(dst, `,"nextlsn":"`...)
			dst = e.EndLSN.AppendText(dst)
			dst = append(dst, '"')
		}
		if !e.CommitTime.IsZero() {
			// timestamptz_to_str's form, which wal2json prints; pgfeed's
			// sessions run in UTC.
			dst = append(dst, `,"timestamp":"`...)
			dst = e.CommitTime.UTC().AppendFormat(dst, "2006-01-02 15:04:05.999999-07")
			dst = append(dst, '"')
		}
		return append(dst, `,"change":[]}`...), nil
	case event.OpSchema:
		return append(dst, `{"change":[]}`...), nil
	}
	return dst, errUnknownOp(FormatWal2JSON, e)
}

func appendWal2JSONChange(dst []byte, e *event.Event) []byte {
	dst = append(dst, `{"change":[{"kind":"`...)
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
		dst = append(dst, `,"columntypes":`...)
		dst = appendWal2JSONTypes(dst, cols, len(e.After), include)
		dst = append(dst, `,"columnvalues":`...)
		dst = appendWal2JSONValues(dst, cols, e.After, include)
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
		if hasAny(len(old), len(cols), include) {
			dst = append(dst, `,"oldkeys":{"keynames":`...)
			dst = appendWal2JSONNames(dst, cols, len(old), include)
			dst = append(dst, `,"keytypes":`...)
			dst = appendWal2JSONTypes(dst, cols, len(old), include)
			dst = append(dst, `,"keyvalues":`...)
			dst = appendWal2JSONValues(dst, cols, old, include)
			dst = append(dst, '}')
		}
	}
	return append(dst, "}]}"...)
}

func hasAny(n, ncols int, include func(int) bool) bool {
	for i := 0; i < n && i < ncols; i++ {
		if include(i) {
			return true
		}
	}
	return false
}

func appendWal2JSONNames(dst []byte, cols []event.Column, n int, include func(int) bool) []byte {
	dst = append(dst, '[')
	first := true
	for i := 0; i < n && i < len(cols); i++ {
		if !include(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = event.AppendJSONString(dst, cols[i].Name)
	}
	return append(dst, ']')
}

func appendWal2JSONTypes(dst []byte, cols []event.Column, n int, include func(int) bool) []byte {
	dst = append(dst, '[')
	first := true
	for i := 0; i < n && i < len(cols); i++ {
		if !include(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendFormatTypeJSON(dst, &cols[i])
	}
	return append(dst, ']')
}

func appendWal2JSONValues(dst []byte, cols []event.Column, row event.Row, include func(int) bool) []byte {
	dst = append(dst, '[')
	first := true
	for i := 0; i < len(row) && i < len(cols); i++ {
		if !include(i) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendWal2JSONValue(dst, row[i], cols[i].Type)
	}
	return append(dst, ']')
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

func appendWal2JSONValue(dst []byte, v event.Value, t *event.Type) []byte {
	if v.State != event.Text {
		return append(dst, "null"...)
	}
	var oid uint32
	if t != nil {
		oid = t.OID
	}
	raw := v.Raw
	switch oid {
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

func appendParen(dst []byte, n int64) []byte {
	dst = append(dst, '(')
	dst = appendInt(dst, n)
	return append(dst, ')')
}
