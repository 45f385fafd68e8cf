package source

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/route"
)

// Each slot has a publication of its own by default, named after the slot,
// and pgfeed marks the publications it creates with a comment naming the
// slot. It changes only those: a publication someone else made, or made
// for another slot, may feed other consumers, and narrowing it would
// silently stop their changes.

// ownerComment is the comment on a publication pgfeed created for slot.
func ownerComment(slot string) string { return "pgfeed: the publication of slot " + slot }

// publication is what the catalog says of one publication.
type publication struct {
	exists    bool
	allTables bool
	viaRoot   bool
	comment   string
}

// ownedBy reports whether pgfeed created the publication for slot. One
// named after the slot without a comment is from before the comments.
func (p publication) ownedBy(name, slot string) bool {
	return p.comment == ownerComment(slot) || (p.comment == "" && name == slot)
}

func readPublication(ctx context.Context, conn *pgx.Conn, name string) (publication, error) {
	var p publication
	var comment *string
	err := conn.QueryRow(ctx, `SELECT puballtables, pubviaroot, obj_description(oid, 'pg_publication')
		FROM pg_publication WHERE pubname = $1`, name).Scan(&p.allTables, &p.viaRoot, &comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return p, explainSQL(err, "reading publication "+name)
	}
	p.exists = true
	if comment != nil {
		p.comment = *comment
	}
	return p, nil
}

// pubForm is the shape of the publication a selection needs: FOR ALL
// TABLES and FOR TABLES IN SCHEMA keep "every table, now and later" true
// by themselves; a list of tables is kept true by the table watcher.
type pubForm struct {
	allTables bool
	schemas   []string
	tables    []tableName
	filters   map[tableName]string // row filters, as PostgreSQL deparsed them
}

func (f pubForm) String() string {
	switch {
	case f.allTables:
		return "FOR ALL TABLES"
	case f.schemas != nil:
		quoted := make([]string, len(f.schemas))
		for i, s := range f.schemas {
			quoted[i] = pgx.Identifier{s}.Sanitize()
		}
		return "FOR TABLES IN SCHEMA " + strings.Join(quoted, ", ")
	case len(f.tables) == 0:
		return ""
	}
	list := make([]string, len(f.tables))
	for i, t := range f.tables {
		list[i] = t.sql()
		if where, ok := f.filters[t]; ok {
			list[i] += " WHERE (" + where + ")"
		}
	}
	return "FOR TABLE " + strings.Join(list, ", ")
}

// wantedForm decides the publication's shape for the stream's selection.
func wantedForm(ctx context.Context, conn *pgx.Conn, cfg *Config, version int) (pubForm, error) {
	var f pubForm
	if len(cfg.Filters) == 0 {
		if cfg.selection.allTables() {
			return pubForm{allTables: true}, nil
		}
		if schemas, ok := cfg.selection.wholeSchemas(); ok && version >= 150000 {
			return pubForm{schemas: schemas}, nil
		}
	}
	sel := cfg.selection
	if sel.everything() {
		// A publication FOR ALL TABLES cannot filter rows: list the tables.
		sel.include = allPattern
	}
	tables, err := resolveTables(ctx, conn, sel)
	if err != nil {
		return f, err
	}
	f.tables = tables
	if len(cfg.Filters) > 0 {
		if f.filters, err = checkFilters(ctx, conn, cfg, tables, version); err != nil {
			return f, err
		}
	}
	return f, nil
}

