package pgoutput

import (
	"encoding/binary"
	"testing"
	"time"
)

// builder writes pgoutput messages the way the server does.
type builder []byte

func (b builder) u8(v byte) builder    { return append(b, v) }
func (b builder) u16(v uint16) builder { return binary.BigEndian.AppendUint16(b, v) }
func (b builder) u32(v uint32) builder { return binary.BigEndian.AppendUint32(b, v) }
func (b builder) u64(v uint64) builder { return binary.BigEndian.AppendUint64(b, v) }
func (b builder) str(s string) builder { return append(append(b, s...), 0) }

func TestParse(t *testing.T) {
	begin := builder{TypeBegin}.u64(0x100).u64(86400 * 1e6).u32(7)
	m, err := Parse(begin, false)
	if err != nil {
		t.Fatal(err)
	}
	if b := m.(*Begin); b.FinalLSN != 0x100 || b.XID != 7 || !b.CommitTime.Equal(time.Date(2000, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("begin: %+v", b)
	}

	rel := builder{TypeRelation}.u32(99).u32(16384).str("public").str("t").u8('d').u16(2).
		u8(1).str("id").u32(23).u32(0xFFFFFFFF).
		u8(0).str("v").u32(25).u32(0xFFFFFFFF)
	m, err = Parse(rel, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.(*Relation); r.XID != 99 || r.OID != 16384 || r.Name != "t" || len(r.Columns) != 2 || !r.Columns[0].Key || r.Columns[1].TypeMod != -1 {
		t.Fatalf("relation: %+v", r)
	}

	upd := builder{TypeUpdate}.u32(16384).u8('O').u16(2).u8('t').u32(1)
	upd = append(upd, '1')
	upd = upd.u8('n').u8('N').u16(2).u8('t').u32(1)
	upd = append(upd, '2')
	upd = upd.u8('u')
	m, err = Parse(upd, false)
	if err != nil {
		t.Fatal(err)
	}
	if u := m.(*Update); u.OldKind != 'O' || string(u.Old[0].Data) != "1" || u.Old[1].Kind != ColumnNull || string(u.New[0].Data) != "2" || u.New[1].Kind != ColumnUnchanged {
		t.Fatalf("update: %+v", u)
	}

	msg := builder{TypeMessage}.u8(1).u64(0x200).str("app").u32(3)
	msg = append(msg, "abc"...)
	m, err = Parse(msg, false)
	if err != nil {
		t.Fatal(err)
	}
	if lm := m.(*LogicalMessage); !lm.Transactional || lm.Prefix != "app" || string(lm.Content) != "abc" || lm.LSN != 0x200 {
		t.Fatalf("message: %+v", lm)
	}

	for name, bad := range map[string][]byte{
		"empty":            nil,
		"unknown type":     {'Z'},
		"short begin":      builder{TypeBegin}.u64(1),
		"unterminated str": builder{TypeOrigin}.u64(1).u8('x'),
		"huge tuple":       builder{TypeInsert}.u32(1).u8('N').u16(65535),
		"bad tuple tag":    builder{TypeInsert}.u32(1).u8('X'),
		"bad column kind":  builder{TypeInsert}.u32(1).u8('N').u16(1).u8('z'),
		"value past end":   builder{TypeInsert}.u32(1).u8('N').u16(1).u8('t').u32(100),
		"huge truncate":    builder{TypeTruncate}.u32(1 << 30).u8(0),
	} {
		if _, err := Parse(bad, false); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParse: no input may panic the decoder, in or out of a stream.
func FuzzParse(f *testing.F) {
	f.Add([]byte(builder{TypeBegin}.u64(1).u64(2).u32(3)), false)
	f.Add([]byte(builder{TypeRelation}.u32(1).u32(2).str("s").str("t").u8('d').u16(1).u8(1).str("id").u32(23).u32(0)), true)
	f.Add([]byte(builder{TypeInsert}.u32(1).u8('N').u16(1).u8('t').u32(1).u8('x')), false)
	f.Add([]byte(builder{TypeTruncate}.u32(1).u32(2).u8(1).u32(3)), true)
	f.Add([]byte(builder{TypeStreamCommit}.u32(1).u8(0).u64(1).u64(2).u64(3)), false)
	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		m, err := Parse(data, inStream)
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
	})
}

func BenchmarkParseInsert(b *testing.B) {
	ins := builder{TypeInsert}.u32(16384).u8('N').u16(4)
	for _, v := range []string{"12345", "some text value", "2026-11-23 04:56:29.368123+00", "12.50"} {
		ins = ins.u8('t').u32(uint32(len(v)))
		ins = append(ins, v...)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(ins, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
