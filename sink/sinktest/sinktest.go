package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
)

// Target is one sink under test.
type Target struct {
	// Sink writes to a destination that was empty when it was opened.
	Sink sink.Sink
	// Read returns the value of every record at the destination, in the
	// order the destination delivers them. It is called while the sink is
	// open and after Close. A nil Read means the sink keeps nothing (discard);
	// the suite then checks only errors and lifecycle.
	Read func(t *testing.T) [][]byte
}

// Topic and Key are set on every record the suite writes. They are the same
// for all records so that partitioned destinations (Kafka, NATS subjects,
// Redis streams) keep the records in one ordered partition.
const (
	Topic = "sinktest"
	Key   = `{"id":1}`
)

// Run checks that the sinks returned by open honour the sink.Sink contract.
// open is called once per subtest and must return a sink on a fresh, empty
// destination; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) Target) {
	t.Run("OrderedAndVisibleWhenWriteReturns", func(t *testing.T) { testOrder(t, open(t)) })
	t.Run("EmptyBatch", func(t *testing.T) { testEmptyBatch(t, open(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, open(t)) })
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

// batchSizes cover single records, odd sizes, and one batch larger than any
// reasonable write buffer.
var batchSizes = []int{1, 2, 3, 5, 8, 13, 1, 100, 7, 1000, 1, 64, 250, 9, 1, 31}

func testOrder(t *testing.T, tg Target) {
	defer tg.Sink.Close() // on an early failure; the Close below checks the error
	ctx := context.Background()
	var want [][]byte
	next := 0
	for i, n := range batchSizes {
		batch := Records(next, n)
		next += n
		if err := tg.Sink.Write(ctx, batch); err != nil {
			t.Fatalf("Write of batch %d (%d records): %v", i, n, err)
		}
		want = appendValues(want, batch)
		// Read at once, without waiting: Write returning means durable, so
		// a sink that acks before its destination has the data fails here.
		if tg.Read != nil {
			if got := tg.Read(t); !equalValues(got, want) {
				t.Fatalf("after batch %d returned, destination holds:\n%s\nwant:\n%s", i, describe(got), describe(want))
			}
		}
	}
	if err := tg.Sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if tg.Read != nil {
		if got := tg.Read(t); !equalValues(got, want) {
			t.Fatalf("after Close, destination holds:\n%s\nwant:\n%s", describe(got), describe(want))
		}
	}
}

func testEmptyBatch(t *testing.T, tg Target) {
	defer closeSink(t, tg.Sink)
	ctx := context.Background()
	for _, batch := range [][]sink.Record{nil, {}} {
		if err := tg.Sink.Write(ctx, batch); err != nil {
			t.Fatalf("Write of an empty batch (%#v): %v", batch, err)
		}
	}
	if tg.Read != nil {
		if got := tg.Read(t); len(got) != 0 {
			t.Fatalf("empty batches wrote %d records:\n%s", len(got), describe(got))
		}
	}
	batch := Records(0, 3)
	if err := tg.Sink.Write(ctx, batch); err != nil {
		t.Fatalf("Write after empty batches: %v", err)
	}
	if tg.Read != nil {
		if got, want := tg.Read(t), appendValues(nil, batch); !equalValues(got, want) {
			t.Fatalf("destination holds:\n%s\nwant:\n%s", describe(got), describe(want))
		}
	}
}

func testCancelled(t *testing.T, tg Target) {
	defer closeSink(t, tg.Sink)
	first, failed, last := Records(0, 5), Records(5, 5), Records(10, 5)
	if err := tg.Sink.Write(context.Background(), first); err != nil {
		t.Fatalf("Write: %v", err)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	err := tg.Sink.Write(cancelled, failed)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with a cancelled context = %v; want an error wrapping context.Canceled", err)
	}
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err = tg.Sink.Write(expired, failed)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write with an expired context = %v; want an error wrapping context.DeadlineExceeded", err)
	}

	// The pipeline delivers a failed batch again; the sink must take it.
	if err := tg.Sink.Write(context.Background(), failed); err != nil {
		t.Fatalf("Write of the failed batch again: %v", err)
	}
	if err := tg.Sink.Write(context.Background(), last); err != nil {
		t.Fatalf("Write after the redelivery: %v", err)
	}
	if tg.Read == nil {
		return
	}
	// A failed batch may have partly reached the destination (the contract
	// allows duplicates of a failed batch, twice here), never out of order.
	got := tg.Read(t)
	segs := []segment{
		{values: appendValues(nil, first)},
		{values: appendValues(nil, failed), partial: true}, // cancelled
		{values: appendValues(nil, failed), partial: true}, // expired
		{values: appendValues(nil, failed)},
		{values: appendValues(nil, last)},
	}
	if !matches(got, segs) {
		want := appendValues(appendValues(appendValues(nil, first), failed), last)
		t.Fatalf("destination holds:\n%s\nwant (a failed batch may appear partly before its redelivery):\n%s", describe(got), describe(want))
	}
}

