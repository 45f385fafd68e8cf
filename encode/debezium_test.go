package encode

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// decodeJSON parses with json.Number so that int64 values are compared exactly.
func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer: %v", n, err)
	}
	return i
}

// The expected temporal integers are computed with the time package, not
// with the parsers under test.
func epochDays(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

func TestDebeziumEnvelope(t *testing.T) {
	opts := testOptions()
	opts.DebeziumTruncates = true // skipped by default, see TestDebeziumSkipsTruncates
	enc := NewDebezium(opts)
	events := map[string]*event.Event{}
	for _, tc := range testEvents() {
		events[tc.name] = tc.ev
	}
	tests := []struct {
		name       string
		op         string
		snapshot   string
		before     bool // before is an object (else null)
		after      bool
		beforeKeys map[string]any // fields of before to check; nil values must be JSON null
	}{
		{name: "insert", op: "c", snapshot: "false", after: true},
		{name: "update", op: "u", snapshot: "false", before: true, after: true},
		{name: "update_no_before", op: "u", snapshot: "false", after: true},
		{name: "update_toast", op: "u", snapshot: "false", after: true},
		{name: "delete_key", op: "d", snapshot: "false", before: true, beforeKeys: map[string]any{"id": int64(2), "data": nil, "day": nil}},
		{name: "delete_full", op: "d", snapshot: "false", before: true, beforeKeys: map[string]any{"id": int64(2), "data": "second", "big": int64(-1)}},
		{name: "truncate", op: "t", snapshot: "false"},
		{name: "read", op: "r", snapshot: "true", after: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := events[tt.name]
			out, err := enc.Encode(nil, e)
			if err != nil {
				t.Fatal(err)
			}
			msg := decodeJSON(t, out)
			if _, ok := msg["schema"].(map[string]any); !ok {
				t.Fatalf("no schema object by default: %s", out)
			}
			p, ok := msg["payload"].(map[string]any)
			if !ok {
				t.Fatalf("no payload object: %s", out)
			}
			if p["op"] != tt.op {
				t.Errorf("op = %v, want %s", p["op"], tt.op)
			}
			if got := num(t, p["ts_ms"]); got != fixedNow.UnixMilli() {
				t.Errorf("ts_ms = %d, want the clock's %d", got, fixedNow.UnixMilli())
			}
			if v, ok := p["transaction"]; !ok || v != nil {
				t.Errorf("transaction = %v, want null", v)
			}
			src := p["source"].(map[string]any)
			if got := num(t, src["lsn"]); uint64(got) != uint64(e.LSN) {
				t.Errorf("source.lsn = %d, want %d (%s)", got, uint64(e.LSN), e.LSN)
			}
			wantTS := e.CommitTime.UnixMilli()
			if e.CommitTime.IsZero() {
				wantTS = fixedNow.UnixMilli()
			}
			if got := num(t, src["ts_ms"]); got != wantTS {
				t.Errorf("source.ts_ms = %d, want %d", got, wantTS)
			}
			if e.XID == 0 {
				if src["txId"] != nil {
					t.Errorf("source.txId = %v, want null", src["txId"])
				}
			} else if got := num(t, src["txId"]); got != int64(e.XID) {
				t.Errorf("source.txId = %d, want %d", got, e.XID)
			}
			for k, want := range map[string]any{
				"connector": "postgresql", "name": "pgfeed", "db": "app", "version": "pgfeed",
				"schema": e.Schema, "table": e.Table, "snapshot": tt.snapshot, "xmin": nil,
			} {
				if src[k] != want {
					t.Errorf("source.%s = %v, want %v", k, src[k], want)
				}
			}
			var seq []string
			if err := json.Unmarshal([]byte(src["sequence"].(string)), &seq); err != nil {
				t.Fatalf("source.sequence %q is not a JSON array of strings: %v", src["sequence"], err)
			}
			if want := []string{strconv.FormatUint(uint64(e.CommitLSN), 10), strconv.FormatUint(uint64(e.LSN), 10)}; fmt.Sprint(seq) != fmt.Sprint(want) {
				t.Errorf("source.sequence = %v, want %v", seq, want)
			}
			before, _ := p["before"].(map[string]any)
			after, _ := p["after"].(map[string]any)
			if (before != nil) != tt.before || (after != nil) != tt.after {
				t.Fatalf("before = %v, after = %v; want object: %v, %v", p["before"], p["after"], tt.before, tt.after)
			}
			for k, want := range tt.beforeKeys {
				got, present := before[k]
				if !present {
					t.Errorf("before.%s missing: Debezium writes every column", k)
				}
				if n, ok := got.(json.Number); ok {
					got = num(t, n)
				}
				if got != want {
					t.Errorf("before.%s = %v, want %v", k, got, want)
				}
			}
			if after != nil && len(after) != len(e.Rel.Columns) {
				t.Errorf("after has %d fields, want one per column (%d)", len(after), len(e.Rel.Columns))
			}
		})
	}
}

