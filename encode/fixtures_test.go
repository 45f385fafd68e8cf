package encode

import (
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// The test events are built by hand, the way the source would build them
// from pgoutput: values in Postgres's text form, types from the built-in OIDs.

func typ(oid uint32) *event.Type {
	t := event.BuiltinType(oid)
	if t == nil {
		panic("not a built-in type")
	}
	return t
}

// numericMod is the typmod of numeric(p,s), as Postgres makes it.
func numericMod(p, s int32) int32 { return (p<<16 | s&0x7ff) + 4 }

func columns(fullIdentity bool) []event.Column {
	cols := []event.Column{
		{Name: "id", Type: typ(23), TypeMod: -1, Key: true},
		{Name: "data", Type: typ(25), TypeMod: -1},
		{Name: "amount", Type: typ(1700), TypeMod: numericMod(10, 2)},
		{Name: "created", Type: typ(1184), TypeMod: -1},
		{Name: "tags", Type: typ(1009), TypeMod: -1},
		{Name: "doc", Type: typ(3802), TypeMod: -1},
		{Name: "blob", Type: typ(17), TypeMod: -1},
		{Name: "day", Type: typ(1082), TypeMod: -1},
		{Name: "ts", Type: typ(1114), TypeMod: -1},
		{Name: "at", Type: typ(1083), TypeMod: -1},
		{Name: "flag", Type: typ(16), TypeMod: -1},
		{Name: "ratio", Type: typ(701), TypeMod: -1},
		{Name: "big", Type: typ(20), TypeMod: -1},
		{Name: "uid", Type: typ(2950), TypeMod: -1},
		{Name: "name", Type: typ(1043), TypeMod: 64}, // varchar(60)
		{Name: "tz", Type: typ(1266), TypeMod: -1},
		{Name: "small", Type: typ(21), TypeMod: -1},
	}
	if fullIdentity {
		// A table without key (here under REPLICA IDENTITY FULL) keys on every column.
		for i := range cols {
			cols[i].Key = true
		}
	}
	return cols
}

var (
	relData = &event.Relation{OID: 16384, Schema: "public", Table: "data", Identity: event.IdentityDefault, Columns: columns(false)}
	relFull = &event.Relation{OID: 16390, Schema: "public", Table: "audit", Identity: event.IdentityFull, Columns: columns(true), NoKey: true}
)

func text(s string) event.Value { return event.Value{State: event.Text, Raw: []byte(s)} }

var (
	null      = event.Value{State: event.Null}
	absent    = event.Value{State: event.Absent}
	unchanged = event.Value{State: event.Unchanged}
)

// rowOne and rowTwo are a row before and after an update.
func rowOne() event.Row {
	return event.Row{
		text("2"),
		text("hello \"quoted\"\nworld"),
		text("12.50"),
		text("2026-11-23 04:56:29.368123+00"),
		text(`{a,"b c",NULL}`),
		text(`{"k": [1, 2.5], "s": "x"}`),
		text(`\x0102ff`),
		text("2026-11-23"),
		text("2026-11-23 04:56:29.368123"),
		text("04:56:29.368123"),
		text("t"),
		text("1.5"),
		text("9223372036854775807"),
		text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
		text("naïve"),
		text("04:56:29.368123+05:30"),
		text("-32768"),
	}
}

func rowTwo() event.Row {
	return event.Row{
		text("2"),
		text("second"),
		text("NaN"),
		text("infinity"),
		text(`{}`),
		text(`[]`),
		text(`\x`),
		text("0044-03-15 BC"),
		text("1969-12-31 23:59:59.999999"),
		text("24:00:00"),
		text("f"),
		text("-Infinity"),
		text("-1"),
		null,
		null,
		text("23:00:00-02"),
		text("7"),
	}
}

var (
	commitTime = time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)
	fixedNow   = time.Date(2026, 11, 23, 4, 56, 30, 0, time.UTC)
)

// base returns an event of a transaction with the usual positions.
func base(op event.Op, rel *event.Relation, seq int) *event.Event {
	e := &event.Event{
		Op:         op,
		LSN:        event.LSN(0x16B3748 + uint64(seq)*0x30),
		CommitLSN:  0x16B37A0,
		XID:        732,
		CommitTime: commitTime,
		Seq:        seq,
		Rel:        rel,
	}
	if rel != nil {
		e.Schema, e.Table = rel.Schema, rel.Table
	}
	return e
}

type testCase struct {
	name string
	ev   *event.Event
}

// testEvents covers every op, and the shapes of old rows Postgres sends.
func testEvents() []testCase {
	insert := base(event.OpInsert, relData, 1)
	insert.After = rowOne()

	update := base(event.OpUpdate, relFull, 2)
	update.Before = rowOne()
	update.After = rowTwo()

	updateNoBefore := base(event.OpUpdate, relData, 2)
	updateNoBefore.After = rowTwo()

	// An update that left TOASTed values alone: Postgres does not send them.
	updateToast := base(event.OpUpdate, relData, 3)
	updateToast.After = rowOne()
	updateToast.After[1] = unchanged
	updateToast.After[4] = unchanged
	updateToast.After[5] = unchanged
	updateToast.After[6] = unchanged

	deleteKey := base(event.OpDelete, relData, 4)
	deleteKey.Before = event.Row{text("2"), absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent, absent}

	deleteFull := base(event.OpDelete, relFull, 4)
	deleteFull.Before = rowTwo()

	truncate := base(event.OpTruncate, relData, 5)
	truncate.Cascade = true

	message := base(event.OpMessage, nil, 6)
	message.Message = &event.Message{Prefix: "app", Content: []byte("hello \"world\""), Transactional: true}

	// A snapshot row: no transaction of its own, no commit time.
	read := &event.Event{Op: event.OpRead, Schema: "public", Table: "data", LSN: 0x16B0000, CommitLSN: 0x16B0000, Seq: 1, Rel: relData, After: rowOne()}

	begin := base(event.OpBegin, nil, 0)
	begin.LSN = 0x16B37A0

	commit := base(event.OpCommit, nil, 0)
	commit.LSN = 0x16B37A0
	commit.EndLSN = 0x16B37D0

	schema := base(event.OpSchema, relData, 0)

	return []testCase{
		{"insert", insert},
		{"update", update},
		{"update_no_before", updateNoBefore},
		{"update_toast", updateToast},
		{"delete_key", deleteKey},
		{"delete_full", deleteFull},
		{"truncate", truncate},
		{"message", message},
		{"read", read},
		{"begin", begin},
		{"commit", commit},
		{"schema", schema},
	}
}

func testOptions() Options {
	return Options{Database: "app", Now: func() time.Time { return fixedNow }}
}