// ensurePublication checks the stream's publication and, with Create,
// creates it or brings one pgfeed owns in line with the selection. It
// returns the tables that were added to a list (they were not streamed
// until now, so their rows may need a backfill), and whether the
// publication is a list of tables that pgfeed keeps up to date.
func ensurePublication(ctx context.Context, conn *pgx.Conn, cfg *Config, version int) (added []tableName, listed bool, err error) {
	pub, err := readPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return nil, false, err
	}
	name := cfg.Publication
	if !pub.exists && !cfg.Create {
		return nil, false, &UserError{Msg: fmt.Sprintf("publication %q does not exist: pass --create, or run CREATE PUBLICATION %s FOR ALL TABLES", name, pgx.Identifier{name}.Sanitize())}
	}
	owned := !pub.exists || pub.ownedBy(name, cfg.Slot)
	if !owned || !cfg.Create {
		if len(cfg.Filters) > 0 && !owned {
			return nil, false, &UserError{Msg: fmt.Sprintf("row filters need a publication that pgfeed manages, and publication %q was not created by pgfeed for slot %q: leave the publication setting out (slot %s then gets a publication of its own)", name, cfg.Slot, cfg.Slot)}
		}
		return nil, false, checkCoverage(ctx, conn, cfg, pub, owned)
	}
	want, err := wantedForm(ctx, conn, cfg, version)
	if err != nil {
		return nil, false, err
	}
	listed = !want.allTables && want.schemas == nil
	before, err := publishedTables(ctx, conn, name)
	if err != nil {
		return nil, false, err
	}
	if pub.exists && pub.comment == ownerComment(cfg.Slot) && (pub.viaRoot || version < 130000) && sameList(pub, want, before) {
		return nil, listed, nil // already as wanted: no catalog change, no WAL, no cache invalidation
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := alignPublication(ctx, tx.Conn(), cfg, pub, want, version); err != nil {
			return err
		}
		return execOne(ctx, tx.Conn(), "COMMENT ON PUBLICATION "+pgx.Identifier{name}.Sanitize()+" IS "+quoteLiteral(ownerComment(cfg.Slot)))
	})
	if err != nil {
		return nil, false, explainSQL(err, "setting up publication "+name)
	}
	if !pub.exists {
		cfg.Logger.Info("created publication", "publication", name, "tables", want.String())
		return nil, listed, nil
	}
	for _, t := range want.tables {
		if !before[t] {
			added = append(added, t)
		}
	}
	return added, listed, nil
}

// sameList reports whether an existing list publication already holds
// exactly the wanted tables, with no row filter to compare.
func sameList(pub publication, want pubForm, in map[tableName]bool) bool {
	if pub.allTables || want.allTables || want.schemas != nil || len(want.filters) > 0 || len(want.tables) != len(in) {
		return pub.allTables && want.allTables
	}
	for _, t := range want.tables {
		if !in[t] {
			return false
		}
	}
	return len(want.tables) > 0
}

// alignPublication creates the publication or changes it to want, in the
// caller's transaction. FOR ALL TABLES cannot be altered into another
// shape (nor back): the publication is dropped and created again in the
// same transaction, so that decoding never finds it missing.
func alignPublication(ctx context.Context, conn *pgx.Conn, cfg *Config, pub publication, want pubForm, version int) error {
	name := pgx.Identifier{cfg.Publication}.Sanitize()
	with := ""
	if version >= 130000 {
		with = " WITH (publish_via_partition_root = true)"
	}
	switch {
	case pub.exists && pub.allTables && want.allTables:
	case pub.exists && !pub.allTables && !want.allTables && (want.schemas != nil || len(want.tables) > 0):
		// SET replaces the whole list, schemas and tables alike.
		stmt := strings.Replace(want.String(), "FOR ", "SET ", 1)
		if err := execOne(ctx, conn, "ALTER PUBLICATION "+name+" "+stmt); err != nil {
			return err
		}
	default:
		if pub.exists {
			if err := execOne(ctx, conn, "DROP PUBLICATION "+name); err != nil {
				return err
			}
		}
		return execOne(ctx, conn, "CREATE PUBLICATION "+name+" "+want.String()+with)
	}
	if with != "" && !pub.viaRoot {
		return execOne(ctx, conn, "ALTER PUBLICATION "+name+" SET (publish_via_partition_root = true)")
	}
	return nil
}

// checkCoverage verifies that a publication the stream may not change
// holds every selected table: otherwise its changes would silently never
// come.
func checkCoverage(ctx context.Context, conn *pgx.Conn, cfg *Config, pub publication, owned bool) error {
	if pub.allTables || cfg.selection.everything() {
		return nil
	}
	tables, err := resolveTables(ctx, conn, cfg.selection)
	if err != nil {
		return err
	}
	in, err := publishedTables(ctx, conn, cfg.Publication)
	if err != nil {
		return err
	}
	name := cfg.Publication
	if !pub.viaRoot {
		// Without publish_via_partition_root the changes of a partitioned
		// table come under its partitions' names, which the globs that
		// name the parent do not match: they would silently never come.
		for _, t := range tables {
			var partitioned bool
			err := conn.QueryRow(ctx, `SELECT c.relkind = 'p' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE n.nspname = $1 AND c.relname = $2`, t.schema, t.table).Scan(&partitioned)
			if err != nil {
				return explainSQL(err, "reading table "+t.String())
			}
			if partitioned {
				return &UserError{Msg: fmt.Sprintf("%s is partitioned, and publication %q publishes its changes under the partitions' names (publish_via_partition_root is off): run ALTER PUBLICATION %s SET (publish_via_partition_root = true), or leave --publication out so that slot %s gets a publication of its own", t, name, pgx.Identifier{name}.Sanitize(), cfg.Slot)}
			}
		}
	}
	for _, t := range tables {
		if in[t] {
			continue
		}
		fix := "pass --create"
		if !owned {
			fix = fmt.Sprintf("pgfeed does not change a publication it did not create for slot %s; leave --publication out to give the slot a publication of its own", cfg.Slot)
		}
		return &UserError{Msg: fmt.Sprintf("table %s is not in publication %q: run ALTER PUBLICATION %s ADD TABLE %s, or %s", t, name, pgx.Identifier{name}.Sanitize(), t.sql(), fix)}
	}
	return nil
}

