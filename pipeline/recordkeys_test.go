package pipeline

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/source"
)

// captureSink keeps copies of the records it is given.
type captureSink struct {
	mu      sync.Mutex
	records []sink.Record
}

func (c *captureSink) Write(ctx context.Context, batch []sink.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range batch {
		r.Key = clone(r.Key)
		r.Value = clone(r.Value)
		c.records = append(c.records, r)
	}
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (c *captureSink) Close() error { return nil }

func (c *captureSink) all() []sink.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sink.Record(nil), c.records...)
}

// With RecordKeys and the Debezium encoder, every row record has
// Debezium's key record as its key, each delete of a keyed table is
// followed by a tombstone (same key, nil value), and a table without key
// gets records without key and no tombstone, as Debezium sends them. A
// truncate, which Debezium skips, makes no record at all.
func TestRecordKeysAndTombstones(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "recordkeys")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE keyed(id int PRIMARY KEY, v text)",
		"CREATE TABLE loose(id int, v text)", "ALTER TABLE loose REPLICA IDENTITY FULL")
	capture := &captureSink{}
	k := newSink(t, "kafka", "main", capture)
	k.Encoder = encode.NewDebezium(encode.Options{ServerName: "srv", Database: "recordkeys"})
	k.RecordKeys = true
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "recordkeys", Create: true}}},
		Sinks:   []Sink{k},
		Store:   openStore(t),
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'recordkeys' AND active").Scan(&n)
		return n == 1
	})
	pgtest.Exec(t, db, "INSERT INTO keyed VALUES (1, 'a')", "DELETE FROM keyed WHERE id = 1", "TRUNCATE keyed",
		"INSERT INTO loose VALUES (1, 'a')", "DELETE FROM loose")
	waitFor(t, "5 records", func() bool { return len(capture.all()) >= 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	recs := capture.all()
	type want struct {
		op        string // the value's payload.op; "" for a tombstone
		key       string // the key's payload; "" for none
		keySchema string
	}
	wants := []want{
		{"c", `{"id":1}`, "srv.public.keyed.Key"},
		{"d", `{"id":1}`, "srv.public.keyed.Key"},
		{"", `{"id":1}`, "srv.public.keyed.Key"},
		{"c", "", ""},
		{"d", "", ""},
	}
	if len(recs) != len(wants) {
		t.Fatalf("%d records, want %d", len(recs), len(wants))
	}
	for i, w := range wants {
		r := recs[i]
		if w.op == "" {
			if r.Value != nil {
				t.Errorf("record %d: value %s, want a tombstone (nil)", i, r.Value)
			}
		} else {
			var v struct {
				Payload struct{ Op string } `json:"payload"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil || v.Payload.Op != w.op {
				t.Errorf("record %d: op %q (%v), want %q", i, v.Payload.Op, err, w.op)
			}
		}
		if w.key == "" {
			if r.Key != nil {
				t.Errorf("record %d: key %s, want none", i, r.Key)
			}
			continue
		}
		var key struct {
			Schema  struct{ Name string } `json:"schema"`
			Payload json.RawMessage       `json:"payload"`
		}
		if err := json.Unmarshal(r.Key, &key); err != nil || string(key.Payload) != w.key || key.Schema.Name != w.keySchema {
			t.Errorf("record %d: key %s (%v), want payload %s with schema %s", i, r.Key, err, w.key, w.keySchema)
		}
	}
}
