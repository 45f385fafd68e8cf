package source

import (
	"fmt"
	"slices"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/internal/pgoutput"
)

// relState is a relation as last described by the stream, with whether its
// events pass the table filter.
type relState struct {
	rel  *event.Relation
	keep bool
	// identity flags the replica identity columns, which a key-only old
	// row ('K') holds; the event's key is in rel.
	identity []bool
}

// decoder turns pgoutput messages into events. It holds the relation cache
// and the state of the transaction being decoded; it does no I/O (types are
// resolved by the caller before a Relation message reaches it).
type decoder struct {
	types     *catalog.Types
	tables    tableSelection
	schemas   bool // emit schema events
	txnEvents bool // emit begin/commit events
	rels      map[uint32]*relState
	// keys are the key columns the catalog gave for a relation (see
	// catalog.Key), set by the caller before the relation's Relation
	// message reaches the decoder.
	keys map[uint32][]string

	// The transaction being decoded.
	inTxn      bool
	xid        uint32
	commitLSN  event.LSN
	commitTime time.Time
	seq        int
}

func newDecoder(types *catalog.Types, tables tableSelection, schemas, txnEvents bool) *decoder {
	return &decoder{types: types, tables: tables, schemas: schemas, txnEvents: txnEvents, rels: map[uint32]*relState{}, keys: map[uint32][]string{}}
}

// setKey records the key columns of a relation, for its next Relation message.
func (d *decoder) setKey(oid uint32, names []string) { d.keys[oid] = names }

// relationTypes lists the type OIDs a Relation message uses.
func relationTypes(m *pgoutput.Relation) []uint32 {
	oids := make([]uint32, len(m.Columns))
	for i, c := range m.Columns {
		oids[i] = c.TypeOID
	}
	return oids
}

// handle decodes one message and appends the events it yields to out.
// walStart is the position of the XLogData that carried the message.
func (d *decoder) handle(out []*event.Event, walStart event.LSN, msg pgoutput.Message) ([]*event.Event, error) {
	switch m := msg.(type) {
	case *pgoutput.Begin:
		d.startTxn(m.XID, event.LSN(m.FinalLSN), m.CommitTime)
		if d.txnEvents {
			out = append(out, d.boundary(event.OpBegin, walStart, 0))
		}
	case *pgoutput.Commit:
		if d.txnEvents {
			out = append(out, d.boundary(event.OpCommit, walStart, event.LSN(m.EndLSN)))
		}
		d.inTxn = false
	case *pgoutput.Relation:
		out = d.addRelation(out, walStart, m)
	case *pgoutput.Insert:
		rs, err := d.relation(m.Relation)
		if err != nil {
			return out, err
		}
		d.seq++
		if rs.keep {
			out = append(out, d.change(event.OpInsert, walStart, rs, 0, nil, m.New))
		}
	case *pgoutput.Update:
		rs, err := d.relation(m.Relation)
		if err != nil {
			return out, err
		}
		d.seq++
		if rs.keep {
			out = append(out, d.change(event.OpUpdate, walStart, rs, m.OldKind, m.Old, m.New))
		}
	case *pgoutput.Delete:
		rs, err := d.relation(m.Relation)
		if err != nil {
			return out, err
		}
		d.seq++
		if rs.keep {
			out = append(out, d.change(event.OpDelete, walStart, rs, m.OldKind, m.Old, nil))
		}
	case *pgoutput.Truncate:
		for _, oid := range m.Relations {
			rs, err := d.relation(oid)
			if err != nil {
				return out, err
			}
			d.seq++
			if !rs.keep {
				continue
			}
			e := d.base(event.OpTruncate, walStart)
			e.Schema, e.Table, e.Rel = rs.rel.Schema, rs.rel.Table, rs.rel
			e.Cascade = m.Options&pgoutput.TruncateCascade != 0
			e.RestartIdentity = m.Options&pgoutput.TruncateRestartIdentity != 0
			out = append(out, e)
		}
	case *pgoutput.LogicalMessage:
		if !m.Transactional {
			// Outside any transaction: its own position is its commit position.
			d.startTxn(0, event.LSN(m.LSN), time.Time{})
			d.inTxn = false
		}
		d.seq++
		e := d.base(event.OpMessage, walStart)
		e.LSN = event.LSN(m.LSN)
		e.Message = &event.Message{Prefix: m.Prefix, Content: m.Content, Transactional: m.Transactional}
		out = append(out, e)
	case *pgoutput.Type, *pgoutput.Origin:
		// Types are resolved from the catalog; origins are not exposed.
	default:
		return out, fmt.Errorf("unexpected %T outside of stream handling", msg)
	}
	return out, nil
}

func (d *decoder) startTxn(xid uint32, commit event.LSN, at time.Time) {
	d.inTxn, d.xid, d.commitLSN, d.commitTime, d.seq = true, xid, commit, at, 0
}

