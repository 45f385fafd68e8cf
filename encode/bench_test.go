package encode

import (
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

// benchEvent is a typical narrow-table update: a few integers, text, a
// timestamp and a numeric, the old key, no TOAST.
func benchEvent() *event.Event {
	rel := &event.Relation{Schema: "public", Table: "orders", Identity: event.IdentityDefault, Columns: []event.Column{
		{Name: "id", Type: typ(20), TypeMod: -1, Key: true},
		{Name: "customer_id", Type: typ(23), TypeMod: -1},
		{Name: "status", Type: typ(25), TypeMod: -1},
		{Name: "total", Type: typ(1700), TypeMod: numericMod(12, 2)},
		{Name: "note", Type: typ(1043), TypeMod: 260},
		{Name: "paid", Type: typ(16), TypeMod: -1},
		{Name: "created_at", Type: typ(1184), TypeMod: -1},
	}}
	e := base(event.OpUpdate, rel, 3)
	e.After = event.Row{text("1234567"), text("42"), text("shipped"), text("199.90"), text("leave at the door"), text("t"), text("2026-11-23 04:56:29.368123+00")}
	return e
}

// BenchmarkEncode encodes one event per iteration into a reused buffer, as
// a pipeline batching into one buffer does. Run with -benchmem: json and
// wal2json should not allocate.
func BenchmarkEncode(b *testing.B) {
	for _, format := range Formats() {
		b.Run(format, func(b *testing.B) {
			enc, err := New(format, testOptions())
			if err != nil {
				b.Fatal(err)
			}
			e := benchEvent()
			buf, err := enc.Encode(nil, e) // warm the per-relation caches
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if buf, err = enc.Encode(buf[:0], e); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkKey measures the message-key helper sinks call per event.
func BenchmarkKey(b *testing.B) {
	e := benchEvent()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendKey(buf[:0], e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// TestEncodeAllocations keeps the promise of the package doc: the native
// and wal2json encoders append without allocating once dst is large enough.
// The event avoids timestamptz, whose conversion belongs to the event
// package.
func TestEncodeAllocations(t *testing.T) {
	e := benchEvent()
	e.Rel.Columns = e.Rel.Columns[:6]
	e.After = e.After[:6]
	e.Before = event.Row{text("1234567"), absent, absent, absent, absent, absent}
	for _, enc := range []Encoder{JSON{}, &Wal2JSON{}, NewCloudEvents(Options{})} {
		buf, err := enc.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(100, func() {
			buf, _ = enc.Encode(buf[:0], e)
		})
		if allocs != 0 {
			t.Errorf("%T: %v allocations per event, want 0", enc, allocs)
		}
	}
}
