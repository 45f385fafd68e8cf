// Package pgoutput decodes the messages of PostgreSQL's pgoutput logical
// decoding plugin (protocol versions 1 and 2). Decoding is pure: bytes in,
// message out, no I/O and no state, so it can be fuzzed and benchmarked
// alone. Tuple values keep pointing into the input; callers that keep them
// must own the input buffer.
package pgoutput

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Message types, as the first byte of each message.
const (
	TypeBegin        = 'B'
	TypeCommit       = 'C'
	TypeOrigin       = 'O'
	TypeRelation     = 'R'
	TypeType         = 'Y'
	TypeInsert       = 'I'
	TypeUpdate       = 'U'
	TypeDelete       = 'D'
	TypeTruncate     = 'T'
	TypeMessage      = 'M'
	TypeStreamStart  = 'S'
	TypeStreamStop   = 'E'
	TypeStreamCommit = 'c'
	TypeStreamAbort  = 'A'
)

// Message is one decoded pgoutput message: one of the pointer types below.
type Message interface{ msgType() byte }

// Begin starts a transaction. FinalLSN is the position of its commit record.
type Begin struct {
	FinalLSN   uint64
	CommitTime time.Time
	XID        uint32
}

// Commit ends a transaction.
type Commit struct {
	Flags      uint8
	CommitLSN  uint64
	EndLSN     uint64
	CommitTime time.Time
}

// Origin names the replication origin of the following changes.
type Origin struct {
	LSN  uint64
	Name string
}

// RelationColumn describes one column of a Relation.
type RelationColumn struct {
	Key     bool
	Name    string
	TypeOID uint32
	TypeMod int32
}

// Relation describes a table; it precedes the first change to it and is
// sent again after the table's definition changes.
type Relation struct {
	XID       uint32 // set inside a streamed transaction
	OID       uint32
	Namespace string // "" means pg_catalog
	Name      string
	Identity  byte
	Columns   []RelationColumn
}

// Type names a non-built-in type used by a later Relation.
type Type struct {
	XID       uint32
	OID       uint32
	Namespace string
	Name      string
}

// Column value kinds in TupleData.
const (
	ColumnNull      = 'n'
	ColumnUnchanged = 'u'
	ColumnText      = 't'
	ColumnBinary    = 'b'
)

// TupleColumn is one value of a tuple: Kind is ColumnNull, ColumnUnchanged,
// ColumnText or ColumnBinary, and Data holds the value for the last two.
type TupleColumn struct {
	Kind byte
	Data []byte
}

// Insert is a new row.
type Insert struct {
	XID      uint32
	Relation uint32
	New      []TupleColumn
}

// Update is a changed row. OldKind is 'K' (old key), 'O' (whole old row,
// REPLICA IDENTITY FULL) or 0 when no old row was sent.
type Update struct {
	XID      uint32
	Relation uint32
	OldKind  byte
	Old      []TupleColumn
	New      []TupleColumn
}

// Delete is a removed row; OldKind is 'K' or 'O' as for Update.
type Delete struct {
	XID      uint32
	Relation uint32
	OldKind  byte
	Old      []TupleColumn
}

// Truncate options.
const (
	TruncateCascade         = 1
	TruncateRestartIdentity = 2
)

// Truncate empties one or more tables.
type Truncate struct {
	XID       uint32
	Options   uint8
	Relations []uint32
}

// LogicalMessage is what pg_logical_emit_message wrote.
type LogicalMessage struct {
	XID           uint32
	Transactional bool
	LSN           uint64
	Prefix        string
	Content       []byte
}

// StreamStart opens a chunk of a large in-progress transaction (protocol 2).
type StreamStart struct {
	XID          uint32
	FirstSegment bool
}

// StreamStop closes a chunk of a streamed transaction.
type StreamStop struct{}

// StreamCommit commits a streamed transaction.
type StreamCommit struct {
	XID        uint32
	Flags      uint8
	CommitLSN  uint64
	EndLSN     uint64
	CommitTime time.Time
}

// StreamAbort aborts a streamed transaction (SubXID == XID) or one of its
// subtransactions.
type StreamAbort struct {
	XID    uint32
	SubXID uint32
}

func (*Begin) msgType() byte          { return TypeBegin }
func (*Commit) msgType() byte         { return TypeCommit }
func (*Origin) msgType() byte         { return TypeOrigin }
func (*Relation) msgType() byte       { return TypeRelation }
func (*Type) msgType() byte           { return TypeType }
func (*Insert) msgType() byte         { return TypeInsert }
func (*Update) msgType() byte         { return TypeUpdate }
func (*Delete) msgType() byte         { return TypeDelete }
func (*Truncate) msgType() byte       { return TypeTruncate }
func (*LogicalMessage) msgType() byte { return TypeMessage }
func (*StreamStart) msgType() byte    { return TypeStreamStart }
func (*StreamStop) msgType() byte     { return TypeStreamStop }
func (*StreamCommit) msgType() byte   { return TypeStreamCommit }
func (*StreamAbort) msgType() byte    { return TypeStreamAbort }

// ErrShort reports a message that ends before its fields do.
var ErrShort = errors.New("pgoutput: message too short")

