package event

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the native JSON form of the event (DESIGN.md) to dst,
// without a trailing newline. It allocates nothing beyond growing dst, so a
// caller that reuses one buffer encodes at wire speed.
func (e *Event) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"op":"`...)
	dst = append(dst, e.Op.String()...)
	dst = append(dst, '"')
	if e.Schema != "" || e.Table != "" {
		dst = append(dst, `,"schema":`...)
		dst = AppendJSONString(dst, e.Schema)
		dst = append(dst, `,"table":`...)
		dst = AppendJSONString(dst, e.Table)
	}
	dst = append(dst, `,"lsn":"`...)
	dst = e.LSN.AppendText(dst)
	dst = append(dst, `","commit_lsn":"`...)
	dst = e.CommitLSN.AppendText(dst)
	dst = append(dst, `","xid":`...)
	dst = strconv.AppendUint(dst, uint64(e.XID), 10)
	if !e.CommitTime.IsZero() {
		dst = append(dst, `,"commit_time":"`...)
		dst = e.CommitTime.UTC().AppendFormat(dst, "2006-01-02T15:04:05.999999Z")
		dst = append(dst, '"')
	}
	if e.Seq > 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendInt(dst, int64(e.Seq), 10)
	}
	switch e.Op {
	case OpInsert, OpUpdate, OpDelete, OpRead:
		dst = append(dst, `,"key":`...)
		dst = e.appendKey(dst)
		dst = append(dst, `,"before":`...)
		dst = e.appendRow(dst, e.Before)
		dst = append(dst, `,"after":`...)
		dst = e.appendRow(dst, e.After)
		dst = e.appendUnchanged(dst)
	case OpTruncate:
		dst = append(dst, `,"cascade":`...)
		dst = strconv.AppendBool(dst, e.Cascade)
		dst = append(dst, `,"restart_identity":`...)
		dst = strconv.AppendBool(dst, e.RestartIdentity)
	case OpMessage:
		if m := e.Message; m != nil {
			dst = append(dst, `,"prefix":`...)
			dst = AppendJSONString(dst, m.Prefix)
			if utf8.Valid(m.Content) {
				dst = append(dst, `,"content":`...)
				dst = appendString(dst, m.Content)
			} else {
				dst = append(dst, `,"content_base64":`...)
				dst = append(dst, '"')
				dst = base64.StdEncoding.AppendEncode(dst, m.Content)
				dst = append(dst, '"')
			}
			dst = append(dst, `,"transactional":`...)
			dst = strconv.AppendBool(dst, m.Transactional)
		}
	case OpCommit:
		dst = append(dst, `,"end_lsn":"`...)
		dst = e.EndLSN.AppendText(dst)
		dst = append(dst, '"')
	case OpSchema:
		dst = e.appendColumns(dst)
	}
	return append(dst, '}')
}

// MarshalJSON implements json.Marshaler with AppendJSON.
func (e *Event) MarshalJSON() ([]byte, error) { return e.AppendJSON(nil), nil }

func (e *Event) appendRow(dst []byte, row Row) []byte {
	if row == nil || e.Rel == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	first := true
	for i, v := range row {
		if v.State == Absent || v.State == Unchanged || i >= len(e.Rel.Columns) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		col := &e.Rel.Columns[i]
		dst = AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		dst = v.AppendJSON(dst, col.Type)
	}
	return append(dst, '}')
}

func (e *Event) appendKey(dst []byte) []byte {
	src := e.After
	if src == nil {
		src = e.Before
	}
	if src == nil || e.Rel == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	first := true
	for i, col := range e.Rel.Columns {
		if !col.Key || i >= len(src) {
			continue
		}
		v := src[i]
		if v.State == Unchanged && i < len(e.Before) {
			v = e.Before[i] // a TOASTed key left untouched: its old value is the key
		}
		if v.State == Absent || v.State == Unchanged {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = AppendJSONString(dst, col.Name)
		dst = append(dst, ':')
		dst = v.AppendJSON(dst, col.Type)
	}
	return append(dst, '}')
}

func (e *Event) appendUnchanged(dst []byte) []byte {
	first := true
	for i, v := range e.After {
		if v.State != Unchanged || i >= len(e.Rel.Columns) {
			continue
		}
		if first {
			dst = append(dst, `,"unchanged":[`...)
			first = false
		} else {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, e.Rel.Columns[i].Name)
	}
	if !first {
		dst = append(dst, ']')
	}
	return dst
}

func (e *Event) appendColumns(dst []byte) []byte {
	dst = append(dst, `,"columns":[`...)
	if e.Rel != nil {
		for i, c := range e.Rel.Columns {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = AppendJSONString(dst, c.Name)
			dst = append(dst, `,"type":`...)
			name := "unknown"
			if c.Type != nil {
				name = c.Type.Name
			}
			dst = AppendJSONString(dst, name)
			dst = append(dst, `,"key":`...)
			dst = strconv.AppendBool(dst, c.Key)
			dst = append(dst, '}')
		}
	}
	return append(dst, ']')
}
