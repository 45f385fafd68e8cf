package route

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pgfeed/pgfeed/event"
)

// Templates every sink starts from.
const (
	// DefaultTemplate names a table event's destination after its table.
	DefaultTemplate = "{schema}.{table}"
	// DefaultOtherTemplate names the destination of events that belong to no
	// table (message, begin, commit): "pgfeed.message" and so on, so that
	// they never land in a table's topic.
	DefaultOtherTemplate = "pgfeed.{op}"
)

// Template is a destination name with placeholders: {schema}, {table} and
// {op} (insert, update, ... as in the event's JSON). Braces always delimit a
// placeholder; no destination pgfeed writes to needs literal braces.
type Template struct {
	text  string
	parts []part
}

type field uint8

const (
	literal field = iota
	schemaField
	tableField
	opField
)

// part is a literal string or one placeholder.
type part struct {
	field field
	lit   string
}

var placeholders = map[string]field{"schema": schemaField, "table": tableField, "op": opField}

// ParseTemplate compiles a template. An unknown placeholder, an unclosed
// "{" or a stray "}" is an error, so a typo fails at startup rather than
// sending events to a topic named "{tabel}".
func ParseTemplate(s string) (*Template, error) {
	if s == "" {
		return nil, errors.New("empty template")
	}
	t := &Template{text: s}
	rest, off := s, 0
	for rest != "" {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if rest[open] == '}' {
			return nil, fmt.Errorf("template %q: unmatched \"}\" at offset %d", s, off+open)
		}
		if open > 0 {
			t.parts = append(t.parts, part{lit: rest[:open]})
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] == '{' {
			return nil, fmt.Errorf("template %q: unclosed \"{\" at offset %d", s, off+open)
		}
		name := rest[open+1 : open+1+end]
		f, ok := placeholders[name]
		if !ok {
			return nil, fmt.Errorf("template %q: unknown placeholder {%s} (have {schema}, {table}, {op})", s, name)
		}
		t.parts = append(t.parts, part{field: f})
		n := open + end + 2
		rest, off = rest[n:], off+n
	}
	return t, nil
}

// String returns the template as written.
func (t *Template) String() string { return t.text }

// Render fills in the placeholders.
func (t *Template) Render(schema, table string, op event.Op) string {
	if len(t.parts) == 1 && t.parts[0].field == literal {
		return t.parts[0].lit // a fixed name: nothing to build
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.field {
		case literal:
			b.WriteString(p.lit)
		case schemaField:
			b.WriteString(schema)
		case tableField:
			b.WriteString(table)
		case opField:
			b.WriteString(op.String())
		}
	}
	return b.String()
}
