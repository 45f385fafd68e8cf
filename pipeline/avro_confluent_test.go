package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/encode/schemaregistry"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/internal/srtest"
	"github.com/pgfeed/pgfeed/sink"
)

// confluentDecoder decodes Confluent-framed Avro with goavro, an
// implementation independent of the encoder's, using the writer's schema
// fetched by id from the registry, as a Confluent consumer does.
type confluentDecoder struct {
	t      *testing.T
	cl     *sr.Client
	codecs map[int]*goavro.Codec
}

func newConfluentDecoder(t *testing.T, reg *srtest.Registry) *confluentDecoder {
	cl, err := sr.NewClient(sr.URLs(reg.URL), sr.BasicAuth(reg.User, reg.Password))
	if err != nil {
		t.Fatal(err)
	}
	return &confluentDecoder{t: t, cl: cl, codecs: map[int]*goavro.Codec{}}
}

// decode returns the schema id and the datum of b as goavro's native
// value, failing the test unless b is one whole datum of that schema.
func (d *confluentDecoder) decode(b []byte) (int, map[string]any) {
	d.t.Helper()
	if len(b) < 5 || b[0] != 0 {
		d.t.Fatalf("not the confluent wire format: % x", b[:min(len(b), 8)])
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	codec, ok := d.codecs[id]
	if !ok {
		s, err := d.cl.SchemaByID(context.Background(), id)
		if err != nil {
			d.t.Fatalf("schema %d: %v", id, err)
		}
		if codec, err = goavro.NewCodec(s.Schema); err != nil {
			d.t.Fatalf("goavro refuses schema %d: %v\n%s", id, err, s.Schema)
		}
		d.codecs[id] = codec
	}
	v, rest, err := codec.NativeFromBinary(b[5:])
	if err != nil {
		d.t.Fatalf("goavro decoding a datum of schema %d: %v", id, err)
	}
	if len(rest) != 0 {
		d.t.Fatalf("%d bytes left after a datum of schema %d", len(rest), id)
	}
	return id, v.(map[string]any)
}

// branch returns the value of a goavro union (nil for its null branch).
func branch(v any) any {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return v
	}
	for _, x := range m {
		return x
	}
	return nil
}