// TestDebeziumValues checks the value mapping column by column on the insert
// and update rows.
func TestDebeziumValues(t *testing.T) {
	enc := NewDebezium(Options{DebeziumPayloadOnly: true, Now: testOptions().Now})
	evs := testEvents()
	insert, update := evs[0].ev, evs[1].ev
	out, err := enc.Encode(nil, insert)
	if err != nil {
		t.Fatal(err)
	}
	p := decodeJSON(t, out)
	if _, ok := p["schema"]; ok {
		t.Fatalf("payload-only output has a schema: %s", out)
	}
	if p["op"] != "c" {
		t.Fatalf("payload-only output is not the payload: %s", out)
	}
	after := p["after"].(map[string]any)

	out, err = enc.Encode(nil, update)
	if err != nil {
		t.Fatal(err)
	}
	after2 := decodeJSON(t, out)["after"].(map[string]any)

	bc44 := time.Date(-43, 3, 15, 0, 0, 0, 0, time.UTC) // 44 BC is year -43
	tests := []struct {
		row   map[string]any
		field string
		want  any
	}{
		{after, "id", int64(2)},
		{after, "small", int64(-32768)},
		{after, "big", int64(math.MaxInt64)},
		{after, "amount", "BOI="}, // 1250 (scale 2) as Kafka Connect's Decimal bytes
		{after, "data", "hello \"quoted\"\nworld"},
		{after, "name", "naïve"},
		{after, "flag", true},
		{after, "ratio", json.Number("1.5")},
		{after, "doc", `{"k": [1, 2.5], "s": "x"}`}, // a string holding the JSON text
		{after, "blob", base64.StdEncoding.EncodeToString([]byte{1, 2, 0xff})},
		{after, "day", epochDays(2026, 11, 23)},
		{after, "ts", time.Date(2026, 11, 23, 4, 56, 29, 368123000, time.UTC).UnixMicro()},
		{after, "at", int64((4*3600+56*60+29)*1_000_000 + 368123)},
		{after, "created", "2026-11-23T04:56:29.368123Z"},
		{after, "tz", "23:26:29.368123Z"},
		{after, "uid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{after2, "amount", nil}, // a Decimal has no NaN
		{after2, "ratio", "-Infinity"},
		{after2, "created", "infinity"},
		{after2, "day", bc44.Unix() / 86400},
		{after2, "ts", int64(-1)},
		{after2, "at", int64(86_400_000_000)},
		{after2, "tz", "01:00:00Z"},
		{after2, "uid", nil},
		{after2, "blob", ""},
	}
	for _, tt := range tests {
		got := tt.row[tt.field]
		if _, isNum := tt.want.(int64); isNum {
			got = num(t, got)
		}
		if got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.field, got, tt.want)
		}
	}
	tags, ok := after["tags"].([]any)
	if !ok || len(tags) != 3 || tags[0] != "a" || tags[1] != "b c" || tags[2] != nil {
		t.Errorf("tags = %#v, want [a, b c, null]", after["tags"])
	}
}

func TestDebeziumUnavailableValue(t *testing.T) {
	enc := NewDebezium(Options{DebeziumPayloadOnly: true})
	out, err := enc.Encode(nil, testEvents()[3].ev) // update_toast
	if err != nil {
		t.Fatal(err)
	}
	after := decodeJSON(t, out)["after"].(map[string]any)
	for _, f := range []string{"data", "doc"} {
		if after[f] != debeziumUnavailable {
			t.Errorf("%s = %v, want the placeholder %q", f, after[f], debeziumUnavailable)
		}
	}
	if b, _ := base64.StdEncoding.DecodeString(after["blob"].(string)); string(b) != debeziumUnavailable {
		t.Errorf("blob = %v, want base64 of the placeholder", after["blob"])
	}
	if tags, _ := after["tags"].([]any); len(tags) != 1 || tags[0] != debeziumUnavailable {
		t.Errorf("tags = %v, want [placeholder]", after["tags"])
	}
	if num(t, after["id"]) != 2 {
		t.Errorf("id = %v: sent columns must keep their values", after["id"])
	}
}

