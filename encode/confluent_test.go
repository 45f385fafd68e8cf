package encode

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
)

// countingRegistry hands out ids and counts the requests, in memory: what
// is measured here is the encoder's cache, not a registry (the pipeline
// tests run against one over HTTP).
type countingRegistry struct {
	mu    sync.Mutex
	ids   map[string]int
	calls int
}

func (r *countingRegistry) SchemaID(_ context.Context, subject, schema string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	if id, ok := r.ids[schema]; ok {
		return id, nil
	}
	r.ids[schema] = len(r.ids) + 1
	return len(r.ids), nil
}

// The Confluent framing wraps the same datum as the single-object
// encoding, the key is the key columns, and the registry is asked once
// per subject and schema, however many records.
func TestConfluentFraming(t *testing.T) {
	reg := &countingRegistry{}
	c, err := NewConfluent(testOptions(), reg, "")
	if err != nil {
		t.Fatal(err)
	}
	single, err := NewAvro(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	e := benchEvent()
	for range 3 {
		v, err := c.EncodeTopic(nil, "public.t", e)
		if err != nil {
			t.Fatal(err)
		}
		so, err := single.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != 0 || binary.BigEndian.Uint32(v[1:5]) == 0 || string(v[5:]) != string(so[10:]) {
			t.Fatalf("confluent % x\nsingle-object % x", v[:min(len(v), 16)], so[:min(len(so), 16)])
		}
		k, ok, err := c.EncodeKeyTopic(nil, "public.t", e)
		if err != nil || !ok || k[0] != 0 {
			t.Fatalf("key % x %v %v", k, ok, err)
		}
	}
	if reg.calls != 2 {
		t.Fatalf("%d registry calls for 3 records, want 2 (value and key)", reg.calls)
	}
	if _, err := c.Encode(nil, e); err == nil {
		t.Fatal("Encode without a topic succeeded")
	}
}

// BenchmarkConfluent measures value and key encoding with the ids cached.
func BenchmarkConfluent(b *testing.B) {
	c, err := NewConfluent(testOptions(), &countingRegistry{}, "")
	if err != nil {
		b.Fatal(err)
	}
	e := benchEvent()
	buf, err := c.EncodeTopic(nil, "public.t", e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, err = c.EncodeTopic(buf[:0], "public.t", e)
		if err == nil {
			buf, _, err = c.EncodeKeyTopic(buf, "public.t", e)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
