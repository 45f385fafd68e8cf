package encode

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/pgfeed/pgfeed/event"
)

// rabin is CRC-64-AVRO written from the specification's reference code, to
// check the fingerprints independently of the library the encoder uses.
func rabin(b []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	var table [256]uint64
	for i := range table {
		fp := uint64(i)
		for j := 0; j < 8; j++ {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		table[i] = fp
	}
	fp := uint64(empty)
	for _, c := range b {
		fp = (fp >> 8) ^ table[byte(fp)^c]
	}
	return fp
}

// Test vectors of the Avro project (share/test/data/schema-tests.txt).
func TestParsingCanonicalForm(t *testing.T) {
	tests := []struct {
		input, canonical string
		fingerprint      int64
	}{
		{`"null"`, `"null"`, 7195948357588979594},
		{`{"type":"int"}`, `"int"`, 8247732601305521295},
		{`{"type":"long"}`, `"long"`, -3434872931120570953},
		{`[ "int" , {"type":"boolean"} ]`, `["int","boolean"]`, 5392556393470105090},
		{`{"fields":[], "type":"record", "name":"foo", "namespace":"x.y"}`, `{"name":"x.y.foo","type":"record","fields":[]}`, 5916914534497305771},
		{`{"fields":[], "type":"record", "name":"a.b.foo", "namespace":"x.y"}`, `{"name":"a.b.foo","type":"record","fields":[]}`, -4616218487480524110},
		{`{"fields":[], "type":"record", "name":"foo", "doc":"foo", "aliases":["foo","bar"]}`, `{"name":"foo","type":"record","fields":[]}`, -4824392279771201922},
		{`{ "fields":[{"type":"boolean", "aliases":[], "name":"f1", "default":true},
{"order":"descending","name":"f2","doc":"Hello","type":"int"}],"type":"record", "name":"foo"}`, `{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"},{"name":"f2","type":"int"}]}`, -4860222112080293046},
		{`{"namespace":"x.y.z", "type":"enum", "name":"foo", "doc":"foo bar", "symbols":["A1", "A2"]}`, `{"name":"x.y.z.foo","type":"enum","symbols":["A1","A2"]}`, -4448647247586288245},
		{`{"namespace":"x.y.z", "type":"fixed", "name":"foo", "doc":"foo bar", "size":32}`, `{"name":"x.y.z.foo","type":"fixed","size":32}`, -3064184465700546786},
		{`{ "items":{"type":"null"}, "type":"array"}`, `{"type":"array","items":"null"}`, -589620603366471059},
		{`{ "values":"string", "type":"map"}`, `{"type":"map","values":"string"}`, -8732877298790414990},
		{`{"name":"PigValue","type":"record",
   "fields":[{"name":"value", "type":["null", "int", "long", "PigValue"]}]}`, `{"name":"PigValue","type":"record","fields":[{"name":"value","type":["null","int","long","PigValue"]}]}`, -1759257747318642341},
		// Logical types are not part of the canonical form.
		{`{"type":"record","name":"r","namespace":"n","fields":[{"name":"t","type":["null",{"type":"long","logicalType":"timestamp-micros"}],"default":null,"pg_type":"x"}]}`,
			`{"name":"n.r","type":"record","fields":[{"name":"t","type":["null","long"]}]}`, 0},
	}
	for _, tt := range tests {
		got, err := parsingCanonicalForm(tt.input)
		if err != nil {
			t.Errorf("%s: %v", tt.input, err)
			continue
		}
		if got != tt.canonical {
			t.Errorf("canonical form of %s\n got %s\nwant %s", tt.input, got, tt.canonical)
		}
		if tt.fingerprint == 0 {
			continue
		}
		if fp := rabin([]byte(got)); int64(fp) != tt.fingerprint {
			t.Errorf("fingerprint of %s = %d, want %d", got, int64(fp), tt.fingerprint)
		}
		header, err := singleObjectHeader(tt.input)
		if err != nil {
			t.Errorf("%s: %v", tt.input, err)
			continue
		}
		want := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, uint64(tt.fingerprint))
		if !bytes.Equal(header, want) {
			t.Errorf("header of %s = %x, want %x", tt.input, header, want)
		}
	}
}

