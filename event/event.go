package event

import (
	"fmt"
	"time"
)

// Op is what happened.
type Op uint8

// The operations of DESIGN.md. OpBegin, OpCommit and OpSchema are delivered
// only when a consumer asks for them.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
	OpMessage
	OpRead
	OpBegin
	OpCommit
	OpSchema
)

var opNames = [...]string{"", "insert", "update", "delete", "truncate", "message", "read", "begin", "commit", "schema"}

// String returns the op as it appears in JSON ("insert", "read", ...).
func (o Op) String() string {
	if int(o) < len(opNames) && o != 0 {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", o)
}

// ParseOp is the inverse of Op.String.
func ParseOp(s string) (Op, error) {
	for i, n := range opNames {
		if i > 0 && n == s {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("unknown op %q", s)
}

// IsRowChange reports whether the op carries a row (insert, update, delete, read).
func (o Op) IsRowChange() bool {
	return o == OpInsert || o == OpUpdate || o == OpDelete || o == OpRead
}

// Column is one column of a Relation.
type Column struct {
	Name    string
	Type    *Type
	TypeMod int32
	// Key: part of the event's key, the replica identity index or primary
	// key, whatever the table's REPLICA IDENTITY; every column when the
	// table has neither (Relation.NoKey).
	Key bool
}

// Replica identity settings, as pgoutput sends them in Relation.Identity.
const (
	IdentityDefault byte = 'd'
	IdentityNothing byte = 'n'
	IdentityFull    byte = 'f'
	IdentityIndex   byte = 'i'
)

// Relation is a table as the change stream last described it.
// Relations are shared between events and must not be modified.
type Relation struct {
	OID      uint32
	Schema   string
	Table    string
	Identity byte
	Columns  []Column
	// NoKey says the table has neither a primary key nor a replica
	// identity index: every column is then flagged Key, since the event's
	// key is the whole row (DESIGN.md), but none is known to be NOT NULL.
	NoKey bool
}

// KeyColumns returns the indexes of the key columns.
func (r *Relation) KeyColumns() []int {
	var idx []int
	for i, c := range r.Columns {
		if c.Key {
			idx = append(idx, i)
		}
	}
	return idx
}

// ColumnIndex returns the index of the named column, or -1.
func (r *Relation) ColumnIndex(name string) int {
	for i, c := range r.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// ValueState says whether a Value holds data.
type ValueState uint8

const (
	// Absent: Postgres did not send this column (non-key columns of a key-only
	// old row). It is left out of JSON.
	Absent ValueState = iota
	// Null is SQL NULL.
	Null
	// Text holds Postgres's text form in Raw.
	Text
	// Unchanged is a TOASTed value that the update did not touch; Postgres
	// does not send it and pgfeed does not invent it.
	Unchanged
)

// Value is one column value in Postgres's text form.
type Value struct {
	State ValueState
	Raw   []byte
}

// Row holds the values of a row, in the order of its Relation's columns.
type Row []Value

// Message is the payload of pg_logical_emit_message.
type Message struct {
	Prefix        string
	Content       []byte
	Transactional bool
}

// Event is one change, or one transaction boundary, schema or snapshot row.
type Event struct {
	Op     Op
	Schema string
	Table  string
	// LSN is the position of the change's own WAL record. For read events it
	// is the position the snapshot is consistent with.
	LSN LSN
	// CommitLSN is the position of the transaction's commit record. Acking it
	// acknowledges the whole transaction. CommitLSN and Seq identify an event
	// across redeliveries.
	CommitLSN  LSN
	XID        uint32
	CommitTime time.Time
	// Seq is the 1-based index of the event within its transaction. Reads
	// of a snapshot of several tables, which share one CommitLSN, number
	// each table's rows in a range of its own (snapshot.TableSeqBase).
	Seq int

	Rel    *Relation // the table of row, truncate and schema events
	Before Row       // nil when Postgres sent no old row
	After  Row       // nil for deletes and truncates

	Message *Message // for OpMessage

	// Truncate options, for OpTruncate.
	Cascade         bool
	RestartIdentity bool

	// EndLSN is the end of the transaction, on commit events.
	EndLSN LSN
}

// Key returns the key columns' values: from the new row when there is one,
// else from the old row. Columns not sent are Absent.
func (e *Event) Key() Row {
	src := e.After
	if src == nil {
		src = e.Before
	}
	if src == nil || e.Rel == nil {
		return nil
	}
	key := make(Row, len(src))
	for i := range src {
		if i < len(e.Rel.Columns) && e.Rel.Columns[i].Key {
			key[i] = src[i]
		}
	}
	return key
}

// Map returns the row as a map of column name to Go value (see Value.Decode).
// Absent and unchanged columns are left out.
func (r Row) Map(rel *Relation) (map[string]any, error) {
	if r == nil {
		return nil, nil
	}
	m := make(map[string]any, len(r))
	for i, v := range r {
		if i >= len(rel.Columns) || v.State == Absent || v.State == Unchanged {
			continue
		}
		x, err := v.Decode(rel.Columns[i].Type)
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", rel.Columns[i].Name, err)
		}
		m[rel.Columns[i].Name] = x
	}
	return m, nil
}

// Unchanged lists the columns whose TOASTed values the update left untouched.
func (e *Event) Unchanged() []string {
	var names []string
	for i, v := range e.After {
		if v.State == Unchanged && e.Rel != nil && i < len(e.Rel.Columns) {
			names = append(names, e.Rel.Columns[i].Name)
		}
	}
	return names
}
