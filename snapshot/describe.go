package snapshot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
)

// Table is a table described for reading: its columns as the change stream
// describes them, and the unique key a Walker pages through.
type Table struct {
	// Rel lists the columns in attnum order. Dropped columns are skipped, and
	// so are generated columns, because pgoutput (before PostgreSQL 18) does
	// not send them either and a read event must look like an insert of the
	// same row. Columns of the event's key (catalog.Key) have Key set.
	Rel *event.Relation
	// Key holds the indexes into Rel.Columns of the walking key, in index
	// column order. It is empty when the table has no usable key.
	Key []int
	// KeyIndex names the index Key comes from.
	KeyIndex string
	// EstimatedRows is pg_class.reltuples: -1 when the table was never
	// vacuumed or analyzed.
	EstimatedRows int64
	// Filter is a row filter that reads apply: the WHERE of the table in
	// the stream's publication, as PostgreSQL prints it (pg_publication_tables
	// .rowfilter), so that a snapshot or backfill reads exactly the rows the
	// stream publishes. Empty: every row. It is SQL text: set it only from
	// the catalog, never from outside input.
	Filter string

	partitioned bool
}

// Name returns "schema.table", the form messages and progress use.
func (t *Table) Name() string { return t.Rel.Schema + "." + t.Rel.Table }

// Ident returns the table's name as a quotable identifier.
func (t *Table) Ident() pgx.Identifier { return pgx.Identifier{t.Rel.Schema, t.Rel.Table} }

// KeyNames returns the names of the key columns.
func (t *Table) KeyNames() []string {
	names := make([]string, len(t.Key))
	for i, k := range t.Key {
		names[i] = t.Rel.Columns[k].Name
	}
	return names
}

// NoKey returns a *NoKeyError when the table has no usable key, else nil.
func (t *Table) NoKey() error {
	if len(t.Key) > 0 {
		return nil
	}
	return &NoKeyError{Table: t.Name()}
}

// NotFoundError says a table does not exist (or is invisible on the search_path).
type NotFoundError struct{ Table string }

// Error names the table as it was looked up.
func (e *NotFoundError) Error() string {
	return fmt.Sprintf("table %q does not exist (SQLSTATE 42P01)", e.Table)
}

// SQLState returns undefined_table, like PostgreSQL's own error would.
func (e *NotFoundError) SQLState() string { return "42P01" }

// PermissionError says the connecting role may not read a table, and which
// grant would fix it.
type PermissionError struct {
	Table string // "schema.table"
	Role  string
	// Grant is the privilege that is missing, as GRANT spells it, e.g.
	// `SELECT ON "public"."t"` or `USAGE ON SCHEMA "app"`.
	Grant string
}

// Error names the missing grant and the statement that adds it.
func (e *PermissionError) Error() string {
	return fmt.Sprintf("permission denied to read table %q: role %q lacks %s; run GRANT %s TO %s (SQLSTATE 42501)",
		e.Table, e.Role, e.Grant, e.Grant, pgx.Identifier{e.Role}.Sanitize())
}

// SQLState returns insufficient_privilege, like PostgreSQL's own error would.
func (e *PermissionError) SQLState() string { return "42501" }

// NoKeyError says a table has no key a Walker can page through. Such a table
// is read whole, in one snapshot, instead of in chunks.
type NoKeyError struct{ Table string }

// Error says what is missing and what happens instead.
func (e *NoKeyError) Error() string {
	return fmt.Sprintf("table %q has no primary key, replica identity index or unique index on NOT NULL columns: "+
		"it cannot be read in chunks and is read whole in one snapshot instead (add a primary key to backfill it in chunks)", e.Table)
}