// publishedTables lists the tables a publication publishes, as
// pg_publication_tables has them (with publish_via_partition_root, the
// roots of partitioned tables).
func publishedTables(ctx context.Context, conn *pgx.Conn, name string) (map[tableName]bool, error) {
	rows, err := conn.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1", name)
	if err != nil {
		return nil, explainSQL(err, "reading the tables of publication "+name)
	}
	in := map[tableName]bool{}
	for rows.Next() {
		var t tableName
		if err := rows.Scan(&t.schema, &t.table); err != nil {
			return nil, explainSQL(err, "reading the tables of publication "+name)
		}
		in[t] = true
	}
	return in, explainIf(rows.Err(), "reading the tables of publication "+name)
}

// checkFilters has PostgreSQL parse each row filter on its own, in a
// publication created and rolled back in a transaction, and returns the
// filters as PostgreSQL deparsed them. A filter is operator input, but it
// is never pasted into SQL as written: only one expression that PostgreSQL
// itself printed goes into the real publication, so a filter cannot add a
// statement, a table or a comment to it.
func checkFilters(ctx context.Context, conn *pgx.Conn, cfg *Config, tables []tableName, version int) (map[tableName]string, error) {
	if version < 150000 {
		return nil, &UserError{Msg: fmt.Sprintf("row filters need PostgreSQL 15 or later (server is %d): remove the filter settings", version)}
	}
	selected := map[tableName]bool{}
	for _, t := range tables {
		selected[t] = true
	}
	out := map[tableName]string{}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, explainSQL(err, "checking row filters")
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	check := pgx.Identifier{"pgfeed_filter_check_" + cfg.Slot}.Sanitize()
	for key, where := range cfg.Filters {
		schema, table, _ := strings.Cut(key, ".")
		t := tableName{schema, table}
		if !selected[t] {
			return nil, &UserError{Msg: fmt.Sprintf("row filter of %s: no such table among the source's tables (check the name; it is case-sensitive)", key)}
		}
		if _, err := tx.Exec(ctx, "SAVEPOINT filter"); err != nil {
			return nil, explainSQL(err, "checking row filters")
		}
		if err := execOne(ctx, conn, "CREATE PUBLICATION "+check+" FOR TABLE "+t.sql()+" WHERE ("+where+") WITH (publish_via_partition_root = true)"); err != nil {
			return nil, &UserError{Msg: fmt.Sprintf("row filter of %s is not one valid expression on that table: %s", key, pgMessage(err)), Err: err}
		}
		var n int
		var deparsed *string
		err := conn.QueryRow(ctx, "SELECT count(*) OVER (), rowfilter FROM pg_publication_tables WHERE pubname = $1 LIMIT 1",
			"pgfeed_filter_check_"+cfg.Slot).Scan(&n, &deparsed)
		if err != nil {
			return nil, explainSQL(err, "checking row filters")
		}
		if n != 1 || deparsed == nil {
			return nil, &UserError{Msg: fmt.Sprintf("row filter of %s is not one expression on that table: write a single condition such as status <> 'draft'", key)}
		}
		out[t] = *deparsed
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT filter"); err != nil {
			return nil, explainSQL(err, "checking row filters")
		}
	}
	return out, nil
}

// execOne runs one statement over the extended protocol, which refuses a
// string holding more than one.
func execOne(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
	return err
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

func explainIf(err error, what string) error {
	if err == nil {
		return nil
	}
	return explainSQL(err, what)
}

// allPattern selects every table.
var allPattern = []route.TablePattern{{Schema: "*", Table: "*"}}
