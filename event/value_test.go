package event

import (
	"encoding/json"
	"testing"
)

func TestValueJSON(t *testing.T) {
	arr := func(oid uint32) *Type { return BuiltinType(oid) }
	tests := []struct {
		name string
		typ  *Type
		raw  string
		want string
	}{
		{"bigint keeps every digit", arr(20), "9223372036854775807", `9223372036854775807`},
		{"negative int", arr(23), "-42", `-42`},
		{"float", arr(701), "1.5e+300", `1.5e+300`},
		{"float NaN", arr(701), "NaN", `"NaN"`},
		{"float -Infinity", arr(700), "-Infinity", `"-Infinity"`},
		{"numeric exact", arr(1700), "12.50", `"12.50"`},
		{"bool", arr(16), "t", `true`},
		{"bool false", arr(16), "f", `false`},
		{"jsonb", arr(3802), `{"a": [1, 2]}`, `{"a": [1, 2]}`},
		{"json keeps one line", arr(114), "{\"a\":\n1}", `{"a": 1}`},
		{"bytea hex", arr(17), `\x00ff10`, `"AP8Q"`},
		{"bytea escape", arr(17), `a\\\001`, `"YVwB"`},
		{"date", arr(1082), "2026-11-23", `"2026-11-23"`},
		{"timestamp", arr(1114), "2026-11-23 04:56:29.368123", `"2026-11-23T04:56:29.368123"`},
		{"timestamptz utc", arr(1184), "2026-11-23 04:56:29.368123+00", `"2026-11-23T04:56:29.368123Z"`},
		{"timestamptz offset", arr(1184), "2026-11-23 06:56:29+02", `"2026-11-23T04:56:29Z"`},
		{"timestamptz half-hour offset", arr(1184), "2026-11-23 10:26:29.5+05:30", `"2026-11-23T04:56:29.5Z"`},
		{"timestamptz infinity", arr(1184), "infinity", `"infinity"`},
		{"text escapes", arr(25), "a\"b\\c\nd\x01", `"a\"b\\c\nd\u0001"`},
		{"invalid utf8", arr(25), "a\xffb", `"a\ufffdb"`},
		{"int array", arr(1007), "{1,2,NULL}", `[1,2,null]`},
		{"2-d text array", arr(1009), `{{"a b",NULL},{"c\"d","NULL"}}`, `[["a b",null],["c\"d","NULL"]]`},
		{"array with bounds", arr(1007), "[0:1]={7,8}", `[7,8]`},
		{"empty array", arr(1009), "{}", `[]`},
		{"box array uses ;", arr(1020), "{(1,1),(0,0);(2,2),(1,1)}", `["(1,1),(0,0)","(2,2),(1,1)"]`},
		{"jsonb array", arr(3807), `{"{\"a\": 1}","[2]"}`, `[{"a": 1},[2]]`},
		{"numeric array", arr(1231), "{1.5,NaN}", `["1.5","NaN"]`},
		{"malformed array falls back to text", arr(1007), "{1,", `"{1,"`},
		{"bad int falls back to text", arr(23), "x", `"x"`},
		{"leading zeros are not JSON", arr(23), "007", `"007"`},
		{"float leading zeros are not JSON", arr(701), "00.5", `"00.5"`},
		{"unknown type is text", UnknownType(99999), "(1,2)", `"(1,2)"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(Value{State: Text, Raw: []byte(tt.raw)}.AppendJSON(nil, tt.typ))
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("invalid JSON %s", got)
			}
		})
	}
}

func TestValueDecode(t *testing.T) {
	v := Value{State: Text, Raw: []byte("{{1,2},{3,NULL}}")}
	got, err := v.Decode(BuiltinType(1016))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if string(b) != `[[1,2],[3,null]]` {
		t.Fatalf("got %s", b)
	}
	ts, err := Value{State: Text, Raw: []byte("2026-11-23 06:56:29+02")}.Decode(BuiltinType(1184))
	if err != nil {
		t.Fatal(err)
	}
	if s := ts.(interface{ String() string }).String(); s != "2026-11-23 04:56:29 +0000 UTC" {
		t.Fatalf("got %s", s)
	}
	if n, _ := (Value{State: Null}).Decode(BuiltinType(23)); n != nil {
		t.Fatalf("NULL decoded to %v", n)
	}
}

func TestLSN(t *testing.T) {
	for _, s := range []string{"0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"} {
		l, err := ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		if l.String() != s || string(l.AppendText(nil)) != s {
			t.Fatalf("round trip %s: %s / %s", s, l, l.AppendText(nil))
		}
	}
	for _, bad := range []string{"", "1", "/1", "1/", "G/1", "123456789/0", "0/0/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Fatalf("ParseLSN(%q) accepted", bad)
		}
	}
}

// FuzzArray feeds arbitrary array text to the parser and the encoder: they
// must never panic and must always produce valid JSON.
func FuzzArray(f *testing.F) {
	for _, s := range []string{"{1,2}", `{{"a",NULL},{b,"c\\"}}`, "[1:2]={1,2}", "{", "{{{{{{{1}}}}}}}", `{"\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, oid := range []uint32{1007, 1009, 3807, 1020, 1185} {
			out := Value{State: Text, Raw: []byte(s)}.AppendJSON(nil, BuiltinType(oid))
			if !json.Valid(out) {
				t.Fatalf("invalid JSON for %q (oid %d): %s", s, oid, out)
			}
			_, _ = Value{State: Text, Raw: []byte(s)}.Decode(BuiltinType(oid))
		}
	})
}
