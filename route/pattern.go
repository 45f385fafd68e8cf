package route

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultSchema is the schema of a table name or pattern written without
// one. It is what an unqualified name means in SQL under PostgreSQL's
// default search_path, and what pg_dump's -t means for a visible table, so
// "orders" in a pgfeed config is the same table as in psql. Write
// "*.orders" for a table of that name in any schema.
const DefaultSchema = "public"

// TablePattern selects tables by name. Schema and Table are glob
// patterns (see glob.go), matched separately: a "*" never spans the dot between schema
// and table, so "public.*" cannot match a schema called "public.x". Names
// are compared as PostgreSQL stores them, case-sensitively ("Orders" and
// "orders" are different tables).
type TablePattern struct {
	Schema string
	Table  string
}

// ParseTablePattern parses "schema.table" or "table" (schema DefaultSchema),
// each part a glob pattern such as "public.*" or "*.audit_*".
func ParseTablePattern(s string) (TablePattern, error) {
	parts, err := splitName(s, 2)
	if err != nil {
		return TablePattern{}, err
	}
	for _, p := range parts {
		if err := checkGlob(p); err != nil {
			return TablePattern{}, fmt.Errorf("invalid pattern %q: %w", s, err)
		}
	}
	return TablePattern{Schema: parts[0], Table: parts[1]}, nil
}

// Match reports whether the table schema.table matches the pattern.
func (p TablePattern) Match(schema, table string) bool {
	return match(p.Schema, schema) && match(p.Table, table)
}

// String returns the pattern as "schema.table".
func (p TablePattern) String() string { return p.Schema + "." + p.Table }

// ColumnPattern selects columns: a TablePattern and a glob pattern for
// the column name, so "*.*.password" selects every column called password.
type ColumnPattern struct {
	Table  TablePattern
	Column string
}

// ParseColumnPattern parses "schema.table.column" or "table.column" (schema
// DefaultSchema), each part a glob pattern.
func ParseColumnPattern(s string) (ColumnPattern, error) {
	parts, err := splitName(s, 3)
	if err != nil {
		return ColumnPattern{}, err
	}
	for _, p := range parts {
		if err := checkGlob(p); err != nil {
			return ColumnPattern{}, fmt.Errorf("invalid pattern %q: %w", s, err)
		}
	}
	return ColumnPattern{Table: TablePattern{Schema: parts[0], Table: parts[1]}, Column: parts[2]}, nil
}

// Match reports whether the column of schema.table matches the pattern.
func (p ColumnPattern) Match(schema, table, column string) bool {
	return p.Table.Match(schema, table) && match(p.Column, column)
}

// String returns the pattern as "schema.table.column".
func (p ColumnPattern) String() string { return p.Table.String() + "." + p.Column }

// ParseTableName parses the name of one table, "schema.table" or "table"
// (schema DefaultSchema). Glob characters are refused, because the callers
// (per-table routes, publication row filters) need exactly one table.
func ParseTableName(s string) (schema, table string, err error) {
	parts, err := splitName(s, 2)
	if err != nil {
		return "", "", err
	}
	if strings.ContainsAny(s, `*?[\`) {
		return "", "", fmt.Errorf("%q is a pattern: name one table", s)
	}
	return parts[0], parts[1], nil
}

var errEmpty = errors.New("empty name")

// splitName splits a dotted name into want parts, filling in DefaultSchema
// when the schema is left out. Quoted identifiers are not supported: a name
// holding a dot cannot be written, which is rare enough not to justify a
// quoting syntax of our own.
func splitName(s string, want int) ([]string, error) {
	if s == "" {
		return nil, errEmpty
	}
	if strings.TrimSpace(s) != s {
		return nil, fmt.Errorf("%q has leading or trailing spaces", s)
	}
	parts := strings.Split(s, ".")
	if len(parts) == want-1 {
		parts = append([]string{DefaultSchema}, parts...)
	}
	if len(parts) != want {
		if want == 2 {
			return nil, fmt.Errorf("%q: want table or schema.table", s)
		}
		return nil, fmt.Errorf("%q: want table.column or schema.table.column", s)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("%q has an empty part", s)
		}
	}
	return parts, nil
}

// match is globMatch for a pattern already validated at parse time, with a
// shortcut for the common case of a literal name.
func match(pattern, name string) bool {
	if !strings.ContainsAny(pattern, `*?[\`) {
		return pattern == name
	}
	return globMatch(pattern, name)
}
