package encode

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

func TestCloudEventsIDStable(t *testing.T) {
	// Two encoders, as after a restart, and two copies of the same event, as
	// on a redelivery.
	a, b := NewCloudEvents(Options{}), NewCloudEvents(Options{})
	for _, tc := range testEvents() {
		first, err := a.Encode(nil, tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		redelivered := *tc.ev
		second, err := b.Encode(nil, &redelivered)
		if err != nil {
			t.Fatal(err)
		}
		id1, id2 := decodeJSON(t, first)["id"], decodeJSON(t, second)["id"]
		if id1 != id2 {
			t.Errorf("%s: id %v, then %v on redelivery", tc.name, id1, id2)
		}
		if id1 != ID(tc.ev) {
			t.Errorf("%s: id %v, ID() says %s", tc.name, id1, ID(tc.ev))
		}
	}
	// Every event of one transaction has its own id.
	ids := map[string]bool{}
	tx := []*event.Event{
		{Op: event.OpBegin, CommitLSN: 10},
		{Op: event.OpSchema, CommitLSN: 10, Schema: "public", Table: "a"},
		{Op: event.OpSchema, CommitLSN: 10, Schema: "public", Table: "b"},
		{Op: event.OpInsert, CommitLSN: 10, Seq: 1},
		{Op: event.OpInsert, CommitLSN: 10, Seq: 2},
		{Op: event.OpCommit, CommitLSN: 10},
	}
	for _, e := range tx {
		id := ID(e)
		if ids[id] {
			t.Errorf("id %s given twice in one transaction", id)
		}
		ids[id] = true
	}
	// The same position in another transaction is another event.
	e := *testEvents()[0].ev
	e.CommitLSN++
	if ID(&e) == ID(testEvents()[0].ev) {
		t.Error("events of different transactions share an id")
	}
}

func TestCloudEventsAttributes(t *testing.T) {
	enc := NewCloudEvents(Options{ServerName: "shop"})
	e := testEvents()[0].ev
	out, err := enc.Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeJSON(t, out)
	for k, want := range map[string]any{
		"specversion":     "1.0",
		"id":              "0/16B37A0:1",
		"source":          "/pgfeed/shop",
		"type":            "io.pgfeed.change.insert",
		"subject":         "public.data/" + string(Key(e)),
		"time":            "2026-11-23T04:56:29.368123Z",
		"datacontenttype": "application/json",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	// data is the native event, byte for byte.
	var raw struct{ Data json.RawMessage }
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw.Data) != string(e.AppendJSON(nil)) {
		t.Errorf("data = %s\nwant the native JSON %s", raw.Data, e.AppendJSON(nil))
	}

	// Events without a table leave the subject out; without a commit time
	// they get the encoder's clock.
	read := testEvents()[8].ev
	clock := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	out, err = NewCloudEvents(Options{CloudEventsSource: "urn:pgfeed:test", Now: func() time.Time { return clock }}).Encode(nil, &event.Event{Op: event.OpBegin, XID: read.XID, CommitLSN: read.CommitLSN})
	if err != nil {
		t.Fatal(err)
	}
	m = decodeJSON(t, out)
	if _, ok := m["subject"]; ok {
		t.Errorf("begin has a subject: %s", out)
	}
	if m["time"] != "2026-12-01T10:00:00Z" || m["type"] != "io.pgfeed.transaction.begin" {
		t.Errorf("an event without commit time: time %v, type %v, want the clock's and io.pgfeed.transaction.begin", m["time"], m["type"])
	}
	if m["source"] != "urn:pgfeed:test" {
		t.Errorf("source = %v", m["source"])
	}
}

func TestCloudEventsEscapesNames(t *testing.T) {
	rel := &event.Relation{Schema: `we"ird`, Table: "t\\1", Columns: []event.Column{{Name: "a", Type: typ(25), Key: true}}}
	e := &event.Event{Op: event.OpSchema, Schema: rel.Schema, Table: rel.Table, Rel: rel, CommitLSN: 1}
	out, err := NewCloudEvents(Options{}).Encode(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeJSON(t, out)
	if m["subject"] != `we"ird.t\1` {
		t.Errorf("subject = %v", m["subject"])
	}
	if m["id"] != ID(e) || ID(e) != `0/1:0:schema:we"ird.t\1` {
		t.Errorf("id = %v, ID() = %s", m["id"], ID(e))
	}
}