func (d *decoder) base(op event.Op, lsn event.LSN) *event.Event {
	return &event.Event{Op: op, LSN: lsn, CommitLSN: d.commitLSN, XID: d.xid, CommitTime: d.commitTime, Seq: d.seq}
}

func (d *decoder) boundary(op event.Op, lsn, end event.LSN) *event.Event {
	e := d.base(op, lsn)
	e.Seq = 0
	e.EndLSN = end
	return e
}

func (d *decoder) relation(oid uint32) (*relState, error) {
	rs, ok := d.rels[oid]
	if !ok {
		return nil, fmt.Errorf("change for relation %d before its Relation message", oid)
	}
	return rs, nil
}

func (d *decoder) addRelation(out []*event.Event, walStart event.LSN, m *pgoutput.Relation) []*event.Event {
	schema := m.Namespace
	if schema == "" {
		schema = "pg_catalog"
	}
	rel := &event.Relation{OID: m.OID, Schema: schema, Table: m.Name, Identity: m.Identity, Columns: make([]event.Column, len(m.Columns))}
	identity := make([]bool, len(m.Columns))
	for i, c := range m.Columns {
		rel.Columns[i] = event.Column{Name: c.Name, Type: d.types.Type(c.TypeOID), TypeMod: c.TypeMod}
		identity[i] = c.Key
	}
	markKey(rel, d.keys[m.OID], identity)
	old := d.rels[m.OID]
	keep := d.tables.match(schema, m.Name)
	rs := &relState{rel: rel, keep: keep, identity: identity}
	d.rels[m.OID] = rs
	// pgoutput repeats Relation messages (after reconnects, cache
	// invalidations); a schema event is only news when the columns changed.
	if d.schemas && rs.keep && (old == nil || !sameColumns(old.rel, rel)) {
		e := d.base(event.OpSchema, walStart)
		e.Seq = 0
		e.Schema, e.Table, e.Rel = schema, m.Name, rel
		out = append(out, e)
	}
	return out
}

// markKey flags the key columns of rel: those named by the catalog's key,
// else (the catalog named columns the stream does not have, as when it
// changed since) the replica identity unless it is FULL, else every column.
func markKey(rel *event.Relation, key []string, identity []bool) {
	found := 0
	for i := range rel.Columns {
		if slices.Contains(key, rel.Columns[i].Name) {
			rel.Columns[i].Key = true
			found++
		}
	}
	if found > 0 && found == len(key) {
		return
	}
	found = 0
	for i := range rel.Columns {
		rel.Columns[i].Key = identity[i] && rel.Identity != event.IdentityFull
		if rel.Columns[i].Key {
			found++
		}
	}
	if found > 0 {
		return
	}
	rel.NoKey = true
	for i := range rel.Columns {
		rel.Columns[i].Key = true
	}
}

func sameColumns(a, b *event.Relation) bool {
	if a.Schema != b.Schema || a.Table != b.Table || a.NoKey != b.NoKey || len(a.Columns) != len(b.Columns) {
		return false
	}
	for i := range a.Columns {
		x, y := a.Columns[i], b.Columns[i]
		if x.Name != y.Name || x.Type.OID != y.Type.OID || x.TypeMod != y.TypeMod || x.Key != y.Key {
			return false
		}
	}
	return true
}

func (d *decoder) change(op event.Op, lsn event.LSN, rs *relState, oldKind byte, old, new []pgoutput.TupleColumn) *event.Event {
	e := d.base(op, lsn)
	e.Schema, e.Table, e.Rel = rs.rel.Schema, rs.rel.Table, rs.rel
	if new != nil {
		e.After = toRow(new, len(rs.rel.Columns), nil)
	}
	if old != nil {
		var keyOnly []bool
		if oldKind == 'K' {
			keyOnly = rs.identity
		}
		e.Before = toRow(old, len(rs.rel.Columns), keyOnly)
	}
	return e
}

// toRow converts tuple data into a Row of ncols values. In a key-only old
// tuple ('K'), Postgres sends NULL for every column outside the replica
// identity (identity, nil for other tuples): those are Absent, not NULL.
func toRow(cols []pgoutput.TupleColumn, ncols int, identity []bool) event.Row {
	row := make(event.Row, ncols)
	for i := range row {
		if i >= len(cols) {
			break // fewer values than columns: leave the rest Absent
		}
		c := cols[i]
		switch {
		case identity != nil && (i >= len(identity) || !identity[i]):
			row[i].State = event.Absent
		case c.Kind == pgoutput.ColumnNull:
			row[i].State = event.Null
		case c.Kind == pgoutput.ColumnUnchanged:
			row[i].State = event.Unchanged
		default:
			row[i] = event.Value{State: event.Text, Raw: c.Data}
		}
	}
	return row
}