// TestAvroCanonicalMatchesLibrary cross-checks name resolution on our own
// schemas: without logical types, hamba's canonical form and ours agree.
func TestAvroCanonicalMatchesLibrary(t *testing.T) {
	rel := &event.Relation{Schema: "public", Table: "plain", Columns: []event.Column{
		{Name: "id", Type: typ(20), Key: true}, {Name: "note", Type: typ(25)}, {Name: "ok", Type: typ(16)},
	}}
	enc, err := NewAvro(Options{})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := enc.Schema(rel)
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := parsingCanonicalForm(schema)
	if err != nil {
		t.Fatal(err)
	}
	// hamba keeps logical types in its canonical form; the specification
	// does not. Everything else must agree.
	theirs := regexp.MustCompile(`\{"type":"(\w+)","logicalType":"[\w-]+"\}`).ReplaceAllString(s.String(), `"$1"`)
	if ours != theirs {
		t.Errorf("canonical forms differ\nours:  %s\nhamba: %s", ours, theirs)
	}
}

// decodeSingleObject checks the header of an encoded datum against the
// schema and decodes the body with hamba/avro's generic decoder, which must
// consume the body exactly: one datum of the schema and nothing else.
func decodeSingleObject(t *testing.T, b []byte, schemaJSON string) map[string]any {
	t.Helper()
	if len(b) < 10 || b[0] != 0xC3 || b[1] != 0x01 {
		t.Fatalf("no single-object header: % x", b)
	}
	pcf, err := parsingCanonicalForm(schemaJSON)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := binary.LittleEndian.Uint64(b[2:10]), rabin([]byte(pcf)); got != want {
		t.Fatalf("fingerprint %x, want %x", got, want)
	}
	schema, err := avro.ParseWithCache(schemaJSON, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	// A fresh configuration: the default one caches codecs across schemas
	// that share a full name, like two versions of a table's schema.
	api := avro.Config{}.Freeze()
	r := avro.NewReader(nil, 0, avro.WithReaderConfig(api)).Reset(b[10:])
	var m map[string]any
	r.ReadVal(schema, &m)
	if r.Error != nil {
		t.Fatalf("decoding: %v", r.Error)
	}
	if r.Peek(); r.Error != io.EOF {
		t.Fatalf("bytes left after the datum (reader error %v)", r.Error)
	}
	unwrapAll(m)
	return m
}

// unwrapAll replaces the {"type.name": value} maps hamba's generic decoder
// makes of some union values by the values themselves.
func unwrapAll(m map[string]any) {
	for k, v := range m {
		v = unwrap(v)
		if inner, ok := v.(map[string]any); ok {
			unwrapAll(inner)
		}
		m[k] = v
	}
}

func unwrap(v any) any {
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, inner := range m {
			if strings.Contains(k, ".") {
				return inner
			}
		}
	}
	return v
}

