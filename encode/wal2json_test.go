package encode

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
)

// TestWal2JSONLikePlugin compares with output of the wal2json plugin itself
// (its regression test for special values, format-version 1 without
// pretty-printing, typmods on).
func TestWal2JSONLikePlugin(t *testing.T) {
	rel := &event.Relation{Schema: "public", Table: "xpto", Identity: event.IdentityDefault, Columns: []event.Column{
		{Name: "a", Type: typ(23), TypeMod: -1, Key: true},
		{Name: "b", Type: typ(16), TypeMod: -1},
		{Name: "c", Type: typ(1043), TypeMod: 64},
		{Name: "d", Type: typ(700), TypeMod: -1},
	}}
	tests := []struct {
		row  event.Row
		want string
	}{
		{event.Row{text("1"), text("t"), text("test1"), text("Infinity")},
			`{"change":[{"kind":"insert","schema":"public","table":"xpto","columnnames":["a","b","c","d"],"columntypes":["integer","boolean","character varying(60)","real"],"columnvalues":[1,true,"test1",null]}]}`},
		{event.Row{text("2"), text("f"), text("test2"), text("NaN")},
			`{"change":[{"kind":"insert","schema":"public","table":"xpto","columnnames":["a","b","c","d"],"columntypes":["integer","boolean","character varying(60)","real"],"columnvalues":[2,false,"test2",null]}]}`},
		{event.Row{text("3"), null, text("null"), text("-Infinity")},
			`{"change":[{"kind":"insert","schema":"public","table":"xpto","columnnames":["a","b","c","d"],"columntypes":["integer","boolean","character varying(60)","real"],"columnvalues":[3,null,"null",null]}]}`},
		{event.Row{text("4"), text("t"), text("valid: ' \" \\ / \b \f \n \r \t ⁿ 陿 invalid: \\g \\k end"), text("123.456")},
			`{"change":[{"kind":"insert","schema":"public","table":"xpto","columnnames":["a","b","c","d"],"columntypes":["integer","boolean","character varying(60)","real"],"columnvalues":[4,true,"valid: ' \" \\ / \u0008 \u000c \n \r \t ⁿ 陿 invalid: \\g \\k end",123.456]}]}`},
	}
	for _, tt := range tests {
		got, err := (&Wal2JSON{}).Encode(nil, &event.Event{Op: event.OpInsert, Schema: "public", Table: "xpto", Rel: rel, After: tt.row})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("\n got %s\nwant %s", got, tt.want)
		}
	}
}

func TestWal2JSONTypeNames(t *testing.T) {
	arrayOf := func(oid uint32) *event.Type { return typ(oid) }
	tests := []struct {
		t      *event.Type
		typmod int32
		want   string
	}{
		{typ(23), -1, `"integer"`},
		{typ(1043), -1, `"character varying"`},
		{typ(1043), 14, `"character varying(10)"`},
		{typ(1042), 5, `"character(1)"`},
		{typ(1042), -1, `"bpchar"`},
		{typ(1700), -1, `"numeric"`},
		{typ(1700), numericMod(10, 2), `"numeric(10,2)"`},
		{typ(1700), numericMod(5, -2), `"numeric(5,-2)"`}, // negative scale, PostgreSQL 15
		{typ(1114), 3, `"timestamp(3) without time zone"`},
		{typ(1184), 0, `"timestamp(0) with time zone"`},
		{typ(1266), 6, `"time(6) with time zone"`},
		{typ(1560), 8, `"bit(8)"`},
		{typ(1562), 8, `"bit varying(8)"`},
		{typ(1186), 0x7fff<<16 | 3, `"interval(3)"`},
		{typ(1186), (1<<3|1<<10|1<<11|1<<12)<<16 | 0xffff, `"interval day to second"`},
		{typ(1186), (1<<10|1<<11)<<16 | 0xffff, `"interval hour to minute"`},
		{arrayOf(1015), 14, `"character varying(10)[]"`},
		{arrayOf(1007), -1, `"integer[]"`},
		{typ(18), -1, `"char"`}, // format_type quotes it; wal2json prints the quotes as the JSON string's
		{&event.Type{OID: 99999, Name: `public."my""type"`}, -1, `"public.\"my\"\"type\""`},
		{nil, -1, `"unknown"`},
	}
	for _, tt := range tests {
		got := string(appendFormatTypeJSON(nil, &event.Column{Type: tt.t, TypeMod: tt.typmod}))
		if got != tt.want {
			name := "nil"
			if tt.t != nil {
				name = tt.t.Name
			}
			t.Errorf("%s with typmod %d: got %s, want %s", name, tt.typmod, got, tt.want)
		}
	}
}

func TestWal2JSONValues(t *testing.T) {
	tests := []struct {
		oid  uint32
		raw  string
		want string
	}{
		{20, "-9223372036854775808", "-9223372036854775808"},
		{1700, "12.50", "12.50"},
		{1700, "NaN", "null"},
		{701, "-Infinity", "null"},
		{701, "1e+300", "1e+300"},
		{16, "t", "true"},
		{16, "f", "false"},
		{17, `\x0102`, `"0102"`},
		{3802, `{"a": 1}`, `"{\"a\": 1}"`},
		{1184, "2026-11-23 04:56:29+00", `"2026-11-23 04:56:29+00"`},
		{1007, "{1,2}", `"{1,2}"`},
		{26, "4294967295", "4294967295"},
		{23, "00", `"00"`},
		{1700, "1.", `"1."`},
		{1700, "+1", `"+1"`},
		{701, "1e", `"1e"`},
		{701, "-0.5E-3", "-0.5E-3"},
	}
	for _, tt := range tests {
		got := string(appendWal2JSONValue(nil, text(tt.raw), typ(tt.oid), nil))
		if got != tt.want {
			t.Errorf("%s %q: got %s, want %s", typ(tt.oid).Name, tt.raw, got, tt.want)
		}
	}
}

