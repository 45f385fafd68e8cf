package source

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/route"
)

// OwnSchema is the schema of pgfeed's own tables in the source database
// (backfill requests). Its tables are never streamed, snapshotted or
// published for a glob.
const OwnSchema = "pgfeed"

// tableSelection is what Config.Tables and Config.Exclude select: globs
// matched on schema and table separately, against names as PostgreSQL
// stores them (any character, "/" and spaces included).
type tableSelection struct {
	include, exclude []route.TablePattern
}

func newTableSelection(include, exclude []string) (tableSelection, error) {
	var s tableSelection
	for _, list := range []struct {
		globs []string
		dst   *[]route.TablePattern
		flag  string
	}{{include, &s.include, "--tables"}, {exclude, &s.exclude, "exclude"}} {
		for _, g := range list.globs {
			p, err := route.ParseTablePattern(g)
			if err != nil {
				return s, &UserError{Msg: fmt.Sprintf("invalid table pattern %q in %s: %v", g, list.flag, err)}
			}
			*list.dst = append(*list.dst, p)
		}
	}
	return s, nil
}

// everything reports whether the selection names no tables: every table
// of the publication.
func (s tableSelection) everything() bool { return len(s.include) == 0 }

// match reports whether the table schema.table is selected.
func (s tableSelection) match(schema, table string) bool {
	if schema == OwnSchema {
		return false
	}
	in := len(s.include) == 0
	for _, p := range s.include {
		if p.Match(schema, table) {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	for _, p := range s.exclude {
		if p.Match(schema, table) {
			return false
		}
	}
	return true
}

// allTables reports whether the selection is every table of the database,
// which a publication FOR ALL TABLES keeps true for tables created later.
func (s tableSelection) allTables() bool {
	if len(s.exclude) > 0 {
		return false
	}
	for _, p := range s.include {
		if p.Schema == "*" && p.Table == "*" {
			return true
		}
	}
	return len(s.include) == 0
}

// wholeSchemas returns the schemas when the selection is every table of
// some schemas ("public.*", "app.*"), which a publication FOR TABLES IN
// SCHEMA keeps true for tables created later.
func (s tableSelection) wholeSchemas() ([]string, bool) {
	if len(s.exclude) > 0 || len(s.include) == 0 {
		return nil, false
	}
	var schemas []string
	for _, p := range s.include {
		if p.Table != "*" || hasWildcard(p.Schema) || p.Schema == OwnSchema {
			return nil, false
		}
		schemas = append(schemas, p.Schema)
	}
	return schemas, true
}

func hasWildcard(g string) bool { return strings.ContainsAny(g, `*?[\`) }

// tableName is a schema-qualified table.
type tableName struct{ schema, table string }

func (t tableName) String() string { return t.schema + "." + t.table }
func (t tableName) sql() string    { return pgx.Identifier{t.schema, t.table}.Sanitize() }

// resolveTables lists the user tables the selection matches now. A name
// without wildcards that matches nothing is an error: the user named a
// table that is not there. A partition is left out when one of its
// ancestors is selected: with publish_via_partition_root its changes come
// under the ancestor's name, and a snapshot of the ancestor reads its rows.
func resolveTables(ctx context.Context, conn *pgx.Conn, sel tableSelection) ([]tableName, error) {
	rows, err := conn.Query(ctx, `SELECT c.oid, n.nspname, c.relname,
			CASE WHEN c.relispartition THEN ARRAY(SELECT a.relid::oid FROM pg_partition_ancestors(c.oid) a WHERE a.relid <> c.oid) ELSE '{}'::oid[] END
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		return nil, explainSQL(err, "listing tables")
	}
	type rel struct {
		oid       uint32
		name      tableName
		ancestors []uint32
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (rel, error) {
		var t rel
		return t, r.Scan(&t.oid, &t.name.schema, &t.name.table, &t.ancestors)
	})
	if err != nil {
		return nil, explainSQL(err, "listing tables")
	}
	selected := map[uint32]bool{}
	for _, t := range all {
		if sel.match(t.name.schema, t.name.table) {
			selected[t.oid] = true
		}
	}
	for _, p := range sel.include {
		if hasWildcard(p.Schema) || hasWildcard(p.Table) {
			continue
		}
		found := false
		for _, t := range all {
			found = found || (t.name.schema == p.Schema && t.name.table == p.Table)
		}
		if !found {
			return nil, &UserError{Msg: fmt.Sprintf("table %q does not exist: check --tables (names are case-sensitive)", p.String())}
		}
	}
	var out []tableName
	for _, t := range all {
		if !selected[t.oid] {
			continue
		}
		covered := false
		for _, a := range t.ancestors {
			covered = covered || selected[a]
		}
		if !covered {
			out = append(out, t.name)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}
