package sinktest

import (
	"context"
	"fmt"
	"testing"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// Bench measures a sink's Write on batches of batchSize records of about
// 200 bytes each, as a pipeline makes them from small rows, and reports
// records/s. Positions rise across iterations, so idempotent sinks write
// every record.
func Bench(b *testing.B, s sink.Sink, batchSize int) {
	b.Helper()
	ctx := context.Background()
	batch := make([]sink.Record, batchSize)
	values := make([][]byte, batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range batch {
			id := i*batchSize + j
			e := &event.Event{Op: event.OpUpdate, Schema: "public", Table: Topic, LSN: event.LSN(0x1_0000_0000 + id*0x80), CommitLSN: event.LSN(0x1_0000_0000 + id*0x80 + 0x40), Seq: 1}
			values[j] = fmt.Appendf(values[j][:0], `{"op":"update","schema":"public","table":"sinktest","lsn":"%s","commit_lsn":"%s","seq":1,"key":{"id":%d},"before":null,"after":{"id":%d,"name":"user %d","email":"u%d@example.com","score":%d}}`,
				e.LSN, e.CommitLSN, id%10000, id%10000, id, id, id%977)
			batch[j] = sink.Record{Event: e, Source: "bench", Topic: Topic, Key: []byte(Key), Value: values[j]}
		}
		b.StartTimer()
		if err := s.Write(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "records/s")
}