// A Kafka sink with format avro writes the Confluent wire format: values
// and keys framed with the id of their schema, registered under
// <topic>-value and <topic>-key with BACKWARD compatibility, once per
// schema. goavro decodes every record of a table of every kind of column,
// ±infinity included; an added column registers a second version while
// the records before it still decode; a change the registry refuses is one
// clear error, set aside in the dead letters.
func TestAvroConfluentKafka(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	brokers := kc.ListenAddrs()
	reg := srtest.New(t)
	reg.User, reg.Password = "pgfeed", "s3cret"
	dsn := pgtest.CreateDB(t, pg, "avro_cf")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		`CREATE TABLE every(id int, region text, small int2, big int8, r real, f float8, b bool, n numeric, raw bytea,
			day date, ts timestamp, tstz timestamptz, t time, u uuid, j jsonb, tags text[], note varchar(20), iv interval,
			PRIMARY KEY (id, region))`)
	dlq := t.TempDir()
	cfg, err := config.Parse([]byte(`
[sources.main]
dsn = "`+dsn+`"
slot = "avro_cf"
create = true
[sinks.kafka]
type = "kafka"
sources = ["main"]
format = "avro"
brokers = ["`+brokers[0]+`"]
create_topics = true
partitions = 1 # one order to read the changes in
dead_letter = "dlq"
[sinks.kafka.avro]
registry = "`+reg.URL+`"
user = "pgfeed"
password = "s3cret"
[sinks.dlq]
type = "file"
path = "`+dlq+`"
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromConfig(cfg, openStore(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, p)
	waitSlot(t, db, "avro_cf")
	pgtest.Exec(t, db,
		`INSERT INTO every VALUES (1, 'eu', -3, 9000000000000000, 1.5, 'NaN', true, 12.50, '\x00ff',
			'2026-11-23', '2026-11-23 04:56:29.368123', '2026-11-23 04:56:29.368123+00', '04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
			'{"a":[1,2]}', '{x,"y z"}', 'ünïcode', '1 day 02:00')`,
		`INSERT INTO every(id, region, day, ts, tstz) VALUES (2, 'us/west', 'infinity', '-infinity', 'infinity')`,
		`INSERT INTO every(id, region, day, ts, tstz) VALUES (3, 'ap', '-infinity', 'infinity', '-infinity')`,
		`UPDATE every SET note = 'changed' WHERE id = 1`,
		`DELETE FROM every WHERE id = 2`,
		`ALTER TABLE every ADD COLUMN extra text`,
		`INSERT INTO every(id, region, extra) VALUES (4, 'eu', 'added')`,
	)
	const topic = "public.every"
	waitFor(t, "6 records in kafka", func() bool { return len(readUncommitted(t, brokers, topic)) >= 6 })

	// Now a change BACKWARD refuses: small from int to string.
	pgtest.Exec(t, db,
		`ALTER TABLE every ALTER COLUMN small TYPE text`,
		`INSERT INTO every(id, region, small) VALUES (5, 'eu', 'five')`,
		`INSERT INTO every(id, region) VALUES (6, 'eu')`,
	)
	var dead string
	waitFor(t, "the refused records in the dead letters", func() bool {
		dead = readDir(t, dlq)
		return strings.Count(dead, "\n") >= 2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dead, `schema registry refuses the schema of subject \"public.every-value\": Schema being registered is incompatible`) {
		t.Fatalf("dead letters do not say which subject refused the schema and why:\n%s", dead)
	}

	recs := readUncommitted(t, brokers, topic)
	if len(recs) != 6 {
		t.Fatalf("%d records in %s, want 6 (4 inserts, an update, a delete)", len(recs), topic)
	}
	dec := newConfluentDecoder(t, reg)
	type change struct {
		op            string
		before, after map[string]any
		key           map[string]any
		valueID       int
	}
	var got []change
	for _, r := range recs {
		id, v := dec.decode(r.Value)
		c := change{op: v["op"].(string), valueID: id}
		if b := branch(v["before"]); b != nil {
			c.before = b.(map[string]any)
		}
		if a := branch(v["after"]); a != nil {
			c.after = a.(map[string]any)
		}
		if r.Key == nil {
			t.Fatalf("%s record without a key", c.op)
		}
		_, c.key = dec.decode(r.Key)
		got = append(got, c)
	}
	ops := []string{}
	for _, c := range got {
		ops = append(ops, c.op)
	}
	if strings.Join(ops, ",") != "insert,insert,insert,update,delete,insert" {
		t.Fatalf("ops %v", ops)
	}

	// Row 1: every column's value, as goavro reads it.
	a := got[0].after
	want := map[string]any{
		"id": int32(1), "region": "eu", "small": int32(-3), "big": int64(9000000000000000), "r": 1.5,
		"b": true, "n": "12.50", "raw": []byte{0, 0xff}, "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"j": `{"a": [1, 2]}`, "tags": `["x","y z"]`, "note": "ünïcode", "iv": "1 day 02:00:00",
		"ts": time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC).UnixMicro(), // local-timestamp-micros: a long to goavro
		"t":  4*time.Hour + 5*time.Minute + 6789*time.Millisecond,
	}
	for col, w := range want {
		g := branch(a[col])
		if gb, ok := g.([]byte); ok {
			if string(gb) != string(w.([]byte)) {
				t.Errorf("%s = %q, want %q", col, gb, w)
			}
			continue
		}
		if g != w {
			t.Errorf("%s = %#v (%T), want %#v (%T)", col, g, g, w, w)
		}
	}
	if f := branch(a["f"]).(float64); !math.IsNaN(f) {
		t.Errorf("f = %v, want NaN", f)
	}
	if d := branch(a["day"]).(time.Time); !d.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("day = %v", d)
	}
	if ts := branch(a["tstz"]).(time.Time); !ts.Equal(time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC)) {
		t.Errorf("tstz = %v", ts)
	}
	if k := got[0].key; k["id"] != int32(1) || k["region"] != "eu" || len(k) != 2 {
		t.Errorf("key of row 1 = %v", k)
	}

	// ±infinity: the largest and smallest int (date) or long (timestamps),
	// as documented.
	days := func(v any) int64 { return branch(v).(time.Time).Unix() / 86400 }
	micros := func(v any) int64 {
		if l, ok := branch(v).(int64); ok {
			return l
		}
		return branch(v).(time.Time).UnixMicro()
	}
	for _, c := range []struct {
		row      map[string]any
		day      int64
		ts, tstz int64
	}{
		{got[1].after, math.MaxInt32, math.MinInt64, math.MaxInt64},
		{got[2].after, math.MinInt32, math.MaxInt64, math.MinInt64},
	} {
		if d, ts, tz := days(c.row["day"]), micros(c.row["ts"]), micros(c.row["tstz"]); d != c.day || ts != c.ts || tz != c.tstz {
			t.Errorf("infinities of row %v: day %d ts %d tstz %d, want %d %d %d", c.row["id"], d, ts, tz, c.day, c.ts, c.tstz)
		}
	}

	// The update and the delete: keys from the new row, then the old one.
	if n := branch(got[3].after["note"]); n != "changed" {
		t.Errorf("updated note = %v", n)
	}
	if k := got[4].key; k["id"] != int32(2) || k["region"] != "us/west" {
		t.Errorf("key of the delete = %v", k)
	}
	if got[4].after != nil || branch(got[4].before["id"]) != int32(2) {
		t.Errorf("delete: before %v after %v", got[4].before, got[4].after)
	}

	// Evolution: the added column is a second version of the subject; the
	// records before it keep the first.
	if e := branch(got[5].after["extra"]); e != "added" {
		t.Errorf("extra = %v", e)
	}
	if got[5].valueID == got[0].valueID {
		t.Error("the record after ADD COLUMN has the first schema's id")
	}
	if _, has := got[0].after["extra"]; has {
		t.Error("a record before ADD COLUMN decodes with the new column")
	}
	if v := reg.Versions(topic + "-value"); len(v) != 2 || v[0] != got[0].valueID || v[1] != got[5].valueID {
		t.Errorf("versions of %s-value = %v, want the ids %d and %d", topic, v, got[0].valueID, got[5].valueID)
	}
	if v := reg.Versions(topic + "-key"); len(v) != 1 {
		t.Errorf("versions of %s-key = %v, want one: the key did not change", topic, v)
	}
	// One registration per schema, never one per record: two value
	// schemas and the refused third, one key schema (both key shapes are
	// the same text, but the relation changed: asked again, answered by
	// the client's cache).
	if n := reg.Registrations(topic + "-value"); n != 3 {
		t.Errorf("%d registrations in %s-value, want 3 (two schemas and the refused one)", n, topic)
	}
	if n := reg.Registrations(topic + "-key"); n != 1 {
		t.Errorf("%d registrations in %s-key, want 1", n, topic)
	}
	for _, s := range []string{topic + "-value", topic + "-key"} {
		if c := reg.Compatibility(s); c != "BACKWARD" {
			t.Errorf("compatibility of %s = %q, want BACKWARD", s, c)
		}
	}
}

