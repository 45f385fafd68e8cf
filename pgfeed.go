// Package pgfeed consumes PostgreSQL logical decoding from Go: open a
// stream, receive typed change events, ack them. Whatever was not acked comes
// back after a restart, with no logic on the consumer's side.
//
//	stream, err := pgfeed.Open(ctx, pgfeed.Config{DSN: dsn, Slot: "orders", Create: true})
//	...
//	for {
//		ev, err := stream.Next(ctx)
//		if err != nil { ... }           // io.EOF once Config.EndLSN is reached
//		handle(ev)
//		stream.Ack(ev.CommitLSN)        // everything up to this transaction is done
//	}
//
// Events carry the replica-identity key, the old row as Postgres sent it,
// the new row, and positions (LSN, CommitLSN, Seq) that identify them across
// redeliveries. Values stay in Postgres's text form until asked for:
// Event.AppendJSON encodes the native JSON of DESIGN.md, and Row.Map gives Go
// values (int64, float64, string, bool, time.Time, []byte, []any, ...).
//
// The package is a thin front door: the engine lives in package source and
// the event types in package event.
package pgfeed

import (
	"context"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/source"
)

type (
	// Config says where to stream from; see source.Config.
	Config = source.Config
	// Stream delivers the changes of one replication slot; see source.Stream.
	Stream = source.Stream
	// Event is one change; see event.Event.
	Event = event.Event
	// LSN is a WAL position; see event.LSN.
	LSN = event.LSN
	// Op is what happened; see event.Op.
	Op = event.Op
	// Row holds a row's values in column order; see event.Row.
	Row = event.Row
	// UserError is a failure the user can fix, with a one-line message.
	UserError = source.UserError
)

// The operations an Event can carry.
const (
	OpInsert   = event.OpInsert
	OpUpdate   = event.OpUpdate
	OpDelete   = event.OpDelete
	OpTruncate = event.OpTruncate
	OpMessage  = event.OpMessage
	OpRead     = event.OpRead
	OpBegin    = event.OpBegin
	OpCommit   = event.OpCommit
	OpSchema   = event.OpSchema
)

// Open checks the server, publication and slot (creating them when
// Config.Create is set) and starts streaming. Errors a user can fix are
// *UserError with a one-line message naming the cause and the fix.
func Open(ctx context.Context, cfg Config) (*Stream, error) { return source.Open(ctx, cfg) }

// ParseLSN parses a position printed as Postgres prints it ("0/16B3748").
func ParseLSN(s string) (LSN, error) { return event.ParseLSN(s) }