// Parse decodes one message. inStream says whether it arrived between
// StreamStart and StreamStop, where change messages carry a transaction id.
func Parse(data []byte, inStream bool) (Message, error) {
	if len(data) == 0 {
		return nil, ErrShort
	}
	r := reader{buf: data[1:]}
	var m Message
	switch data[0] {
	case TypeBegin:
		m = &Begin{FinalLSN: r.u64(), CommitTime: r.time(), XID: r.u32()}
	case TypeCommit:
		m = &Commit{Flags: r.u8(), CommitLSN: r.u64(), EndLSN: r.u64(), CommitTime: r.time()}
	case TypeOrigin:
		m = &Origin{LSN: r.u64(), Name: r.str()}
	case TypeRelation:
		rel := &Relation{XID: r.xid(inStream), OID: r.u32(), Namespace: r.str(), Name: r.str(), Identity: r.u8()}
		n := int(r.u16())
		if n > len(r.buf) { // every column takes at least one byte; refuse absurd counts early
			return nil, ErrShort
		}
		rel.Columns = make([]RelationColumn, n)
		for i := range rel.Columns {
			rel.Columns[i] = RelationColumn{Key: r.u8()&1 == 1, Name: r.str(), TypeOID: r.u32(), TypeMod: int32(r.u32())}
		}
		m = rel
	case TypeType:
		m = &Type{XID: r.xid(inStream), OID: r.u32(), Namespace: r.str(), Name: r.str()}
	case TypeInsert:
		ins := &Insert{XID: r.xid(inStream), Relation: r.u32()}
		if tag := r.u8(); tag != 'N' && r.err == nil {
			return nil, fmt.Errorf("pgoutput: insert: unexpected tuple tag %q", tag)
		}
		ins.New = r.tuple()
		m = ins
	case TypeUpdate:
		up := &Update{XID: r.xid(inStream), Relation: r.u32()}
		tag := r.u8()
		if tag == 'K' || tag == 'O' {
			up.OldKind = tag
			up.Old = r.tuple()
			tag = r.u8()
		}
		if tag != 'N' && r.err == nil {
			return nil, fmt.Errorf("pgoutput: update: unexpected tuple tag %q", tag)
		}
		up.New = r.tuple()
		m = up
	case TypeDelete:
		del := &Delete{XID: r.xid(inStream), Relation: r.u32()}
		del.OldKind = r.u8()
		if del.OldKind != 'K' && del.OldKind != 'O' && r.err == nil {
			return nil, fmt.Errorf("pgoutput: delete: unexpected tuple tag %q", del.OldKind)
		}
		del.Old = r.tuple()
		m = del
	case TypeTruncate:
		tr := &Truncate{XID: r.xid(inStream)}
		n := int(r.u32())
		tr.Options = r.u8()
		if n > len(r.buf)/4 {
			return nil, ErrShort
		}
		tr.Relations = make([]uint32, n)
		for i := range tr.Relations {
			tr.Relations[i] = r.u32()
		}
		m = tr
	case TypeMessage:
		msg := &LogicalMessage{XID: r.xid(inStream)}
		msg.Transactional = r.u8()&1 == 1
		msg.LSN = r.u64()
		msg.Prefix = r.str()
		msg.Content = r.bytes(int(r.u32()))
		m = msg
	case TypeStreamStart:
		m = &StreamStart{XID: r.u32(), FirstSegment: r.u8() == 1}
	case TypeStreamStop:
		m = &StreamStop{}
	case TypeStreamCommit:
		m = &StreamCommit{XID: r.u32(), Flags: r.u8(), CommitLSN: r.u64(), EndLSN: r.u64(), CommitTime: r.time()}
	case TypeStreamAbort:
		m = &StreamAbort{XID: r.u32(), SubXID: r.u32()}
	default:
		return nil, fmt.Errorf("pgoutput: unknown message type %q", data[0])
	}
	if r.err != nil {
		return nil, fmt.Errorf("pgoutput: decoding %q message: %w", data[0], r.err)
	}
	return m, nil
}

// reader consumes big-endian fields. After the first short read it stops
// and remembers the error, so decoding code stays linear.
type reader struct {
	buf []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.buf) {
		r.err = ErrShort
		r.buf = nil
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func (r *reader) u8() uint8 {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) xid(inStream bool) uint32 {
	if inStream {
		return r.u32()
	}
	return 0
}

// postgresEpoch is 2000-01-01 UTC, the zero of Postgres timestamps.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (r *reader) time() time.Time {
	us := int64(r.u64())
	return postgresEpoch.Add(time.Duration(us) * time.Microsecond)
}

func (r *reader) str() string {
	if r.err != nil {
		return ""
	}
	for i, c := range r.buf {
		if c == 0 {
			s := string(r.buf[:i])
			r.buf = r.buf[i+1:]
			return s
		}
	}
	r.err = ErrShort
	r.buf = nil
	return ""
}

func (r *reader) bytes(n int) []byte { return r.take(n) }

func (r *reader) tuple() []TupleColumn {
	n := int(r.u16())
	if r.err != nil {
		return nil
	}
	if n > len(r.buf) { // each column takes at least its kind byte
		r.err = ErrShort
		return nil
	}
	cols := make([]TupleColumn, n)
	for i := range cols {
		kind := r.u8()
		cols[i].Kind = kind
		switch kind {
		case ColumnNull, ColumnUnchanged:
		case ColumnText, ColumnBinary:
			cols[i].Data = r.take(int(r.u32()))
		default:
			if r.err == nil {
				r.err = fmt.Errorf("unknown column kind %q", kind)
			}
		}
		if r.err != nil {
			return nil
		}
	}
	return cols
}