// readDir returns the contents of every file under dir.
func readDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			b.Write(data)
		}
		return nil
	})
	return b.String()
}

// A registry that cannot be reached says nothing of the event: encoding
// fails the batch (which the worker retries) instead of setting the event
// aside as poison, and the error names the subject.
func TestRegistryOutageIsNotPoison(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	_ = ln.Close()
	reg, err := schemaregistry.New(schemaregistry.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encode.NewConfluent(encode.Options{}, reg, "")
	if err != nil {
		t.Fatal(err)
	}
	k := newSink(t, "k", "main", nil)
	k.Encoder, k.RecordKeys = enc, true
	rel := &event.Relation{OID: 1, Schema: "public", Table: "t", Columns: []event.Column{{Name: "id", Type: event.BuiltinType(23), TypeMod: -1, Key: true}}}
	ev := &event.Event{Op: event.OpInsert, Schema: "public", Table: "t", Rel: rel, Seq: 1, After: event.Row{{State: event.Text, Raw: []byte("1")}}}
	_, _, err = k.encode([]*event.Event{ev}, nil, nil, func(rec sink.Record, n int, err error) error {
		t.Errorf("an outage made the event poison: %v", err)
		return nil
	})
	if _, ok := errors.AsType[*encode.RegistryUnavailableError](err); !ok || !strings.Contains(err.Error(), `subject "public.t-value"`) {
		t.Fatalf("got %v", err)
	}
}