func TestAvroRoundTrip(t *testing.T) {
	enc, err := NewAvro(Options{})
	if err != nil {
		t.Fatal(err)
	}
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	one := map[string]any{
		"id": 2, "data": "hello \"quoted\"\nworld", "amount": "12.50",
		"created": commitTime, "tags": `["a","b c",null]`, "doc": `{"k": [1, 2.5], "s": "x"}`,
		"blob": []byte{1, 2, 0xff}, "day": day(2026, 11, 23),
		"ts":   time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC),
		"at":   4*time.Hour + 56*time.Minute + 29*time.Second + 368123*time.Microsecond,
		"flag": true, "ratio": 1.5, "big": int64(math.MaxInt64),
		"uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "name": "naïve", "tz": "04:56:29.368123+05:30", "small": -32768,
	}
	two := map[string]any{
		"id": 2, "data": "second", "amount": "NaN",
		"created": time.UnixMicro(math.MaxInt64).UTC(), // infinity, as Postgres stores it
		"tags":    `[]`, "doc": `[]`, "blob": []byte{}, "day": day(-43, 3, 15),
		"ts": time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC), "at": 24 * time.Hour,
		"flag": false, "ratio": math.Inf(-1), "big": int64(-1), "uid": nil, "name": nil,
		"tz": "23:00:00-02", "small": 7,
	}
	keyOnly := map[string]any{"id": 2}
	toast := map[string]any{}
	for k, v := range one {
		toast[k] = v
	}
	for _, k := range []string{"data", "tags", "doc", "blob"} {
		toast[k] = nil
	}

	tests := []struct {
		name          string
		before, after map[string]any
		unchanged     []any
	}{
		{name: "insert", after: one},
		{name: "update", before: one, after: two},
		{name: "update_no_before", after: two},
		{name: "update_toast", after: toast, unchanged: []any{"data", "tags", "doc", "blob"}},
		{name: "delete_key", before: keyOnly},
		{name: "delete_full", before: two},
		{name: "truncate"},
		{name: "read", after: one},
	}
	events := map[string]*event.Event{}
	for _, tc := range testEvents() {
		events[tc.name] = tc.ev
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := events[tt.name]
			b, err := enc.Encode(nil, e)
			if err != nil {
				t.Fatal(err)
			}
			schema, err := enc.Schema(e.Rel)
			if err != nil {
				t.Fatal(err)
			}
			m := decodeSingleObject(t, b, schema)
			wantTime := any(nil)
			if !e.CommitTime.IsZero() {
				wantTime = e.CommitTime
			}
			for field, want := range map[string]any{
				"op": e.Op.String(), "schema": e.Schema, "table": e.Table,
				"lsn": int64(e.LSN), "commit_lsn": int64(e.CommitLSN), "xid": int64(e.XID),
				"seq": int64(e.Seq), "commit_time": wantTime,
				"cascade": e.Cascade, "restart_identity": e.RestartIdentity,
			} {
				if got := m[field]; !equalValue(got, want) {
					t.Errorf("%s = %#v, want %#v", field, got, want)
				}
			}
			if got, _ := m["unchanged"].([]any); len(got) != len(tt.unchanged) || (len(got) > 0 && !reflect.DeepEqual(got, tt.unchanged)) {
				t.Errorf("unchanged = %#v, want %#v", m["unchanged"], tt.unchanged)
			}
			checkRow(t, "before", m["before"], tt.before, e.Rel)
			checkRow(t, "after", m["after"], tt.after, e.Rel)
		})
	}
}

func checkRow(t *testing.T, which string, got any, want map[string]any, rel *event.Relation) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Errorf("%s = %#v, want null", which, got)
		}
		return
	}
	row, ok := got.(map[string]any)
	if !ok {
		t.Fatalf("%s = %#v, want a record", which, got)
	}
	for _, col := range rel.Columns {
		if g, w := row[col.Name], want[col.Name]; !equalValue(g, w) {
			t.Errorf("%s.%s = %#v (%T), want %#v (%T)", which, col.Name, g, g, w, w)
		}
	}
}

func equalValue(got, want any) bool {
	if gt, ok := got.(time.Time); ok {
		wt, ok := want.(time.Time)
		return ok && gt.Equal(wt)
	}
	return reflect.DeepEqual(got, want)
}

func TestAvroOtherEvents(t *testing.T) {
	enc, err := NewAvro(Options{ServerName: "shop-1"})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]*event.Event{}
	for _, tc := range testEvents() {
		events[tc.name] = tc.ev
	}

	b, err := enc.Encode(nil, events["message"])
	if err != nil {
		t.Fatal(err)
	}
	m := decodeSingleObject(t, b, enc.MessageSchema())
	if m["prefix"] != "app" || !bytes.Equal(m["content"].([]byte), []byte(`hello "world"`)) || m["transactional"] != true || m["op"] != "message" {
		t.Errorf("message = %#v", m)
	}

	b, err = enc.Encode(nil, events["commit"])
	if err != nil {
		t.Fatal(err)
	}
	m = decodeSingleObject(t, b, enc.TransactionSchema())
	if m["op"] != "commit" || m["end_lsn"] != int64(events["commit"].EndLSN) || m["xid"] != int64(732) {
		t.Errorf("commit = %#v", m)
	}

	// The sanitised server name is the namespace.
	s, err := avro.ParseWithCache(enc.TransactionSchema(), "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	if name := s.(*avro.RecordSchema).FullName(); name != "shop_1.Transaction" {
		t.Errorf("transaction schema is %s", name)
	}
}

