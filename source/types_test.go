package source

import (
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// One row with a column of every type of the mapping table (DESIGN.md),
// checked value by value as JSON.
func TestEveryType(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "types")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		"CREATE EXTENSION citext",
		"CREATE TYPE mood AS ENUM ('sad', 'happy')",
		"CREATE DOMAIN posint AS integer CHECK (VALUE > 0)",
		"CREATE TYPE pair AS (a int, b text)")
	cols := []struct {
		name, typ, value, want string
	}{
		{"c_smallint", "smallint", "-32768", `-32768`},
		{"c_integer", "integer", "2147483647", `2147483647`},
		{"c_bigint", "bigint", "9223372036854775807", `9223372036854775807`},
		{"c_oid", "oid", "4294967295", `4294967295`},
		{"c_real", "real", "1.5", `1.5`},
		{"c_double", "double precision", "-1.2345678901234567e+300", `-1.2345678901234567e+300`},
		{"c_nan", "double precision", "'NaN'", `"NaN"`},
		{"c_inf", "real", "'-Infinity'", `"-Infinity"`},
		{"c_numeric", "numeric", "12.50", `"12.50"`},
		{"c_numeric_big", "numeric", "123456789012345678901234567890.000000001", `"123456789012345678901234567890.000000001"`},
		{"c_bool", "boolean", "true", `true`},
		{"c_text", "text", `E'line1\nline2 "quoted" \\ é'`, `"line1\nline2 \"quoted\" \\ é"`},
		{"c_varchar", "varchar(10)", "'abc'", `"abc"`},
		{"c_char", "char(4)", "'ab'", `"ab  "`},
		{"c_name", "name", "'nm'", `"nm"`},
		{"c_citext", "citext", "'MiXeD'", `"MiXeD"`},
		{"c_enum", "mood", "'happy'", `"happy"`},
		{"c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", `"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`},
		{"c_inet", "inet", "'192.168.0.1/24'", `"192.168.0.1/24"`},
		{"c_cidr", "cidr", "'10.0.0.0/8'", `"10.0.0.0/8"`},
		{"c_macaddr", "macaddr", "'08:00:2b:01:02:03'", `"08:00:2b:01:02:03"`},
		{"c_interval", "interval", "'1 day 02:03:04'", `"1 day 02:03:04"`},
		{"c_money", "money", "12.34", `"$12.34"`},
		{"c_xml", "xml", "'<a>1</a>'", `"<a>1</a>"`},
		{"c_tsvector", "tsvector", "'a fat cat'", `"'a' 'cat' 'fat'"`},
		{"c_bit", "bit(4)", "B'1010'", `"1010"`},
		{"c_varbit", "bit varying", "B'101'", `"101"`},
		{"c_json", "json", `'{"b": [1, 2.5, "x"], "a": null}'`, `{"b": [1, 2.5, "x"], "a": null}`},
		{"c_jsonb", "jsonb", `'{"b": [1, 2.5, "x"], "a": null}'`, `{"a": null, "b": [1, 2.5, "x"]}`},
		{"c_bytea", "bytea", `'\x00ff10'`, `"AP8Q"`},
		{"c_date", "date", "'2026-11-23'", `"2026-11-23"`},
		{"c_date_inf", "date", "'infinity'", `"infinity"`},
		{"c_timestamp", "timestamp", "'2026-11-23 04:56:29.368123'", `"2026-11-23T04:56:29.368123"`},
		{"c_timestamptz", "timestamptz", "'2026-11-23 06:56:29.368123+02'", `"2026-11-23T04:56:29.368123Z"`},
		{"c_timestamptz_inf", "timestamptz", "'-infinity'", `"-infinity"`},
		{"c_time", "time", "'04:56:29.5'", `"04:56:29.5"`},
		{"c_timetz", "timetz", "'04:56:29+02'", `"04:56:29+02"`},
		{"c_int_array", "integer[]", "'{1,NULL,3}'", `[1,null,3]`},
		{"c_text_2d", "text[]", `'{{"a b",NULL},{"c\"d","e"}}'`, `[["a b",null],["c\"d","e"]]`},
		{"c_jsonb_array", "jsonb[]", `ARRAY['{"a":1}'::jsonb, '[2]']`, `[{"a": 1},[2]]`},
		{"c_enum_array", "mood[]", "'{sad,happy}'", `["sad","happy"]`},
		{"c_ts_array", "timestamptz[]", "ARRAY['2026-11-23 04:56:29+00'::timestamptz]", `["2026-11-23T04:56:29Z"]`},
		{"c_bool_array", "boolean[]", "'{t,f}'", `[true,false]`},
		{"c_domain", "posint", "7", `7`},
		{"c_composite", "pair", "ROW(1, 'x y')", `"(1,\"x y\")"`},
		{"c_range", "int4range", "'[1,5)'", `"[1,5)"`},
		{"c_point", "point", "'(1.5,2)'", `"(1.5,2)"`},
		{"c_null", "text", "NULL", `null`},
	}
	var defs, values []string
	for _, c := range cols {
		defs = append(defs, c.name+" "+c.typ)
		values = append(values, c.value)
	}
	pgtest.Exec(t, db, "CREATE TABLE every_type(id int primary key, "+strings.Join(defs, ", ")+")")
	s := open(t, Config{DSN: dsn, Slot: "types", Create: true})
	pgtest.Exec(t, db, "INSERT INTO every_type VALUES (1, "+strings.Join(values, ", ")+")")

	e := next(t, s)
	if e.Op != event.OpInsert {
		t.Fatalf("want insert, got %s", e.AppendJSON(nil))
	}
	for _, c := range cols {
		i := e.Rel.ColumnIndex(c.name)
		if i < 0 {
			t.Fatalf("column %s missing", c.name)
		}
		got := string(e.After[i].AppendJSON(nil, e.Rel.Columns[i].Type))
		if got != c.want {
			t.Errorf("%s (%s): got %s, want %s", c.name, c.typ, got, c.want)
		}
	}
	// The event as a whole is one valid JSON line.
	m := asMap(t, e)
	if after, _ := m["after"].(map[string]any); len(after) != len(cols)+1 {
		t.Errorf("after has %d columns, want %d", len(after), len(cols)+1)
	}
	if strings.Contains(string(e.AppendJSON(nil)), "\n") {
		t.Error("event JSON spans lines")
	}
	// Typed values for library users.
	row, err := e.After.Map(e.Rel)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := row["c_bigint"].(int64); !ok || v != 9223372036854775807 {
		t.Errorf("c_bigint decoded to %#v", row["c_bigint"])
	}
	if v, ok := row["c_domain"].(int64); !ok || v != 7 {
		t.Errorf("domain over integer decoded to %#v", row["c_domain"])
	}
}

// A TOASTed value that an update did not touch is not invented: it is left
// out of after and named in "unchanged".
func TestUnchangedToast(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "toast")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE doc(id int primary key, title text, body text)",
		"ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL")
	s := open(t, Config{DSN: dsn, Slot: "toast", Create: true})
	pgtest.Exec(t, db, "INSERT INTO doc VALUES (1, 'a', repeat('x', 100000))", "UPDATE doc SET title = 'b' WHERE id = 1")
	if e := next(t, s); e.Op != event.OpInsert || len(e.After[2].Raw) != 100000 {
		t.Fatalf("insert: op %s, body of %d bytes", e.Op, len(e.After[2].Raw))
	}
	up := next(t, s)
	m := asMap(t, up)
	if jsonOf(m["after"]) != `{"id":1,"title":"b"}` || jsonOf(m["unchanged"]) != `["body"]` {
		t.Fatalf("update: %s", up.AppendJSON(nil))
	}
}
