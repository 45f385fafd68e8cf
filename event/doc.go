// Package event defines what pgfeed delivers: a change Event with its
// positions, the Relation it belongs to and its row values in PostgreSQL's
// text form, plus the native JSON encoding of DESIGN.md.
//
// Values stay in the text form Postgres sent until someone asks for them:
// the JSON encoder converts them straight from those bytes, and Value.Decode
// gives Go values for library users. Nothing here does I/O.
package event
