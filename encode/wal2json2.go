package encode

import (
	"github.com/pgfeed/pgfeed/event"
)

// Wal2JSON2 writes events the way the wal2json output plugin prints them
// with format-version 2: one object per action, "B" (begin), "C" (commit),
// "I", "U", "D" (rows), "T" (truncate, one per table) and "M" (message):
//
//	{"action":"U","schema":"public","table":"data",
//	 "columns":[{"name":"id","type":"integer","value":2},{"name":"data","type":"text","value":"2"}],
//	 "identity":[{"name":"id","type":"integer","value":2}]}
//
// Values and types follow the plugin as Wal2JSON describes, with these
// format-version 2 rules: types are always format_type with modifiers
// (include-typmod is a format-version 1 option), the old row ("identity")
// keeps its nulls, and messages outside a transaction have null xid and
// timestamp. With LSN, changes, truncates and messages carry their own
// record's "lsn", begin the commit record's, and commit both the commit
// record's "lsn" and the transaction's end, "nextlsn". The begin's
// "nextlsn" is left out: pgoutput tells it only at the commit.
//
// Wal2JSON2 has no state; its zero value has the plugin's default options.
type Wal2JSON2 struct {
	Opts Wal2JSONOptions
}

// Encode appends the wal2json format-version 2 object of e to dst. Schema
// events, which the plugin has no action for, append nothing.
func (w Wal2JSON2) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	o := &w.Opts
	switch e.Op {
	case event.OpBegin, event.OpCommit:
		if o.NoTransaction {
			return dst, nil
		}
		if e.Op == event.OpBegin {
			dst = append(dst, `{"action":"B"`...)
		} else {
			dst = append(dst, `{"action":"C"`...)
		}
		dst = appendV2TxFields(dst, e, o, true)
		if o.LSN {
			dst = append(dst, `,"lsn":"`...)
			dst = e.CommitLSN.AppendText(dst)
			dst = append(dst, '"')
			if e.Op == event.OpCommit {
				dst = append(dst, `,"nextlsn":"`...)
				dst = e.EndLSN.AppendText(dst)
				dst = append(dst, '"')
			}
		}
		return append(dst, '}'), nil
	case event.OpInsert, event.OpRead, event.OpUpdate, event.OpDelete:
		if e.Rel == nil {
			return dst, errNoRelation(FormatWal2JSON2, e)
		}
		if !o.keepAction(e.Op, true) || !o.keepTable(e.Schema, e.Table) {
			return dst, nil
		}
		if (e.Op == event.OpUpdate || e.Op == event.OpDelete) && e.Before == nil && !hasIdentity(e.Rel) {
			return dst, nil // no identity to print: the plugin skips it
		}
		return appendV2Change(dst, e, o), nil
	case event.OpTruncate:
		if !o.keepAction(e.Op, true) || !o.keepTable(e.Schema, e.Table) {
			return dst, nil
		}
		dst = append(dst, `{"action":"T"`...)
		dst = appendV2TxFields(dst, e, o, true)
		dst = appendV2LSN(dst, e, o)
		dst = append(dst, `,"schema":`...)
		dst = event.AppendJSONString(dst, e.Schema)
		dst = append(dst, `,"table":`...)
		dst = event.AppendJSONString(dst, e.Table)
		return append(dst, '}'), nil
	case event.OpMessage:
		var m event.Message
		if e.Message != nil {
			m = *e.Message
		}
		dst = append(dst, `{"action":"M"`...)
		dst = appendV2TxFields(dst, e, o, m.Transactional)
		dst = appendV2LSN(dst, e, o)
		if m.Transactional {
			dst = append(dst, `,"transactional":true`...)
		} else {
			dst = append(dst, `,"transactional":false`...)
		}
		dst = append(dst, `,"prefix":`...)
		dst = event.AppendJSONString(dst, m.Prefix)
		dst = append(dst, `,"content":`...)
		dst = appendRawString(dst, messageContent(m.Content))
		return append(dst, '}'), nil
	case event.OpSchema:
		return dst, nil
	}
	return dst, errUnknownOp(FormatWal2JSON2, e)
}