func TestAvroSchemaEvents(t *testing.T) {
	enc, err := NewAvro(Options{})
	if err != nil {
		t.Fatal(err)
	}
	rel := relData
	if !enc.SchemaChanged(rel) {
		t.Fatal("a table never announced is not reported as changed")
	}
	schemaEvent := &event.Event{Op: event.OpSchema, Schema: rel.Schema, Table: rel.Table, Rel: rel}
	out, err := enc.Encode(nil, schemaEvent)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := enc.Schema(rel)
	if string(out) != want {
		t.Fatalf("schema event = %s, want the schema JSON", out)
	}
	if enc.SchemaChanged(rel) {
		t.Error("reported as changed right after its schema event")
	}
	// Same columns, new Relation value: the stream described the table again.
	same := &event.Relation{OID: rel.OID, Schema: rel.Schema, Table: rel.Table, Identity: rel.Identity, Columns: columns(false)}
	if enc.SchemaChanged(same) {
		t.Error("an identical description is reported as changed")
	}
	// A column added.
	cols := append(columns(false), event.Column{Name: "extra col", Type: typ(1700)})
	added := &event.Relation{OID: rel.OID, Schema: rel.Schema, Table: rel.Table, Identity: rel.Identity, Columns: cols}
	if !enc.SchemaChanged(added) {
		t.Fatal("an added column is not reported")
	}
	newSchema, err := enc.Schema(added)
	if err != nil {
		t.Fatal(err)
	}
	if newSchema == want {
		t.Fatal("the schema did not change with the columns")
	}
	// Rows of the new shape carry the new fingerprint and decode with it.
	ins := &event.Event{Op: event.OpInsert, Schema: "public", Table: "data", Rel: added, After: append(rowOne(), text("1.5"))}
	b, err := enc.Encode(nil, ins)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeSingleObject(t, b, newSchema)
	if got := m["after"].(map[string]any)["extra_col"]; got != "1.5" {
		t.Errorf("extra_col = %#v (sanitised name of \"extra col\")", got)
	}
	if _, err := enc.Encode(nil, &event.Event{Op: event.OpSchema, Rel: added, Schema: "public", Table: "data"}); err != nil {
		t.Fatal(err)
	}
	if enc.SchemaChanged(added) {
		t.Error("still reported as changed after the new schema event")
	}
}

func TestAvroNames(t *testing.T) {
	rel := &event.Relation{Schema: "my-schema", Table: "2024 orders", Columns: []event.Column{
		{Name: "a-b", Type: typ(25)}, {Name: "a_b", Type: typ(25)}, {Name: "1st", Type: typ(23)}, {Name: "ünï", Type: typ(25)},
	}}
	enc, err := NewAvro(Options{})
	if err != nil {
		t.Fatal(err)
	}
	schema, err := enc.Schema(rel)
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseWithCache(schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	rec := s.(*avro.RecordSchema)
	if rec.FullName() != "pgfeed.my_schema._2024_orders.Envelope" {
		t.Errorf("full name %s", rec.FullName())
	}
	var value *avro.RecordSchema
	for _, f := range rec.Fields() {
		if f.Name() == "after" {
			value = f.Type().(*avro.UnionSchema).Types()[1].(*avro.RefSchema).Schema().(*avro.RecordSchema)
		}
	}
	var names []string
	for _, f := range value.Fields() {
		names = append(names, f.Name())
		if f.Name() == "a_b" && f.Prop("pg_name") != "a-b" {
			t.Errorf("pg_name of a_b = %v", f.Prop("pg_name"))
		}
	}
	if want := []string{"a_b", "a_b_2", "_1st", "_n_"}; !reflect.DeepEqual(names, want) {
		t.Errorf("field names %q, want %q", names, want)
	}
}

func TestAvroBadValue(t *testing.T) {
	enc, err := NewAvro(Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Op: event.OpInsert, Rel: relData, Schema: "public", Table: "data", After: rowOne()}
	e.After[0] = text("99999999999") // does not fit an Avro int
	if _, err := enc.Encode(nil, e); err == nil {
		t.Error("an integer column value out of int range was encoded")
	}
}