// TestWal2JSONTransaction frames a whole transaction, begin to commit, as
// one format-version 1 object (testdata/golden/wal2json/transaction.json):
// the changes in order, the transactional message among them, the truncate
// left out as the plugin leaves it out, and nextlsn = the commit's EndLSN.
func TestWal2JSONTransaction(t *testing.T) {
	enc, err := New(FormatWal2JSON, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	// The events in transaction order: begin, the changes, commit.
	evs := testEvents()
	order := []*event.Event{evs[9].ev}
	for _, tc := range evs[:8] {
		order = append(order, tc.ev)
	}
	order = append(order, evs[10].ev)
	out = nil
	for _, e := range order {
		if out, err = enc.Encode(out, e); err != nil {
			t.Fatal(err)
		}
	}
	if enc.(TxFramer).InFrame() {
		t.Fatal("still in a frame after the commit")
	}
	var v struct {
		XID       uint32            `json:"xid"`
		NextLSN   string            `json:"nextlsn"`
		Timestamp string            `json:"timestamp"`
		Change    []json.RawMessage `json:"change"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if v.XID != 732 || v.NextLSN != "0/16B37D0" || v.Timestamp != "2026-11-23 04:56:29.368123+00" || len(v.Change) != 7 {
		t.Errorf("xid %d nextlsn %s timestamp %s, %d changes; want 732, 0/16B37D0, 2026-11-23 04:56:29.368123+00, 7 (no truncate)", v.XID, v.NextLSN, v.Timestamp, len(v.Change))
	}
	golden(t, "testdata/golden/wal2json/transaction.json", out)
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s\n got: %s\nwant: %s", path, got, want)
	}
}

func TestWal2JSONTimeZone(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	tests := []struct{ raw, want string }{
		{"2026-11-23 04:56:29.368123+00", `"2026-11-23 10:26:29.368123+05:30"`},
		{"2026-11-23 04:56:29+00", `"2026-11-23 10:26:29+05:30"`},
		{"infinity", `"infinity"`},
		{"0044-03-15 00:00:00+00 BC", `"0044-03-15 00:00:00+00 BC"`},
	}
	for _, tt := range tests {
		if got := string(appendWal2JSONValue(nil, text(tt.raw), typ(1184), kolkata)); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.raw, got, tt.want)
		}
	}
	o, err := ParseWal2JSONOptions("timezone=Asia/Kolkata")
	if err != nil || o.TimeZone == nil || o.TimeZone.String() != "Asia/Kolkata" {
		t.Errorf("timezone option: %v, %v", o.TimeZone, err)
	}
}

func TestParseWal2JSONOptions(t *testing.T) {
	o, err := ParseWal2JSONOptions("include-xids=1, include-timestamp, include-lsn=on,include-typmod=false,include-types=0,include-type-oids=t,include-not-null=yes,include-pk=1,format-version=2,pretty-print=0")
	if err != nil {
		t.Fatal(err)
	}
	want := Wal2JSONOptions{Xids: true, Timestamp: true, LSN: true, NoTypmod: true, NoTypes: true, TypeOids: true, NotNull: true, PK: true}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
	o, err = ParseWal2JSONOptions("add-tables=public.a,s\\.x.*,include-lsn,filter-tables=*.tmp,actions=insert,delete,include-transaction=0")
	if err != nil {
		t.Fatal(err)
	}
	want = Wal2JSONOptions{LSN: true, NoTransaction: true, AddTables: []string{"public.a", `s\.x.*`}, FilterTables: []string{"*.tmp"}, Actions: []string{"insert", "delete"}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got %+v, want %+v", o, want)
	}
	for _, tt := range []struct {
		pattern, schema, table string
		want                   bool
	}{
		{"public.a", "public", "a", true},
		{"public.a", "public", "b", false},
		{"*.a", "any", "a", true},
		{"public.*", "public", "zz", true},
		{`s\.x.*`, "s.x", "t", true},
		{`s\.x.*`, "s", "x.t", false},
		{`\*.t`, "*", "t", true},
		{`\*.t`, "other", "t", false},
		{"noschema", "public", "noschema", false},
	} {
		if got := matchWal2JSONTable(tt.pattern, tt.schema, tt.table); got != tt.want {
			t.Errorf("%q on %s.%s: %v, want %v", tt.pattern, tt.schema, tt.table, got, tt.want)
		}
	}
	for _, bad := range []string{"include-xids=maybe", "pretty-print=1", "actions=insert,upsert", "filter-tables=nodot", "timezone=Nowhere/City", "nonsense"} {
		if _, err := ParseWal2JSONOptions(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A transaction whose commit never comes (the stream broke off) is closed
// by EndFrame into valid JSON, and the next begin starts a new object.
func TestWal2JSONEndFrame(t *testing.T) {
	enc := NewWal2JSON(Wal2JSONOptions{Xids: true})
	evs := testEvents()
	out, _ := enc.Encode(nil, evs[9].ev) // begin
	out, _ = enc.Encode(out, evs[0].ev)  // insert
	out = enc.EndFrame(out)
	if enc.InFrame() || !json.Valid(out) {
		t.Fatalf("after EndFrame: in frame %v, %s", enc.InFrame(), out)
	}
	if again := enc.EndFrame(nil); len(again) != 0 {
		t.Errorf("EndFrame with no open frame wrote %q", again)
	}
	out, _ = enc.Encode(nil, evs[9].ev)
	out, _ = enc.Encode(out, evs[10].ev) // commit
	if string(out) != `{"xid":732,"change":[]}` {
		t.Errorf("empty transaction: %s", out)
	}
}