// appendV2TxFields appends xid and timestamp as the options ask, null for
// what a non-transactional message does not have.
func appendV2TxFields(dst []byte, e *event.Event, o *Wal2JSONOptions, inTx bool) []byte {
	if o.Xids {
		if inTx {
			dst = append(dst, `,"xid":`...)
			dst = appendUint(dst, uint64(e.XID))
		} else {
			dst = append(dst, `,"xid":null`...)
		}
	}
	if o.Timestamp {
		if inTx {
			dst = append(dst, ',')
			dst = appendWal2JSONTimestamp(dst, e, o.TimeZone)
		} else {
			dst = append(dst, `,"timestamp":null`...)
		}
	}
	return dst
}

func appendV2LSN(dst []byte, e *event.Event, o *Wal2JSONOptions) []byte {
	if !o.LSN {
		return dst
	}
	dst = append(dst, `,"lsn":"`...)
	dst = e.LSN.AppendText(dst)
	return append(dst, '"')
}

func appendV2Change(dst []byte, e *event.Event, o *Wal2JSONOptions) []byte {
	switch e.Op {
	case event.OpUpdate:
		dst = append(dst, `{"action":"U"`...)
	case event.OpDelete:
		dst = append(dst, `{"action":"D"`...)
	default:
		dst = append(dst, `{"action":"I"`...)
	}
	dst = appendV2TxFields(dst, e, o, true)
	dst = appendV2LSN(dst, e, o)
	dst = append(dst, `,"schema":`...)
	dst = event.AppendJSONString(dst, e.Schema)
	dst = append(dst, `,"table":`...)
	dst = event.AppendJSONString(dst, e.Table)
	cols := e.Rel.Columns
	if e.Op != event.OpDelete && e.After != nil {
		dst = append(dst, `,"columns":[`...)
		dst = appendV2Tuple(dst, e.Rel, e.After, o, v2Change, func(int) bool { return true })
		dst = append(dst, ']')
	}
	switch {
	case e.Before != nil:
		dst = append(dst, `,"identity":[`...)
		dst = appendV2Tuple(dst, e.Rel, e.Before, o, v2Identity, func(int) bool { return true })
		dst = append(dst, ']')
	case e.Op == event.OpUpdate && hasIdentity(e.Rel) && e.Rel.Identity != event.IdentityFull:
		// The key did not change: the plugin takes it from the new row.
		dst = append(dst, `,"identity":[`...)
		dst = appendV2Tuple(dst, e.Rel, e.After, o, v2Identity, func(i int) bool { return cols[i].Key })
		dst = append(dst, ']')
	}
	if o.PK {
		dst = append(dst, `,"pk":[`...)
		// The key columns are the primary key's but under REPLICA
		// IDENTITY INDEX, where they are the index's, and pgoutput does not
		// say whether there is a primary key too: pk is empty there.
		if !e.Rel.NoKey && e.Rel.Identity != event.IdentityIndex {
			row := e.Before
			if row == nil {
				row = e.After
			}
			dst = appendV2Tuple(dst, e.Rel, row, o, v2PK, func(i int) bool { return cols[i].Key })
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

type v2Kind uint8

const (
	v2Change v2Kind = iota
	v2Identity
	v2PK
)

func appendV2Tuple(dst []byte, rel *event.Relation, row event.Row, o *Wal2JSONOptions, kind v2Kind, include func(int) bool) []byte {
	first := true
	for i := range rel.Columns {
		if i >= len(row) || !include(i) {
			continue
		}
		v := row[i]
		if v.State == event.Absent || v.State == event.Unchanged {
			continue
		}
		col := &rel.Columns[i]
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, `{"name":`...)
		dst = event.AppendJSONString(dst, col.Name)
		if !o.NoTypes {
			dst = append(dst, `,"type":`...)
			dst = appendFormatTypeJSON(dst, col)
		}
		if o.TypeOids {
			dst = append(dst, `,"typeoid":`...)
			var oid uint32
			if col.Type != nil {
				oid = col.Type.OID
			}
			dst = appendInt(dst, int64(int32(oid))) // the plugin prints it with %d
		}
		if kind != v2PK {
			dst = append(dst, `,"value":`...)
			dst = appendWal2JSONValue(dst, v, col.Type, o.TimeZone)
		}
		if kind == v2Change && o.NotNull {
			if col.Key && !rel.NoKey {
				dst = append(dst, `,"optional":false`...)
			} else {
				dst = append(dst, `,"optional":true`...)
			}
		}
		dst = append(dst, '}')
	}
	return dst
}
