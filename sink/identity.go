package sink

import (
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
)

// Identity returns the record's event identity (DESIGN.md, Event identity)
// as one string: the source's name, then the CloudEvents id of the event
// (commit_lsn and seq, e.g. "main:0/16B37A0:2"). A redelivered event has
// the identity of its first delivery, so brokers that drop duplicates by an
// id (NATS Nats-Msg-Id) and consumers that dedupe use it.
//
// Read events also carry their table: the rows of an initial snapshot share
// the slot's consistent point as commit_lsn, and seq counts rows per table,
// so two tables' rows would otherwise have the same identity.
func Identity(r Record) string {
	e := r.Event
	if e == nil {
		return ""
	}
	b := make([]byte, 0, len(r.Source)+40)
	if r.Source != "" {
		b = append(b, r.Source...)
		b = append(b, ':')
	}
	b = append(b, encode.ID(e)...)
	if e.Op == event.OpRead {
		b = append(b, ":read:"...)
		b = append(b, e.Schema...)
		b = append(b, '.')
		b = append(b, e.Table...)
	}
	return string(b)
}
