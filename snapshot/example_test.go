package snapshot_test

import (
	"encoding/json"
	"fmt"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/snapshot"
)

// The stream side passes every event through the Merger, in stream order,
// and delivers what comes back; here a row updated inside its chunk's
// window is left to the stream, and the untouched row is released at the
// high watermark.
func ExampleMerger() {
	rel := &event.Relation{Schema: "public", Table: "t", Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(23), Key: true},
		{Name: "v", Type: event.BuiltinType(25)},
	}}
	text := func(s string) event.Value { return event.Value{State: event.Text, Raw: []byte(s)} }
	wm := func(kind string, lsn event.LSN) *event.Event {
		content, _ := json.Marshal(snapshot.Watermark{Backfill: "b1", Schema: "public", Table: "t", Chunk: 1, Kind: kind, Key: []string{"id"}})
		return &event.Event{Op: event.OpMessage, LSN: lsn, CommitLSN: lsn,
			Message: &event.Message{Prefix: snapshot.WatermarkPrefix, Content: content, Transactional: true}}
	}

	m := snapshot.NewMerger()
	m.Expect("b1") // NewWalker registers its run this way
	// What a Walker would have read between the watermarks.
	chunk := &snapshot.Chunk{Backfill: "b1", No: 1, Table: &snapshot.Table{Rel: rel, Key: []int{0}},
		Rows: []event.Row{{text("1"), text("old")}, {text("2"), text("old")}}}
	stream := []*event.Event{
		wm(snapshot.WatermarkLow, 0x100),
		{Op: event.OpUpdate, Schema: "public", Table: "t", Rel: rel, LSN: 0x110, CommitLSN: 0x118, After: event.Row{text("2"), text("new")}},
		wm(snapshot.WatermarkHigh, 0x120),
	}
	for i, e := range stream {
		if i == 2 {
			m.AddChunk(chunk) // the walker hands the chunk over before writing the high watermark
		}
		for _, out := range m.Observe(e) {
			fmt.Println(string(out.AppendJSON(nil)))
		}
	}
	m.Ack(0x120) // the sink made everything up to the high watermark durable
	// Output:
	// {"op":"update","schema":"public","table":"t","lsn":"0/110","commit_lsn":"0/118","xid":0,"key":{"id":2},"before":null,"after":{"id":2,"v":"new"}}
	// {"op":"read","schema":"public","table":"t","lsn":"0/120","commit_lsn":"0/120","xid":0,"seq":1,"key":{"id":1},"before":null,"after":{"id":1,"v":"old"}}
}
