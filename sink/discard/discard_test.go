package discard

import (
	"context"
	"sync"
	"testing"

	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		return sinktest.Target{Sink: New()} // keeps nothing to read back
	})
}

func TestCounts(t *testing.T) {
	s := New()
	ctx := context.Background()
	batch := []sink.Record{{Value: []byte("abc")}, {Value: []byte("de"), Key: []byte("not counted")}, {}}
	for range 4 {
		if err := s.Write(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if r, b := s.Records(), s.Bytes(); r != 12 || b != 20 {
		t.Errorf("Records, Bytes = %d, %d; want 12, 20", r, b)
	}
	// A failed write counts nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Write(cancelled, batch); err == nil {
		t.Fatal("Write with cancelled context: want error")
	}
	s.Close()
	if err := s.Write(ctx, batch); err == nil {
		t.Fatal("Write after Close: want error")
	}
	if r, b := s.Records(), s.Bytes(); r != 12 || b != 20 {
		t.Errorf("after failed writes Records, Bytes = %d, %d; want 12, 20", r, b)
	}
}

// TestCountersReadConcurrently fails under -race if the counters are not safe
// to read while a write is running.
func TestCountersReadConcurrently(t *testing.T) {
	var s Sink // the zero value works
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 1000 {
			s.Write(context.Background(), []sink.Record{{Value: []byte("x")}})
		}
	})
	wg.Go(func() {
		for range 1000 {
			_, _ = s.Records(), s.Bytes()
		}
	})
	wg.Wait()
	if s.Records() != 1000 {
		t.Errorf("Records = %d; want 1000", s.Records())
	}
}

func BenchmarkDiscard(b *testing.B) {
	batch := sinktest.Records(0, 1000)
	var size int64
	for _, r := range batch {
		size += int64(len(r.Value))
	}
	s := New()
	ctx := context.Background()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
}
