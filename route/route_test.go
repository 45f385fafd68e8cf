package route

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/event"
)

func TestParseTablePattern(t *testing.T) {
	tests := []struct {
		in      string
		want    TablePattern
		wantErr string
	}{
		{in: "public.users", want: TablePattern{"public", "users"}},
		{in: "orders", want: TablePattern{"public", "orders"}},
		{in: "*.audit_*", want: TablePattern{"*", "audit_*"}},
		{in: "*", want: TablePattern{"public", "*"}},
		{in: "", wantErr: "empty name"},
		{in: "a.b.c", wantErr: `"a.b.c": want table or schema.table`},
		{in: "public.", wantErr: `"public." has an empty part`},
		{in: ".users", wantErr: `".users" has an empty part`},
		{in: " public.users", wantErr: `" public.users" has leading or trailing spaces`},
		{in: "public.[a", wantErr: `invalid pattern "public.[a": syntax error in pattern`},
		{in: `public.a\`, wantErr: `invalid pattern "public.a\\": syntax error in pattern`},
	}
	for _, tt := range tests {
		got, err := ParseTablePattern(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseTablePattern(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTablePattern(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestTablePatternMatch(t *testing.T) {
	tests := []struct {
		pattern, schema, table string
		want                   bool
	}{
		{"public.*", "public", "users", true},
		{"public.*", "sales", "users", false},
		{"*.audit_*", "sales", "audit_log", true},
		{"*.audit_*", "sales", "audits", false},
		{"orders", "public", "orders", true},
		{"orders", "sales", "orders", false}, // unqualified means public
		{"*.orders", "sales", "orders", true},
		{"public.user?", "public", "users", true},
		{"public.[a-c]*", "public", "bills", true},
		{"public.[a-c]*", "public", "users", false},
		{"public.Users", "public", "users", false}, // case-sensitive, as stored
		{"*", "public", "x", true},
		// "*" stays within its part: it cannot swallow the dot.
		{"pub*", "public", "x", false},
		{"*.*", "public.x", "y", true},
	}
	for _, tt := range tests {
		p, err := ParseTablePattern(tt.pattern)
		if err != nil {
			t.Fatalf("ParseTablePattern(%q): %v", tt.pattern, err)
		}
		if got := p.Match(tt.schema, tt.table); got != tt.want {
			t.Errorf("%q.Match(%q, %q) = %v, want %v", tt.pattern, tt.schema, tt.table, got, tt.want)
		}
	}
}

func TestParseColumnPattern(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "public.users.password", want: "public.users.password"},
		{in: "users.password", want: "public.users.password"},
		{in: "*.*.password", want: "*.*.password"},
		{in: "password", wantErr: `"password": want table.column or schema.table.column`},
		{in: "a.b.c.d", wantErr: `"a.b.c.d": want table.column or schema.table.column`},
		{in: "public.users.[", wantErr: `invalid pattern "public.users.[": syntax error in pattern`},
	}
	for _, tt := range tests {
		got, err := ParseColumnPattern(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseColumnPattern(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseColumnPattern(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	p, _ := ParseColumnPattern("*.*.pass*")
	if !p.Match("a", "b", "password") || p.Match("a", "b", "email") {
		t.Errorf("*.*.pass* matched wrongly")
	}
}

func TestParseTableName(t *testing.T) {
	tests := []struct {
		in, schema, table, wantErr string
	}{
		{in: "public.users", schema: "public", table: "users"},
		{in: "users", schema: "public", table: "users"},
		{in: "sales.Orders", schema: "sales", table: "Orders"},
		{in: "public.*", wantErr: `"public.*" is a pattern: name one table`},
		{in: "a.b.c", wantErr: `"a.b.c": want table or schema.table`},
	}
	for _, tt := range tests {
		s, tb, err := ParseTableName(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseTableName(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || s != tt.schema || tb != tt.table {
			t.Errorf("ParseTableName(%q) = %q, %q, %v", tt.in, s, tb, err)
		}
	}
}

func TestTemplate(t *testing.T) {
	tests := []struct {
		in      string
		want    string // rendered for sales.orders, update
		wantErr string
	}{
		{in: "{schema}.{table}", want: "sales.orders"},
		{in: "cdc.{schema}.{table}.{op}", want: "cdc.sales.orders.update"},
		{in: "fixed-topic", want: "fixed-topic"},
		{in: "{table}", want: "orders"},
		{in: "{op}{op}", want: "updateupdate"},
		{in: "", wantErr: "empty template"},
		{in: "{tabel}", wantErr: `template "{tabel}": unknown placeholder {tabel} (have {schema}, {table}, {op})`},
		{in: "x{}", wantErr: `template "x{}": unknown placeholder {} (have {schema}, {table}, {op})`},
		{in: "a.{table", wantErr: `template "a.{table": unclosed "{" at offset 2`},
		{in: "{sch{table}", wantErr: `template "{sch{table}": unclosed "{" at offset 0`},
		{in: "{table}}", wantErr: `template "{table}}": unmatched "}" at offset 7`},
		{in: "a}", wantErr: `template "a}": unmatched "}" at offset 1`},
	}
	for _, tt := range tests {
		tpl, err := ParseTemplate(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseTemplate(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tt.in, err)
			continue
		}
		if got := tpl.Render("sales", "orders", event.OpUpdate); got != tt.want {
			t.Errorf("ParseTemplate(%q).Render = %q, want %q", tt.in, got, tt.want)
		}
		if tpl.String() != tt.in {
			t.Errorf("String() = %q, want %q", tpl.String(), tt.in)
		}
	}
}

// FuzzTemplate checks that parsing never panics and that a template that
// parses renders as plain text replacement of its placeholders would.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"{schema}.{table}", "a{op}b", "{", "}", "{{table}}", "{tabel}", "x", ""} {
		f.Add(s)
	}
	r := strings.NewReplacer("{schema}", "S", "{table}", "T", "{op}", "delete")
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := ParseTemplate(s)
		if err != nil {
			return
		}
		if got, want := tpl.Render("S", "T", event.OpDelete), r.Replace(s); got != want {
			t.Fatalf("Render(%q) = %q, want %q", s, got, want)
		}
		if tpl.String() != s {
			t.Fatalf("String() = %q, want %q", tpl.String(), s)
		}
	})
}

func TestNormalizeWhere(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "status <> 'draft'", want: "status <> 'draft'"},
		{in: "  WHERE status <> 'draft'  ", want: "status <> 'draft'"},
		{in: "where(a > 1)", want: "(a > 1)"},
		{in: "whereabouts = 1", want: "whereabouts = 1"},
		{in: "note = 'it''s; -- fine'", want: "note = 'it''s; -- fine'"},
		{in: `note = E'it\'s; fine'`, want: `note = E'it\'s; fine'`},
		{in: `"we;ird""col" = 1`, want: `"we;ird""col" = 1`},
		{in: "body = $x$ ; ) -- $x$", want: "body = $x$ ; ) -- $x$"},
		{in: "body = $$;$$", want: "body = $$;$$"},
		{in: "a$b = 1 and (c or d)", want: "a$b = 1 and (c or d)"},
		{in: "a = 10 / 2 - 1", want: "a = 10 / 2 - 1"},
		{in: "", wantErr: "empty row filter"},
		{in: "WHERE ", wantErr: "empty row filter"},
		{in: "true; drop table users", wantErr: `row filter "true; drop table users": ";" at offset 4: a filter is one expression`},
		{in: "true) or (true", wantErr: `row filter "true) or (true": unmatched ")" at offset 4`},
		{in: "(true", wantErr: `row filter "(true": 1 unclosed "("`},
		{in: "a = 'x", wantErr: `row filter "a = 'x": unterminated string starting at offset 4`},
		{in: `a = 'x\'`, want: `a = 'x\'`}, // standard_conforming_strings: a backslash is a character
		{in: `a = E'x\'`, wantErr: `row filter "a = E'x\\'": unterminated string starting at offset 5`},
		{in: `"a = 1`, wantErr: `row filter "\"a = 1": unterminated quoted identifier starting at offset 0`},
		{in: "a = $t$x", wantErr: `row filter "a = $t$x": unterminated dollar quote $t$ at offset 4`},
		{in: "true -- )", wantErr: `row filter "true -- )": comment at offset 5: comments are not allowed`},
		{in: "true /* x */", wantErr: `row filter "true /* x */": comment at offset 5: comments are not allowed`},
		{in: "a = $1", want: "a = $1"},
	}
	for _, tt := range tests {
		got, err := NormalizeWhere(tt.in)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("NormalizeWhere(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeWhere(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzNormalizeWhere checks that the checker never panics, that what it
// accepts stays accepted, and that an accepted filter cannot close the
// parentheses the source wraps it in: with every quote closed and every
// parenthesis matched, one more ")" must be refused.
func FuzzNormalizeWhere(f *testing.F) {
	for _, s := range []string{"a = 1", "where x", "where where x", "'", "$a$ $a$", "E'\\''", "(()", "a;b", `"x""y"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeWhere(s)
		if err != nil {
			return
		}
		if _, err := NormalizeWhere(got); err != nil {
			t.Fatalf("NormalizeWhere(%q) = %q, which it refuses: %v", s, got, err)
		}
		if _, err := NormalizeWhere(got + ")"); err == nil {
			t.Fatalf("%q accepted, and so was it followed by \")\"", got)
		}
	})
}

func TestKey(t *testing.T) {
	intT, textT := event.BuiltinType(23), event.BuiltinType(25)
	rel := &event.Relation{Schema: "public", Table: "t", Columns: []event.Column{
		{Name: "tenant", Type: textT, Key: true},
		{Name: "data", Type: textT},
		{Name: "id", Type: intT, Key: true},
	}}
	noKey := &event.Relation{Schema: "public", Table: "n", Columns: []event.Column{{Name: "data", Type: textT}}}
	tests := []struct {
		name string
		e    *event.Event
		want string // "" for nil
	}{
		{"insert", &event.Event{Op: event.OpInsert, Rel: rel, After: row("a", "x", "2")}, `{"tenant":"a","id":2}`},
		{"delete from old row", &event.Event{Op: event.OpDelete, Rel: rel, Before: event.Row{text("a"), {}, text("7")}}, `{"tenant":"a","id":7}`},
		{"unchanged key column from old row", &event.Event{Op: event.OpUpdate, Rel: rel,
			Before: event.Row{text("old"), {}, text("3")},
			After:  event.Row{{State: event.Unchanged}, text("y"), text("3")}}, `{"tenant":"old","id":3}`},
		{"null key value", &event.Event{Op: event.OpRead, Rel: rel, After: event.Row{{State: event.Null}, text("x"), text("1")}}, `{"tenant":null,"id":1}`},
		{"json escaping", &event.Event{Op: event.OpInsert, Rel: rel, After: row(`q"\`, "x", "1")}, `{"tenant":"q\"\\","id":1}`},
		{"no key columns", &event.Event{Op: event.OpInsert, Rel: noKey, After: row("x")}, ""},
		{"no row", &event.Event{Op: event.OpDelete, Rel: rel}, ""},
		{"key not sent", &event.Event{Op: event.OpDelete, Rel: rel, Before: event.Row{{}, {}, {}}}, ""},
		{"truncate", &event.Event{Op: event.OpTruncate, Rel: rel}, ""},
		{"message", &event.Event{Op: event.OpMessage}, ""},
	}
	for _, tt := range tests {
		got := Key(tt.e)
		if tt.want == "" {
			if got != nil {
				t.Errorf("%s: Key = %s, want nil", tt.name, got)
			}
			continue
		}
		if string(got) != tt.want {
			t.Errorf("%s: Key = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func text(s string) event.Value { return event.Value{State: event.Text, Raw: []byte(s)} }

func row(vals ...string) event.Row {
	r := make(event.Row, len(vals))
	for i, v := range vals {
		r[i] = text(v)
	}
	return r
}

// users is a table with every kind of column the router treats differently.
func users() *event.Relation {
	return &event.Relation{OID: 16384, Schema: "public", Table: "users", Identity: event.IdentityDefault, Columns: []event.Column{
		{Name: "id", Type: event.BuiltinType(20), Key: true},
		{Name: "email", Type: event.BuiltinType(25)},
		{Name: "password", Type: event.BuiltinType(25)},
		{Name: "age", Type: event.BuiltinType(23), TypeMod: -1},
		{Name: "bio", Type: event.BuiltinType(25)},
	}}
}

func userUpdate(rel *event.Relation) *event.Event {
	return &event.Event{
		Op: event.OpUpdate, Schema: "public", Table: "users", LSN: 100, CommitLSN: 200, XID: 7, Seq: 1, Rel: rel,
		Before: event.Row{text("2"), text("old@x.org"), text("hunter2"), {State: event.Null}, {}},
		After:  event.Row{text("2"), text("new@x.org"), text("hunter3"), text("41"), {State: event.Unchanged}},
	}
}

// deepCopy snapshots an event so a test can prove Apply left it alone.
func deepCopy(e *event.Event) *event.Event {
	c := *e
	rel := *e.Rel
	rel.Columns = append([]event.Column(nil), e.Rel.Columns...)
	c.Rel = &rel
	cp := func(r event.Row) event.Row {
		if r == nil {
			return nil
		}
		out := make(event.Row, len(r))
		for i, v := range r {
			out[i] = event.Value{State: v.State, Raw: bytes.Clone(v.Raw)}
		}
		return out
	}
	c.Before, c.After = cp(e.Before), cp(e.After)
	return &c
}

func TestApplyColumns(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		want    string // the event's JSON after Apply
		wantKey string
		same    bool // Apply must return the very event it was given
	}{
		{
			name:    "nothing to change",
			opts:    Options{Mask: []string{"public.orders.email"}},
			want:    `{"op":"update","schema":"public","table":"users","lsn":"0/64","commit_lsn":"0/C8","xid":7,"seq":1,"key":{"id":2},"before":{"id":2,"email":"old@x.org","password":"hunter2","age":null},"after":{"id":2,"email":"new@x.org","password":"hunter3","age":41},"unchanged":["bio"]}`,
			wantKey: `{"id":2}`,
			same:    true,
		},
		{
			name:    "drop and mask",
			opts:    Options{Drop: []string{"users.password"}, Mask: []string{"public.users.email", "*.*.age"}},
			want:    `{"op":"update","schema":"public","table":"users","lsn":"0/64","commit_lsn":"0/C8","xid":7,"seq":1,"key":{"id":2},"before":{"id":2,"email":"***","age":null},"after":{"id":2,"email":"***","age":"***"},"unchanged":["bio"]}`,
			wantKey: `{"id":2}`,
		},
		{
			name:    "drop wins over mask",
			opts:    Options{Drop: []string{"public.users.email"}, Mask: []string{"public.users.e*"}},
			want:    `{"op":"update","schema":"public","table":"users","lsn":"0/64","commit_lsn":"0/C8","xid":7,"seq":1,"key":{"id":2},"before":{"id":2,"password":"hunter2","age":null},"after":{"id":2,"password":"hunter3","age":41},"unchanged":["bio"]}`,
			wantKey: `{"id":2}`,
		},
		{
			name: "dropping the key column drops the key",
			opts: Options{Drop: []string{"public.users.id"}},
			want: `{"op":"update","schema":"public","table":"users","lsn":"0/64","commit_lsn":"0/C8","xid":7,"seq":1,"key":{},"before":{"email":"old@x.org","password":"hunter2","age":null},"after":{"email":"new@x.org","password":"hunter3","age":41},"unchanged":["bio"]}`,
		},
		{
			name:    "masking the key column masks the key",
			opts:    Options{Mask: []string{"public.users.id"}},
			want:    `{"op":"update","schema":"public","table":"users","lsn":"0/64","commit_lsn":"0/C8","xid":7,"seq":1,"key":{"id":"***"},"before":{"id":"***","email":"old@x.org","password":"hunter2","age":null},"after":{"id":"***","email":"new@x.org","password":"hunter3","age":41},"unchanged":["bio"]}`,
			wantKey: `{"id":"***"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			rel := users()
			in := userUpdate(rel)
			orig := deepCopy(in)
			for range 2 { // the second time from the cached plan
				rec, ok := r.Apply(in)
				if !ok {
					t.Fatal("event dropped")
				}
				if got := string(rec.Event.AppendJSON(nil)); got != tt.want {
					t.Errorf("got  %s\nwant %s", got, tt.want)
				}
				if string(rec.Key) != tt.wantKey {
					t.Errorf("key = %s, want %s", rec.Key, tt.wantKey)
				}
				if (rec.Event == in) != tt.same {
					t.Errorf("returned the input event: %v, want %v", rec.Event == in, tt.same)
				}
				if rec.Topic != "public.users" {
					t.Errorf("topic = %q", rec.Topic)
				}
			}
			if !reflect.DeepEqual(in, orig) || in.Rel != rel {
				t.Errorf("Apply modified its input:\n got %+v\nwant %+v", in, orig)
			}
		})
	}
}

func TestApplyMaskedRelation(t *testing.T) {
	r, err := New(Options{Drop: []string{"public.users.bio"}, Mask: []string{"public.users.age"}})
	if err != nil {
		t.Fatal(err)
	}
	rel := users()
	rec, _ := r.Apply(&event.Event{Op: event.OpSchema, Schema: "public", Table: "users", Rel: rel})
	got := rec.Event.Rel
	if got == rel {
		t.Fatal("schema event kept the source relation")
	}
	var names []string
	for _, c := range got.Columns {
		names = append(names, c.Name+":"+c.Type.Name)
	}
	if want := "id:bigint email:text password:text age:text"; strings.Join(names, " ") != want {
		t.Errorf("columns = %s, want %s", strings.Join(names, " "), want)
	}
	if len(rel.Columns) != 5 || rel.Columns[3].Type.Name != "integer" {
		t.Errorf("source relation modified: %+v", rel.Columns)
	}
	// Every event of a relation shares one copy, so encoders can cache by it.
	rec2, _ := r.Apply(userUpdate(rel))
	if rec2.Event.Rel != got {
		t.Error("a second event of the relation got another relation copy")
	}
	// A new Relation (after DDL) gets a new plan.
	rel2 := users()
	rel2.Columns = rel2.Columns[:4]
	rec3, _ := r.Apply(&event.Event{Op: event.OpInsert, Rel: rel2, After: row("1", "e", "p", "5")})
	if n := len(rec3.Event.Rel.Columns); n != 4 || string(rec3.Event.After[3].Raw) != MaskText {
		t.Errorf("after DDL: %d columns, age %q", n, rec3.Event.After[3].Raw)
	}
}

func TestApplyTables(t *testing.T) {
	opts := Options{
		Include: []string{"public.*", "sales.orders"},
		Exclude: []string{"*.audit_*"},
		Default: "cdc.{schema}.{table}",
		Tables:  map[string]string{"users": "users-topic", "sales.orders": "orders.{op}"},
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schema, table string
		op            event.Op
		rel           bool
		keep          bool
		topic         string
	}{
		{"public", "users", event.OpInsert, true, true, "users-topic"},
		{"public", "items", event.OpDelete, true, true, "cdc.public.items"},
		{"public", "audit_log", event.OpInsert, true, false, ""},
		{"sales", "audit_x", event.OpInsert, true, false, ""},
		{"sales", "orders", event.OpUpdate, true, true, "orders.update"},
		{"sales", "orders", event.OpTruncate, false, true, "orders.truncate"},
		{"sales", "refunds", event.OpInsert, true, false, ""},
		{"sales", "refunds", event.OpTruncate, false, false, ""},
		{"", "", event.OpMessage, false, true, "pgfeed.message"},
		{"", "", event.OpCommit, false, true, "pgfeed.commit"},
	}
	for _, tt := range tests {
		e := &event.Event{Op: tt.op, Schema: tt.schema, Table: tt.table}
		if tt.rel {
			e.Rel = &event.Relation{Schema: tt.schema, Table: tt.table}
		}
		rec, ok := r.Apply(e)
		if ok != tt.keep || rec.Topic != tt.topic {
			t.Errorf("%s.%s %v: keep %v topic %q, want %v %q", tt.schema, tt.table, tt.op, ok, rec.Topic, tt.keep, tt.topic)
		}
		if ok && rec.Event != e {
			t.Errorf("%s.%s: event copied although nothing changed", tt.schema, tt.table)
		}
	}
}

func TestNewErrors(t *testing.T) {
	_, err := New(Options{
		Include: []string{"public.ok", "a.b.c"},
		Drop:    []string{"users"},
		Default: "{tabel}",
		Tables:  map[string]string{"public.*": "x"},
	})
	want := `include[1]: "a.b.c": want table or schema.table
drop[0]: "users": want table.column or schema.table.column
default: template "{tabel}": unknown placeholder {tabel} (have {schema}, {table}, {op})
tables["public.*"]: "public.*" is a pattern: name one table`
	if err == nil || err.Error() != want {
		t.Errorf("New error:\n%v\nwant\n%s", err, want)
	}
}

func TestZeroOptions(t *testing.T) {
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := userUpdate(users())
	rec, ok := r.Apply(e)
	if !ok || rec.Event != e || rec.Topic != "public.users" || string(rec.Key) != `{"id":2}` || rec.Value != nil {
		t.Errorf("zero Options: %+v %v", rec, ok)
	}
}

func TestPlanCacheBounded(t *testing.T) {
	r, _ := New(Options{})
	for range maxPlans + 10 {
		r.Apply(&event.Event{Op: event.OpInsert, Rel: &event.Relation{Schema: "public", Table: "t"}})
	}
	n := 0
	r.plans.Range(func(_, _ any) bool { n++; return true })
	if n > maxPlans {
		t.Errorf("%d plans cached, limit %d", n, maxPlans)
	}
}

func TestApplyConcurrent(t *testing.T) {
	r, _ := New(Options{Mask: []string{"public.users.email"}})
	rel := users()
	done := make(chan string)
	for range 8 {
		go func() {
			var last string
			for range 200 {
				rec, _ := r.Apply(userUpdate(rel))
				last = string(rec.Event.After[1].Raw)
			}
			done <- last
		}()
	}
	for range 8 {
		if got := <-done; got != MaskText {
			t.Errorf("email = %q", got)
		}
	}
}

func BenchmarkApply(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"passthrough", Options{}},
		{"filter+template", Options{Include: []string{"public.*"}, Exclude: []string{"*.audit_*"}, Default: "cdc.{schema}.{table}.{op}"}},
		{"drop+mask", Options{Drop: []string{"*.*.password"}, Mask: []string{"public.users.email"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := New(bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			e := userUpdate(users())
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, ok := r.Apply(e); !ok {
					b.Fatal("dropped")
				}
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