func testClose(t *testing.T, tg Target) {
	batch := Records(0, 10)
	if err := tg.Sink.Write(context.Background(), batch); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := tg.Sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tg.Sink.Write(context.Background(), Records(10, 1)); err == nil {
		t.Fatal("Write after Close returned nil; want an error")
	}
	if err := tg.Sink.Write(context.Background(), nil); err == nil {
		t.Fatal("Write of an empty batch after Close returned nil; want an error")
	}
	if err := tg.Sink.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil (Close is idempotent)", err)
	}
	if tg.Read != nil {
		if got, want := tg.Read(t), appendValues(nil, batch); !equalValues(got, want) {
			t.Fatalf("after Close, destination holds:\n%s\nwant:\n%s", describe(got), describe(want))
		}
	}
}

// Records returns n records numbered from first, as a pipeline would hand
// them to a sink: native JSON values of one line each, of varied sizes
// (one in every 97 is over 64 KiB, to cross write buffers), with their
// events, Topic and Key.
func Records(first, n int) []sink.Record {
	recs := make([]sink.Record, n)
	for i := range recs {
		id := first + i
		commit := event.LSN(0x1_0000_0000 + uint64(id)*0x100)
		ev := &event.Event{
			Op: event.OpInsert, Schema: "public", Table: Topic,
			LSN: commit - 0x10, CommitLSN: commit, XID: uint32(1000 + id), Seq: 1,
			CommitTime: time.Date(2026, 11, 23, 4, 56, 29, 0, time.UTC).Add(time.Duration(id) * time.Millisecond),
		}
		pad := strings.Repeat("x", (id%7)*37)
		if id%97 == 96 {
			pad = strings.Repeat("y", 70<<10)
		}
		value := fmt.Sprintf(`{"op":"insert","schema":"public","table":%q,"lsn":"%s","commit_lsn":"%s","xid":%d,"commit_time":%q,"seq":1,"key":{"id":%d},"before":null,"after":{"id":%d,"note":"é\"\\ ✓","pad":%q}}`,
			Topic, ev.LSN, ev.CommitLSN, ev.XID, ev.CommitTime.Format(time.RFC3339Nano), id, id, pad)
		recs[i] = sink.Record{Event: ev, Topic: Topic, Key: []byte(Key), Value: []byte(value)}
	}
	return recs
}

func appendValues(dst [][]byte, batch []sink.Record) [][]byte {
	for _, r := range batch {
		dst = append(dst, r.Value)
	}
	return dst
}

func equalValues(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// segment is a run of values expected at the destination; a partial one
// (a failed write) may appear as any prefix of itself, including none.
type segment struct {
	values  [][]byte
	partial bool
}

func matches(got [][]byte, segs []segment) bool {
	if len(segs) == 0 {
		return len(got) == 0
	}
	s, rest := segs[0], segs[1:]
	if !s.partial {
		n := len(s.values)
		return len(got) >= n && equalValues(got[:n], s.values) && matches(got[n:], rest)
	}
	for k := 0; k <= len(s.values) && k <= len(got); k++ {
		if k > 0 && !bytes.Equal(got[k-1], s.values[k-1]) {
			return false
		}
		if matches(got[k:], rest) {
			return true
		}
	}
	return false
}

// describe prints values for a failure message, eliding the middle of long
// lists and the tail of long values.
func describe(values [][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  %d records", len(values))
	for i, v := range values {
		if len(values) > 10 && i >= 5 && i < len(values)-5 {
			if i == 5 {
				fmt.Fprintf(&b, "\n  ... %d more", len(values)-10)
			}
			continue
		}
		fmt.Fprintf(&b, "\n  [%d] %s", i, short(v))
	}
	return b.String()
}

func short(v []byte) string {
	if len(v) > 100 {
		return fmt.Sprintf("%s... (%d bytes)", v[:100], len(v))
	}
	return string(v)
}

func closeSink(t *testing.T, s sink.Sink) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
