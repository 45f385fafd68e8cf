package encode

import (
	"net/url"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// CloudEvents writes structured-mode JSON CloudEvents 1.0 whose data is the
// native event:
//
//	{"specversion":"1.0","id":"0/16B37A0:2","source":"/pgfeed/shop/app",
//	 "type":"io.pgfeed.change.update","subject":"public.users/{\"id\":2}",
//	 "time":"2026-11-23T04:56:29.368123Z","datacontenttype":"application/json",
//	 "data":{"op":"update",...}}
//
// The attributes:
//   - id is the event's identity from DESIGN.md, commit_lsn and seq joined
//     by a colon, so a redelivered event has the id of its first delivery
//     and consumers dedupe on (source, id) as the spec intends. Snapshot
//     and backfill reads have identities of their own too (their seq is
//     unique in the snapshot). Events with no seq of their own get their
//     op appended (":begin", ":commit"), and schema events their table
//     too, since a transaction can announce several tables.
//   - source is "/pgfeed/" + ServerName + "/" + Database (each path-escaped;
//     "/pgfeed/" + ServerName when Database is empty), or
//     Options.CloudEventsSource.
//   - type is reverse-DNS: io.pgfeed.change.insert, .update, .delete,
//     .truncate and .read for changes of a table, io.pgfeed.message for
//     logical messages, io.pgfeed.transaction.begin and .commit, and
//     io.pgfeed.schema.
//   - subject is "schema.table" for events of a table, followed by "/" and
//     the event's key in native JSON (AppendKey: {"id":2}) when it has one,
//     so that a subject names one row and a prefix filter on "schema.table/"
//     selects a table. Schema and table are written as they are, unquoted.
//     Logical messages have their prefix as subject; begin and commit none.
//   - time is the commit time, for reads the time of their snapshot (as the
//     source sets it on the event); events that carry no time at all get
//     the encoder's clock (Options.Now), so that every event has one.
//   - datacontenttype is "application/json".
type CloudEvents struct {
	head []byte // what follows the id: `","source":"..","type":"io.pgfeed.`
	now  func() time.Time
}

// CloudEventsTypePrefix starts the type attribute of every event.
const CloudEventsTypePrefix = "io.pgfeed."

// NewCloudEvents returns a CloudEvents encoder. See Options for what it uses.
func NewCloudEvents(opts Options) *CloudEvents {
	src := opts.CloudEventsSource
	if src == "" {
		src = CloudEventsSource(opts.serverName(), opts.Database)
	}
	h := append([]byte(nil), `","source":`...)
	h = event.AppendJSONString(h, src)
	h = append(h, `,"type":"`+CloudEventsTypePrefix...)
	return &CloudEvents{head: h, now: opts.now}
}

// CloudEventsSource returns the default source attribute of a server
// (Debezium's topic.prefix, a pipeline's source name) and database:
// "/pgfeed/server/db", each name path-escaped.
func CloudEventsSource(server, database string) string {
	src := "/pgfeed/" + url.PathEscape(server)
	if database != "" {
		src += "/" + url.PathEscape(database)
	}
	return src
}

// CloudEventsType returns the type attribute of an op ("io.pgfeed.change.insert").
func CloudEventsType(op event.Op) string {
	return CloudEventsTypePrefix + cloudEventsTypeSuffix(op)
}

func cloudEventsTypeSuffix(op event.Op) string {
	// Constants, not concatenations: Encode allocates nothing.
	switch op {
	case event.OpInsert:
		return "change.insert"
	case event.OpUpdate:
		return "change.update"
	case event.OpDelete:
		return "change.delete"
	case event.OpTruncate:
		return "change.truncate"
	case event.OpRead:
		return "change.read"
	case event.OpMessage:
		return "message"
	case event.OpBegin:
		return "transaction.begin"
	case event.OpCommit:
		return "transaction.commit"
	case event.OpSchema:
		return "schema"
	}
	return "change." + op.String()
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
	dst = append(dst, cloudEventsTypeSuffix(e.Op)...)
	dst = append(dst, '"')
	switch {
	case e.Op == event.OpMessage && e.Message != nil:
		dst = append(dst, `,"subject":`...)
		dst = event.AppendJSONString(dst, e.Message.Prefix)
	case e.Schema != "" || e.Table != "":
		// Schema and table names may hold any character; the subject is a
		// JSON string, escaped as such.
		dst = append(dst, `,"subject":"`...)
		dst = appendEscapedBody(dst, e.Schema)
		dst = append(dst, '.')
		dst = appendEscapedBody(dst, e.Table)
		if e.Op.IsRowChange() {
			dst = appendSubjectKey(dst, e)
		}
		dst = append(dst, '"')
	}
	t := e.CommitTime
	if t.IsZero() {
		t = c.now()
	}
	dst = append(dst, `,"time":"`...)
	dst = appendRFC3339Micro(dst, t)
	dst = append(dst, `","datacontenttype":"application/json","data":`...)
	dst = e.AppendJSON(dst)
	return append(dst, '}'), nil
}

// appendSubjectKey appends "/" and the key of e, escaped for the inside of
// a JSON string, when e has a key.
func appendSubjectKey(dst []byte, e *event.Event) []byte {
	start := len(dst)
	dst = append(dst, '/')
	keyAt := len(dst)
	dst, ok := AppendKey(dst, e)
	if !ok {
		return dst[:start]
	}
	// The key is JSON; as part of a JSON string it is escaped once more.
	// JSON text holds no raw control characters, so only quotes and
	// backslashes need it: escaped in place, from the end, without a copy.
	n := 0
	for _, c := range dst[keyAt:] {
		if c == '"' || c == '\\' {
			n++
		}
	}
	end := len(dst)
	for range n {
		dst = append(dst, 0)
	}
	w := len(dst)
	for r := end - 1; r >= keyAt; r-- {
		c := dst[r]
		w--
		dst[w] = c
		if c == '"' || c == '\\' {
			w--
			dst[w] = '\\'
		}
	}
	return dst
}

// Subject returns the subject attribute Encode gives e, "" when it has none.
func Subject(e *event.Event) string {
	switch {
	case e.Op == event.OpMessage && e.Message != nil:
		return e.Message.Prefix
	case e.Schema != "" || e.Table != "":
		s := e.Schema + "." + e.Table
		if e.Op.IsRowChange() {
			if k, ok := AppendKey(nil, e); ok {
				s += "/" + string(k)
			}
		}
		return s
	}
	return ""
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
