package encode

import (
	"github.com/pgfeed/pgfeed/event"
)

// CloudEvents writes structured-mode JSON CloudEvents 1.0 whose data is the
// native event:
//
//	{"specversion":"1.0","id":"0/16B37A0:2","source":"/pgfeed","type":"pgfeed.update",
//	 "subject":"public.data","time":"2026-11-23T04:56:29.368123Z",
//	 "datacontenttype":"application/json","data":{"op":"update",...}}
//
// The attributes:
//   - id is the event's identity from DESIGN.md, commit_lsn and seq joined
//     by a colon, so a redelivered event has the id of its first delivery
//     and consumers dedupe on (source, id) as the spec intends. Events with
//     no seq of their own get their op appended (":begin", ":commit"), and
//     schema events their table too, since a transaction can announce
//     several tables.
//   - type is "pgfeed." followed by the op: pgfeed.insert, pgfeed.update,
//     pgfeed.delete, pgfeed.truncate, pgfeed.message, pgfeed.read,
//     pgfeed.begin, pgfeed.commit, pgfeed.schema.
//   - subject is "schema.table" for events of a table, absent otherwise.
//   - time is the commit time, absent when the event has none.
//   - source is Options.CloudEventsSource.
type CloudEvents struct {
	head []byte // what follows the id and precedes the op: `","source":"..","type":"pgfeed.`
}

// NewCloudEvents returns a CloudEvents encoder. See Options for what it uses.
func NewCloudEvents(opts Options) *CloudEvents {
	src := opts.CloudEventsSource
	if src == "" {
		src = "/pgfeed"
		if opts.ServerName != "" {
			src += "/" + opts.ServerName
		}
	}
	h := append([]byte(nil), `","source":`...)
	h = event.AppendJSONString(h, src)
	h = append(h, `,"type":"pgfeed.`...)
	return &CloudEvents{head: h}
}

// Encode appends the CloudEvent of e to dst.
func (c *CloudEvents) Encode(dst []byte, e *event.Event) ([]byte, error) {
	if e == nil {
		return dst, errNilEvent
	}
	if e.Op < event.OpInsert || e.Op > event.OpSchema {
		return dst, errUnknownOp(FormatCloudEvents, e) // its type attribute would be meaningless
	}
	dst = append(dst, `{"specversion":"1.0","id":"`...)
	dst = appendCloudEventID(dst, e, true)
	dst = append(dst, c.head...)
	dst = append(dst, e.Op.String()...)
	dst = append(dst, '"')
	if e.Schema != "" || e.Table != "" {
		// Schema and table names may hold any character; the subject is a
		// JSON string, escaped as such.
		dst = append(dst, `,"subject":"`...)
		dst = appendEscapedBody(dst, e.Schema)
		dst = append(dst, '.')
		dst = appendEscapedBody(dst, e.Table)
		dst = append(dst, '"')
	}
	if !e.CommitTime.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = appendRFC3339Micro(dst, e.CommitTime)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"datacontenttype":"application/json","data":`...)
	dst = e.AppendJSON(dst)
	return append(dst, '}'), nil
}

// ID returns the CloudEvents id Encode gives e (see CloudEvents).
func ID(e *event.Event) string {
	return string(appendCloudEventID(nil, e, false))
}

// appendCloudEventID appends the id, escaped for a JSON string when escape
// is set (only table names can need it).
func appendCloudEventID(dst []byte, e *event.Event, escape bool) []byte {
	dst = e.CommitLSN.AppendText(dst)
	dst = append(dst, ':')
	dst = appendInt(dst, int64(e.Seq))
	switch e.Op {
	case event.OpBegin, event.OpCommit:
		dst = append(dst, ':')
		dst = append(dst, e.Op.String()...)
	case event.OpSchema:
		dst = append(dst, ":schema:"...)
		if escape {
			dst = appendEscapedBody(dst, e.Schema)
			dst = append(dst, '.')
			dst = appendEscapedBody(dst, e.Table)
		} else {
			dst = append(dst, e.Schema...)
			dst = append(dst, '.')
			dst = append(dst, e.Table...)
		}
	}
	return dst
}

// appendEscapedBody appends s escaped for the inside of a JSON string.
func appendEscapedBody(dst []byte, s string) []byte {
	start := len(dst)
	dst = event.AppendJSONString(dst, s)
	// Drop the quotes AppendJSONString put around the body.
	body := dst[start+1 : len(dst)-1]
	n := copy(dst[start:], body)
	return dst[:start+n]
}