// TestDebeziumSchemaMatchesValues checks every value written against the
// Connect type its schema declares, so the two cannot drift apart.
func TestDebeziumSchemaMatchesValues(t *testing.T) {
	enc := NewDebezium(testOptions())
	for _, tc := range testEvents() {
		if !tc.ev.Op.IsRowChange() {
			continue
		}
		out, err := enc.Encode(nil, tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		msg := decodeJSON(t, out)
		schema := msg["schema"].(map[string]any)
		if want := "pgfeed." + tc.ev.Schema + "." + tc.ev.Table + ".Envelope"; schema["name"] != want {
			t.Errorf("%s: schema name %v, want %s", tc.name, schema["name"], want)
		}
		fields := map[string]map[string]any{}
		for _, f := range schema["fields"].([]any) {
			f := f.(map[string]any)
			fields[f["field"].(string)] = f
		}
		for _, part := range []string{"before", "after"} {
			row, _ := msg["payload"].(map[string]any)[part].(map[string]any)
			if row == nil {
				continue
			}
			cols := map[string]map[string]any{}
			for _, f := range fields[part]["fields"].([]any) {
				f := f.(map[string]any)
				cols[f["field"].(string)] = f
			}
			for name, v := range row {
				col, ok := cols[name]
				if !ok {
					t.Errorf("%s: %s.%s has no schema field", tc.name, part, name)
					continue
				}
				if v == nil {
					if col["optional"] != true {
						t.Errorf("%s: %s.%s is null but not optional", tc.name, part, name)
					}
					continue
				}
				if !matchesConnectType(v, col["type"].(string)) {
					t.Errorf("%s: %s.%s = %#v does not match Connect type %v", tc.name, part, name, v, col["type"])
				}
			}
		}
	}
}

func matchesConnectType(v any, typ string) bool {
	switch typ {
	case "int16", "int32", "int64":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		i, err := n.Int64()
		switch typ {
		case "int16":
			return err == nil && i >= math.MinInt16 && i <= math.MaxInt16
		case "int32":
			return err == nil && i >= math.MinInt32 && i <= math.MaxInt32
		}
		return err == nil
	case "float", "double":
		if s, ok := v.(string); ok { // JSON has no NaN or infinity
			return s == "NaN" || s == "Infinity" || s == "-Infinity"
		}
		_, ok := v.(json.Number)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "bytes":
		s, ok := v.(string)
		if !ok {
			return false
		}
		_, err := base64.StdEncoding.DecodeString(s)
		return err == nil
	case "array":
		_, ok := v.([]any)
		return ok
	case "struct":
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

func TestDebeziumOtherEvents(t *testing.T) {
	enc := NewDebezium(Options{DebeziumPayloadOnly: true, Database: "app", Now: testOptions().Now})
	evs := map[string]*event.Event{}
	for _, tc := range testEvents() {
		evs[tc.name] = tc.ev
	}

	out, err := enc.Encode(nil, evs["message"])
	if err != nil {
		t.Fatal(err)
	}
	m := decodeJSON(t, out)
	if m["op"] != "m" {
		t.Errorf("message op = %v, want m", m["op"])
	}
	msg := m["message"].(map[string]any)
	if content, _ := base64.StdEncoding.DecodeString(msg["content"].(string)); string(content) != `hello "world"` || msg["prefix"] != "app" {
		t.Errorf("message = %v", msg)
	}

	for name, status := range map[string]string{"begin": "BEGIN", "commit": "END"} {
		out, err := enc.Encode(nil, evs[name])
		if err != nil {
			t.Fatal(err)
		}
		m := decodeJSON(t, out)
		if m["status"] != status || m["id"] != "732:"+strconv.FormatUint(uint64(evs[name].CommitLSN), 10) {
			t.Errorf("%s: status %v id %v", name, m["status"], m["id"])
		}
		if num(t, m["ts_ms"]) != commitTime.UnixMilli() {
			t.Errorf("%s: ts_ms %v", name, m["ts_ms"])
		}
	}

	out, err = enc.Encode(nil, evs["schema"])
	if err != nil {
		t.Fatal(err)
	}
	m = decodeJSON(t, out)
	change := m["tableChanges"].([]any)[0].(map[string]any)
	if change["id"] != `"public"."data"` {
		t.Errorf("table id = %v", change["id"])
	}
	table := change["table"].(map[string]any)
	if pk := table["primaryKeyColumnNames"].([]any); len(pk) != 1 || pk[0] != "id" {
		t.Errorf("primaryKeyColumnNames = %v", pk)
	}
	cols := table["columns"].([]any)
	if len(cols) != len(relData.Columns) {
		t.Fatalf("%d columns, want %d", len(cols), len(relData.Columns))
	}
	name := cols[14].(map[string]any)
	if name["name"] != "name" || name["typeExpression"] != "character varying(60)" || num(t, name["position"]) != 15 {
		t.Errorf("column 15 = %v", name)
	}
}

// Key columns are NOT NULL, so not optional, whatever the table's replica
// identity; a table without key keys on every column and none is known to be
// NOT NULL.
func TestDebeziumKeyOptionality(t *testing.T) {
	enc := NewDebezium(Options{DebeziumPayloadOnly: true, Database: "app", Now: testOptions().Now})
	for _, tc := range []struct {
		name     string
		rel      *event.Relation
		pk       string
		optional map[string]bool
	}{
		{"primary key under FULL", &event.Relation{Schema: "public", Table: "fullpk", Identity: event.IdentityFull, Columns: []event.Column{
			{Name: "id", Type: event.BuiltinType(23), Key: true}, {Name: "v", Type: event.BuiltinType(25)}}},
			`["id"]`, map[string]bool{"id": false, "v": true}},
		{"no key", &event.Relation{Schema: "public", Table: "nopk", Identity: event.IdentityDefault, NoKey: true, Columns: []event.Column{
			{Name: "id", Type: event.BuiltinType(23), Key: true}, {Name: "v", Type: event.BuiltinType(25), Key: true}}},
			`[]`, map[string]bool{"id": true, "v": true}},
	} {
		out, err := enc.Encode(nil, &event.Event{Op: event.OpSchema, Schema: tc.rel.Schema, Table: tc.rel.Table, Rel: tc.rel, CommitLSN: 0x10})
		if err != nil {
			t.Fatal(err)
		}
		table := decodeJSON(t, out)["tableChanges"].([]any)[0].(map[string]any)["table"].(map[string]any)
		if pk, _ := json.Marshal(table["primaryKeyColumnNames"]); string(pk) != tc.pk {
			t.Errorf("%s: primaryKeyColumnNames %s, want %s", tc.name, pk, tc.pk)
		}
		for _, c := range table["columns"].([]any) {
			c := c.(map[string]any)
			if c["optional"] != tc.optional[c["name"].(string)] {
				t.Errorf("%s: column %v optional %v", tc.name, c["name"], c["optional"])
			}
		}
		ins := &event.Event{Op: event.OpInsert, Schema: tc.rel.Schema, Table: tc.rel.Table, Rel: tc.rel, CommitLSN: 0x10, Seq: 1,
			After: event.Row{{State: event.Text, Raw: []byte("1")}, {State: event.Null}}}
		out, err = NewDebezium(testOptions()).Encode(nil, ins)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range decodeJSON(t, out)["schema"].(map[string]any)["fields"].([]any) {
			f := f.(map[string]any)
			if f["field"] != "after" {
				continue
			}
			for _, c := range f["fields"].([]any) {
				c := c.(map[string]any)
				if c["optional"] != tc.optional[c["field"].(string)] {
					t.Errorf("%s: value field %v optional %v", tc.name, c["field"], c["optional"])
				}
			}
		}
	}
}

// TestDebeziumKey checks the key record of every row event and message against
// testdata/golden/debezium/key/<case>.json (Debezium's documented key:
// {"schema":{"type":"struct","fields":[{"type":"int32","optional":false,
// "field":"id"}],"optional":false,"name":"<server>.<schema>.<table>.Key"},
// "payload":{"id":2}}), that the payload agrees with its own schema, that
// a table without key has no key record (Debezium sends a null key), and
// that deletes of keyed tables, and only they, are followed by a tombstone.
func TestDebeziumKey(t *testing.T) {
	enc := NewDebezium(testOptions())
	var _ KeyEncoder = enc
	var _ Tombstoner = enc
	for _, tc := range testEvents() {
		key, ok, err := enc.EncodeKey(nil, tc.ev)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		keyed := tc.ev.Op.IsRowChange() && !tc.ev.Rel.NoKey || tc.ev.Op == event.OpMessage
		if ok != keyed || (!ok && len(key) > 0) {
			t.Errorf("%s: key %q, %v; want a key: %v", tc.name, key, ok, keyed)
		}
		if want := tc.ev.Op == event.OpDelete && keyed; enc.Tombstone(tc.ev) != want {
			t.Errorf("%s: tombstone %v, want %v", tc.name, !want, want)
		}
		if !ok {
			continue
		}
		golden(t, "testdata/golden/debezium/key/"+tc.name+".json", key)
		msg := decodeJSON(t, key)
		schema := msg["schema"].(map[string]any)
		want := "pgfeed." + tc.ev.Schema + "." + tc.ev.Table + ".Key"
		if tc.ev.Op == event.OpMessage {
			want = "io.debezium.connector.postgresql.MessageKey"
		}
		if schema["name"] != want || schema["optional"] != false {
			t.Errorf("%s: key schema %v (optional %v), want %s, not optional", tc.name, schema["name"], schema["optional"], want)
		}
		payload := msg["payload"].(map[string]any)
		fields := schema["fields"].([]any)
		if len(fields) != len(payload) {
			t.Errorf("%s: %d key fields, %d payload values", tc.name, len(fields), len(payload))
		}
		for _, f := range fields {
			f := f.(map[string]any)
			v, present := payload[f["field"].(string)]
			if !present || v == nil || (f["optional"] != false && tc.ev.Op != event.OpMessage) || !matchesConnectType(v, f["type"].(string)) {
				t.Errorf("%s: key field %v = %#v does not match its schema %v", tc.name, f["field"], v, f)
			}
		}
	}
	off := NewDebezium(Options{DebeziumNoTombstones: true})
	for _, tc := range testEvents() {
		if off.Tombstone(tc.ev) {
			t.Errorf("%s: a tombstone with DebeziumNoTombstones", tc.name)
		}
	}
	payloadOnly := NewDebezium(Options{DebeziumPayloadOnly: true})
	ev := testEvents()[0].ev
	if key, _, _ := payloadOnly.EncodeKey(nil, ev); string(key) != `{"id":2}` {
		t.Errorf("payload-only key %s, want {\"id\":2}", key)
	}
}

// TestDebeziumDecimalsAndDurations checks the encodings Debezium documents
// for numeric (decimal.handling.mode precise, string, double), money and
// interval (MicroDuration, months of 365.25/12 days) and arrays, value by
// value.
func TestDebeziumDecimalsAndDurations(t *testing.T) {
	b64 := func(b ...byte) string { return `"` + base64.StdEncoding.EncodeToString(b) + `"` }
	numeric102 := &event.Column{Name: "n", Type: typ(1700), TypeMod: numericMod(10, 2)}
	numeric := &event.Column{Name: "n", Type: typ(1700), TypeMod: -1}
	money := &event.Column{Name: "m", Type: typ(790), TypeMod: -1}
	interval := &event.Column{Name: "i", Type: typ(1186), TypeMod: -1}
	ints := &event.Column{Name: "a", Type: typ(1007), TypeMod: -1}
	texts := &event.Column{Name: "a", Type: typ(1009), TypeMod: -1}
	tests := []struct {
		col  *event.Column
		mode string
		raw  string
		want string
	}{
		{numeric102, "", "12.50", b64(0x04, 0xe2)},
		{numeric102, "", "12.5", b64(0x04, 0xe2)}, // rescaled to the column's scale
		{numeric102, "", "-1.28", b64(0x80)},
		{numeric102, "", "-1.29", b64(0xff, 0x7f)},
		{numeric102, "", "1.28", b64(0x00, 0x80)},
		{numeric102, "", "0.00", b64(0x00)},
		{numeric102, "", "-0.01", b64(0xff)},
		{numeric102, "", "NaN", "null"},
		{numeric, "", "12345678901234567890.123456789", `{"scale":9,"value":` + b64(0x27, 0xe4, 0x1b, 0x32, 0x46, 0xbe, 0xc9, 0xb1, 0x6e, 0x39, 0x81, 0x15) + `}`},
		{numeric, "", "-5", `{"scale":0,"value":` + b64(0xfb) + `}`},
		{numeric, "", "Infinity", "null"},
		{numeric102, DecimalString, "12.50", `"12.50"`},
		{numeric, DecimalString, "NaN", `"NaN"`},
		{numeric102, DecimalDouble, "12.50", `12.50`},
		{numeric, DecimalDouble, "NaN", `"NaN"`},
		{money, "", "$1,234.56", b64(0x01, 0xe2, 0x40)},
		{money, "", "-$0.01", b64(0xff)},
		{money, DecimalString, "$1,234.56", `"1234.56"`},
		{money, DecimalDouble, "-$1,234.56", `-1234.56`},
		{interval, "", "1 year 2 mons 3 days 04:05:06.789", "37091106789000"},
		{interval, "", "-00:00:01.5", "-1500000"},
		{interval, "", "-1 days +02:00:00", "-79200000000"},
		{interval, "", "100:00:00", "360000000000"},
		{interval, "", "00:00:00", "0"},
		// Arrays of several dimensions are flattened: one item type per column.
		{ints, "", "{1,NULL,3}", "[1,null,3]"},
		{ints, "", "{{1,2},{3,4}}", "[1,2,3,4]"},
		{texts, "", `[0:1]={{"a<b",NULL},{"c\"d",e}}`, `["a<b",null,"c\"d","e"]`},
		{ints, "", "{}", "[]"},
	}
	for _, tt := range tests {
		enc := NewDebezium(Options{DebeziumPayloadOnly: true, DebeziumDecimalHandling: tt.mode})
		rel := &event.Relation{Schema: "s", Table: "t", Identity: event.IdentityDefault, Columns: []event.Column{
			{Name: "id", Type: typ(23), TypeMod: -1, Key: true}, *tt.col}}
		e := &event.Event{Op: event.OpInsert, Schema: "s", Table: "t", Rel: rel, After: event.Row{text("1"), text(tt.raw)}}
		out, err := enc.Encode(nil, e)
		if err != nil {
			t.Errorf("%s %q (%s): %v", tt.col.Type.Name, tt.raw, tt.mode, err)
			continue
		}
		var p struct {
			After map[string]json.RawMessage `json:"after"`
		}
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		if got := string(p.After[tt.col.Name]); got != tt.want {
			t.Errorf("%s %q (%s) = %s, want %s", tt.col.Type.Name, tt.raw, tt.mode, got, tt.want)
		}
	}
}

// Debezium skips truncates by default (skipped.operations=t): the encoder
// writes nothing for them unless DebeziumTruncates.
func TestDebeziumSkipsTruncates(t *testing.T) {
	var truncate *event.Event
	for _, tc := range testEvents() {
		if tc.ev.Op == event.OpTruncate {
			truncate = tc.ev
		}
	}
	out, err := NewDebezium(testOptions()).Encode([]byte("x"), truncate)
	if err != nil || string(out) != "x" {
		t.Errorf("truncate by default: %q, %v; want nothing", out, err)
	}
	opts := testOptions()
	opts.DebeziumTruncates = true
	out, err = NewDebezium(opts).Encode(nil, truncate)
	if err != nil || !strings.Contains(string(out), `"op":"t"`) {
		t.Errorf("truncate with DebeziumTruncates: %s, %v", out, err)
	}
}

// TestDebeziumModes checks binary.handling.mode and time.precision.mode:
// the schema's type and name and the value, per mode.
func TestDebeziumModes(t *testing.T) {
	tests := []struct {
		opts           Options
		oid            uint32
		typmod         int32
		raw            string
		typ, name, val string
	}{
		{Options{}, 17, -1, `\x0102ff`, "bytes", "", `"AQL/"`},
		{Options{DebeziumBinaryHandling: BinaryBase64}, 17, -1, `\x0102ff`, "string", "", `"AQL/"`},
		{Options{DebeziumBinaryHandling: BinaryHex}, 17, -1, `\x0102ff`, "string", "", `"0102ff"`},
		{Options{}, 1082, -1, "2026-11-23", "int32", "io.debezium.time.Date", "20780"},
		{Options{DebeziumTimePrecision: TimeConnect}, 1082, -1, "2026-11-23", "int32", "org.apache.kafka.connect.data.Date", "20780"},
		{Options{}, 1114, -1, "1970-01-01 00:00:01.5", "int64", "io.debezium.time.MicroTimestamp", "1500000"},
		{Options{}, 1114, 3, "1970-01-01 00:00:01.5", "int64", "io.debezium.time.Timestamp", "1500"},
		{Options{DebeziumTimePrecision: TimeConnect}, 1114, -1, "1970-01-01 00:00:01.5", "int64", "org.apache.kafka.connect.data.Timestamp", "1500"},
		{Options{}, 1083, -1, "00:00:01.5", "int64", "io.debezium.time.MicroTime", "1500000"},
		{Options{}, 1083, 2, "00:00:01.5", "int32", "io.debezium.time.Time", "1500"},
		{Options{DebeziumTimePrecision: TimeAdaptiveMicroseconds}, 1083, 2, "00:00:01.5", "int64", "io.debezium.time.MicroTime", "1500000"},
		{Options{DebeziumTimePrecision: TimeConnect}, 1083, -1, "00:00:01.5", "int32", "org.apache.kafka.connect.data.Time", "1500"},
	}
	for _, tt := range tests {
		col := event.Column{Name: "c", Type: typ(tt.oid), TypeMod: tt.typmod}
		rel := &event.Relation{Schema: "s", Table: "t", Identity: event.IdentityDefault, Columns: []event.Column{
			{Name: "id", Type: typ(23), TypeMod: -1, Key: true}, col}}
		e := &event.Event{Op: event.OpInsert, Schema: "s", Table: "t", Rel: rel, After: event.Row{text("1"), text(tt.raw)}}
		out, err := NewDebezium(tt.opts).Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			Schema struct {
				Fields []struct {
					Field  string
					Fields []struct{ Type, Name, Field string }
				}
			}
			Payload struct {
				After map[string]json.RawMessage `json:"after"`
			}
		}
		if err := json.Unmarshal(out, &rec); err != nil {
			t.Fatal(err)
		}
		f := rec.Schema.Fields[1].Fields[1] // after.c
		if f.Type != tt.typ || f.Name != tt.name || string(rec.Payload.After["c"]) != tt.val {
			t.Errorf("%s %q %+v: schema %s %q, value %s; want %s %q, %s", col.Type.Name, tt.raw, tt.opts, f.Type, f.Name, rec.Payload.After["c"], tt.typ, tt.name, tt.val)
		}
	}
}

// With DebeziumTransactionMetadata, each change carries its transaction's
// id and its order in it and in its table, and the END record counts the
// transaction's events per table, as Debezium's provide.transaction.metadata.
func TestDebeziumTransactionMetadata(t *testing.T) {
	opts := testOptions()
	opts.DebeziumPayloadOnly = true
	opts.DebeziumTransactionMetadata = true
	enc := NewDebezium(opts)
	evs := testEvents()
	insert, update, commit := evs[0].ev, evs[1].ev, evs[10].ev // data, audit
	type block struct {
		ID                  string `json:"id"`
		TotalOrder          int64  `json:"total_order"`
		DataCollectionOrder int64  `json:"data_collection_order"`
	}
	want := []block{{"732:23803808", 1, 1}, {"732:23803808", 2, 1}, {"732:23803808", 3, 2}}
	for i, e := range []*event.Event{insert, update, insert} {
		out, err := enc.Encode(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Transaction block }
		if err := json.Unmarshal(out, &p); err != nil {
			t.Fatal(err)
		}
		if p.Transaction != want[i] {
			t.Errorf("event %d: transaction %+v, want %+v", i, p.Transaction, want[i])
		}
	}
	out, err := enc.Encode(nil, commit)
	if err != nil {
		t.Fatal(err)
	}
	wantEnd := `{"status":"END","id":"732:23803808","event_count":3,"data_collections":[{"data_collection":"public.data","event_count":2},{"data_collection":"public.audit","event_count":1}],"ts_ms":1795409789368}`
	if string(out) != wantEnd {
		t.Errorf("END record\n got %s\nwant %s", out, wantEnd)
	}
	// Without the option: no block, no counts.
	plain := NewDebezium(Options{DebeziumPayloadOnly: true})
	out, _ = plain.Encode(nil, insert)
	if !strings.Contains(string(out), `"transaction":null`) {
		t.Errorf("transaction block without the option: %s", out)
	}
}