// Describe looks a table up by name and returns its columns, their types and
// the key to walk it by. The name is "table" (looked up on the search_path)
// or "schema.table", with PostgreSQL's rules for quoted identifiers
// (`"My Schema"."Table.1"`); unquoted names are folded to lower case.
//
// The walking key is the replica identity index when the table has REPLICA
// IDENTITY USING INDEX, else the primary key, else the unique index with the
// fewest columns whose columns are all NOT NULL; partial, expression and
// deferrable unique indexes do not qualify. The replica identity index comes
// first because the stream's old rows carry exactly its columns, which the
// Merger needs to recognise a deleted row.
//
// Errors a user can cause are typed: *NotFoundError, *PermissionError.
func Describe(ctx context.Context, q catalog.Querier, types *catalog.Types, name string) (*Table, error) {
	if types == nil {
		types = catalog.NewTypes()
	}
	info, err := lookupTable(ctx, q, name)
	if err != nil {
		return nil, err
	}
	t := info.table
	cols, err := describeColumns(ctx, q, info.oid)
	if err != nil {
		return nil, fmt.Errorf("describing table %q: %w", t.Name(), err)
	}
	if !info.canSelect {
		// Column privileges may still cover every column we read.
		for _, c := range cols {
			if !c.canSelect {
				return nil, &PermissionError{Table: t.Name(), Role: info.role, Grant: "SELECT ON " + t.Ident().Sanitize()}
			}
		}
	}
	oids := make([]uint32, len(cols))
	for i, c := range cols {
		oids[i] = c.typeOID
	}
	if err := types.Resolve(ctx, q, oids); err != nil {
		return nil, fmt.Errorf("describing table %q: %w", t.Name(), err)
	}
	for _, c := range cols {
		t.Rel.Columns = append(t.Rel.Columns, event.Column{Name: c.name, Type: types.Type(c.typeOID), TypeMod: c.typmod})
	}
	if err := chooseKey(ctx, q, info.oid, t, cols); err != nil {
		return nil, fmt.Errorf("describing table %q: %w", t.Name(), err)
	}
	key, err := catalog.Key(ctx, q, info.oid)
	if err != nil {
		return nil, fmt.Errorf("describing table %q: %w", t.Name(), err)
	}
	markKey(t.Rel, key)
	return t, nil
}

// markKey flags the columns of the event's key, as the change stream does
// (catalog.Key): reads and changes of a row carry the same key. That is not
// always the walking key, which may be any unique index on NOT NULL
// columns. A table with neither key keys on every column.
func markKey(rel *event.Relation, key []string) {
	found := 0
	for i := range rel.Columns {
		if slices.Contains(key, rel.Columns[i].Name) {
			rel.Columns[i].Key = true
			found++
		}
	}
	if found > 0 && found == len(key) {
		return
	}
	rel.NoKey = true
	for i := range rel.Columns {
		rel.Columns[i].Key = true
	}
}

type tableInfo struct {
	oid       uint32
	table     *Table
	role      string
	canSelect bool
}

// lookupTable resolves name with PostgreSQL's own parser (parse_ident), so
// that quoting and case folding are exactly the server's, then finds the
// table in the catalog by the resulting strings: no SQL text is built from
// the name.
func lookupTable(ctx context.Context, q catalog.Querier, name string) (*tableInfo, error) {
	var parts, path []string
	var role string
	err := queryRow(ctx, q, `SELECT parse_ident($1), current_schemas(false), current_user::text`, []any{name}, &parts, &path, &role)
	if err != nil {
		return nil, fmt.Errorf("parsing table name %q: %w", name, err)
	}
	var schemas []string
	shown := name
	switch len(parts) {
	case 1:
		schemas = path
		if len(path) > 0 {
			shown = path[0] + "." + parts[0]
		}
	case 2:
		schemas = parts[:1]
		shown = parts[0] + "." + parts[1]
	default:
		return nil, fmt.Errorf("parsing table name %q: want table or schema.table", name)
	}

	var (
		oid         uint32
		nsp, rel    string
		kind, ident string
		tuples      int64
		usage, sel  bool
	)
	err = queryRow(ctx, q, `SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relreplident::text,
			c.reltuples::int8, has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = $1 AND n.nspname = ANY($2::text[])
		ORDER BY array_position($2::text[], n.nspname::text) LIMIT 1`,
		[]any{parts[len(parts)-1], schemas}, &oid, &nsp, &rel, &kind, &ident, &tuples, &usage, &sel)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, &NotFoundError{Table: shown}
	}
	if err != nil {
		return nil, fmt.Errorf("looking up table %q: %w", name, err)
	}
	t := &Table{
		Rel:           &event.Relation{OID: oid, Schema: nsp, Table: rel, Identity: ident[0]},
		EstimatedRows: tuples,
		partitioned:   kind == "p",
	}
	if kind != "r" && kind != "p" {
		return nil, fmt.Errorf("reading %q: it is %s, not a table", t.Name(), relkindName(kind))
	}
	if !usage {
		return nil, &PermissionError{Table: t.Name(), Role: role, Grant: "USAGE ON SCHEMA " + pgx.Identifier{nsp}.Sanitize()}
	}
	return &tableInfo{oid: oid, table: t, role: role, canSelect: sel}, nil
}

