package snapshot

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

func TestDescribe(t *testing.T) {
	ctx := testCtx(t)
	_, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TYPE mood AS ENUM ('sad', 'ok')`,
		`CREATE TABLE pk (a int, b text, dropme int, c mood, g int GENERATED ALWAYS AS (a * 2) STORED, PRIMARY KEY (b, a))`,
		`ALTER TABLE pk DROP COLUMN dropme`,
		`CREATE TABLE ri (id int PRIMARY KEY, code text NOT NULL UNIQUE)`,
		`ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_code_key`,
		`CREATE TABLE uq (x int UNIQUE, y int NOT NULL, z int NOT NULL, UNIQUE (y, z), UNIQUE (z))`,
		`CREATE TABLE nokey (x int UNIQUE, y text)`,
		`CREATE SCHEMA "My Schema"`,
		`CREATE TABLE "My Schema"."Ta.ble" ("Id" bigint PRIMARY KEY)`,
		`CREATE SCHEMA other`,
		`CREATE TABLE other.pk (z int PRIMARY KEY)`,
	)
	tests := []struct {
		name, table string
		cols        []string
		types       []string
		key         []string
		identity    byte
		// eventKey are the columns of the events' key, when not the walking
		// key: without primary key or replica identity index, every column.
		eventKey []string
	}{
		{"composite primary key, dropped and generated columns skipped", "pk",
			[]string{"a", "b", "c"}, []string{"integer", "text", "mood"}, []string{"b", "a"}, event.IdentityDefault, nil},
		{"replica identity index before primary key", "public.ri",
			[]string{"id", "code"}, []string{"integer", "text"}, []string{"code"}, event.IdentityIndex, nil},
		{"unique not-null index with fewest columns", "uq",
			[]string{"x", "y", "z"}, []string{"integer", "integer", "integer"}, []string{"z"}, event.IdentityDefault, []string{"x", "y", "z"}},
		{"nullable unique index is no key", "nokey",
			[]string{"x", "y"}, []string{"integer", "text"}, nil, event.IdentityDefault, []string{"x", "y"}},
		{"quoted identifiers", `"My Schema"."Ta.ble"`,
			[]string{"Id"}, []string{"bigint"}, []string{"Id"}, event.IdentityDefault, nil},
		{"unquoted names fold to lower case", `OTHER.PK`,
			[]string{"z"}, []string{"integer"}, []string{"z"}, event.IdentityDefault, nil},
	}
	types := catalog.NewTypes()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := Describe(ctx, conn, types, tt.table)
			if err != nil {
				t.Fatal(err)
			}
			var cols, typs []string
			for _, c := range tab.Rel.Columns {
				cols = append(cols, c.Name)
				typs = append(typs, c.Type.Name)
			}
			if strings.Join(cols, ",") != strings.Join(tt.cols, ",") || strings.Join(typs, ",") != strings.Join(tt.types, ",") {
				t.Errorf("columns %v %v, want %v %v", cols, typs, tt.cols, tt.types)
			}
			if got := tab.KeyNames(); strings.Join(got, ",") != strings.Join(tt.key, ",") {
				t.Errorf("key %v (index %q), want %v", got, tab.KeyIndex, tt.key)
			}
			if tab.Rel.Identity != tt.identity {
				t.Errorf("identity %c, want %c", tab.Rel.Identity, tt.identity)
			}
			var keyFlags []string
			for _, i := range tab.Rel.KeyColumns() {
				keyFlags = append(keyFlags, tab.Rel.Columns[i].Name)
			}
			wantFlags := tt.eventKey
			if wantFlags == nil {
				wantFlags = tt.key
			}
			if !sameSet(keyFlags, wantFlags) || tab.Rel.NoKey != (tt.eventKey != nil) {
				t.Errorf("Key flags on %v (NoKey %v), want %v", keyFlags, tab.Rel.NoKey, wantFlags)
			}
			if (tab.NoKey() == nil) != (len(tt.key) > 0) {
				t.Errorf("NoKey() = %v with key %v", tab.NoKey(), tt.key)
			}
		})
	}

	// The search_path decides where an unqualified name is found.
	pgtest.Exec(t, conn, "SET search_path = other, public")
	tab, err := Describe(ctx, conn, types, "pk")
	if err != nil || tab.Name() != "other.pk" {
		t.Fatalf("pk on search_path other,public: %v, %v", tab, err)
	}
	pgtest.Exec(t, conn, "RESET search_path")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestDescribeBadInput(t *testing.T) {
	ctx := testCtx(t)
	_, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE secret (id int PRIMARY KEY, v text)`,
		`CREATE TABLE partly (id int PRIMARY KEY, v text)`,
		`CREATE SCHEMA hidden`,
		`CREATE TABLE hidden.t (id int PRIMARY KEY)`,
		`CREATE VIEW v AS SELECT 1 AS one`,
		`DO $$ BEGIN CREATE ROLE snapshot_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
		`GRANT SELECT (id, v) ON partly TO snapshot_reader`,
		`GRANT SELECT ON hidden.t TO snapshot_reader`,
	)
	tests := []struct {
		table, role string
		want        string
		sqlstate    string
	}{
		{"public.nope", "", `table "public.nope" does not exist`, "42P01"},
		{"nope", "", `table "public.nope" does not exist`, "42P01"},
		{`"Secret"`, "", `table "public.Secret" does not exist`, "42P01"},
		{"v", "", `it is a view, not a table`, ""},
		{"a.b.c", "", `want table or schema.table`, ""},
		{`"unterminated`, "", `parsing table name`, "22023"},
		{"secret", "snapshot_reader", `role "snapshot_reader" lacks SELECT ON "public"."secret"; run GRANT SELECT ON "public"."secret" TO "snapshot_reader"`, "42501"},
		{"hidden.t", "snapshot_reader", `lacks USAGE ON SCHEMA "hidden"`, "42501"},
		{"partly", "snapshot_reader", "", ""}, // column grants cover every column
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			if tt.role != "" {
				pgtest.Exec(t, conn, "SET ROLE "+tt.role)
				defer pgtest.Exec(t, conn, "RESET ROLE")
			}
			_, err := Describe(ctx, conn, nil, tt.table)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if tt.sqlstate != "" {
				var st interface{ SQLState() string }
				if !errors.As(err, &st) || st.SQLState() != tt.sqlstate {
					t.Errorf("SQLSTATE of %v: want %s", err, tt.sqlstate)
				}
			}
			var pgErr *pgconn.PgError
			if tt.sqlstate == "22023" && !errors.As(err, &pgErr) {
				t.Errorf("the server's error is not kept in %v", err)
			}
		})
	}
}