func relkindName(kind string) string {
	switch kind {
	case "v":
		return "a view"
	case "m":
		return "a materialized view"
	case "f":
		return "a foreign table"
	case "S":
		return "a sequence"
	case "i", "I":
		return "an index"
	case "c":
		return "a composite type"
	}
	return "relation kind " + kind
}

type columnInfo struct {
	attnum    int16
	name      string
	typeOID   uint32
	typmod    int32
	notNull   bool
	canSelect bool
}

// describeColumns lists the columns a read returns: live, not generated.
func describeColumns(ctx context.Context, q catalog.Querier, oid uint32) ([]columnInfo, error) {
	rows, err := q.Query(ctx, `SELECT a.attnum, a.attname::text, a.atttypid, a.atttypmod, a.attnotnull,
			has_column_privilege(a.attrelid, a.attnum, 'SELECT')
		FROM pg_catalog.pg_attribute a
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
		ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("listing columns: %w", err)
	}
	var cols []columnInfo
	for rows.Next() {
		var c columnInfo
		if err := rows.Scan(&c.attnum, &c.name, &c.typeOID, &c.typmod, &c.notNull, &c.canSelect); err != nil {
			return nil, fmt.Errorf("listing columns: %w", err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing columns: %w", err)
	}
	return cols, nil
}

type indexInfo struct {
	name               string
	primary, replident bool
	attnums            []int16
}

// chooseKey sets t.Key and t.KeyIndex from the best usable unique index.
func chooseKey(ctx context.Context, q catalog.Querier, oid uint32, t *Table, cols []columnInfo) error {
	rows, err := q.Query(ctx, `SELECT ci.relname::text, i.indisprimary, i.indisreplident,
			(i.indkey::int2[])[0:i.indnkeyatts - 1]
		FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ci ON ci.oid = i.indexrelid
		WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indimmediate
			AND i.indexprs IS NULL AND i.indpred IS NULL`, oid)
	if err != nil {
		return fmt.Errorf("listing indexes: %w", err)
	}
	var candidates []indexInfo
	for rows.Next() {
		var ix indexInfo
		if err := rows.Scan(&ix.name, &ix.primary, &ix.replident, &ix.attnums); err != nil {
			return fmt.Errorf("listing indexes: %w", err)
		}
		candidates = append(candidates, ix)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing indexes: %w", err)
	}
	rank := func(ix indexInfo) int {
		switch {
		case ix.replident && t.Rel.Identity == event.IdentityIndex:
			return 0
		case ix.primary:
			return 1
		}
		return 2
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		if len(a.attnums) != len(b.attnums) {
			return len(a.attnums) < len(b.attnums)
		}
		return a.name < b.name
	})
next:
	for _, ix := range candidates {
		key := make([]int, 0, len(ix.attnums))
		for _, attnum := range ix.attnums {
			i := columnByAttnum(cols, attnum)
			// A key column must be read (not generated) and never NULL, or
			// keyset pagination would skip rows.
			if i < 0 || !cols[i].notNull {
				continue next
			}
			key = append(key, i)
		}
		if len(key) == 0 {
			continue
		}
		t.Key, t.KeyIndex = key, ix.name
		return nil
	}
	return nil
}

func columnByAttnum(cols []columnInfo, attnum int16) int {
	for i, c := range cols {
		if c.attnum == attnum {
			return i
		}
	}
	return -1
}

// queryRow runs a query expected to return one row and scans it.
func queryRow(ctx context.Context, q catalog.Querier, sql string, args []any, dst ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dst...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}
