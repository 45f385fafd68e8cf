package formatcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/source"
)

var pg *pgcluster.Cluster

// A small logical_decoding_work_mem makes the large transaction of the
// workload one that pgoutput streams while in progress (protocol 2) and
// the plugin spills to disk: both must still agree.
func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &pg, pgcluster.Options{Settings: map[string]string{"logical_decoding_work_mem": "'64kB'"}}))
}

// trustWal2JSON adds wal2json to the trusted output plugins on servers
// that have the list (output_plugin_libraries, in some distributions'
// builds): without it, no one may decode with it.
func trustWal2JSON(ctx context.Context, t *testing.T) {
	t.Helper()
	c := pgtest.Connect(t, pg.DSN(""))
	var list string
	err := c.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'`).Scan(&list)
	if errors.Is(err, pgx.ErrNoRows) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(list, "wal2json") {
		return
	}
	var libs []string
	for _, l := range append(strings.Split(list, ","), "wal2json") {
		if l = strings.TrimSpace(l); l != "" {
			libs = append(libs, "'"+strings.ReplaceAll(l, "'", "''")+"'")
		}
	}
	pgtest.Exec(t, c, "ALTER SYSTEM SET output_plugin_libraries = "+strings.Join(libs, ", "), `SELECT pg_reload_conf()`)
	for i := 0; i < 100; i++ {
		_ = c.QueryRow(ctx, `SHOW output_plugin_libraries`).Scan(&list)
		if strings.Contains(list, "wal2json") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("output_plugin_libraries is still %q after a reload", list)
}

// schemaSQL makes tables of many types under each replica identity. No
// non-key column is NOT NULL: pgoutput does not say which are (see the
// README's differences), and include-not-null is compared here.
var schemaSQL = []string{
	`CREATE SCHEMA cmp`,
	`CREATE TYPE cmp.mood AS ENUM ('sad', 'ok', 'happy')`,
	`CREATE DOMAIN cmp.posint AS integer CHECK (VALUE > 0)`,
	`CREATE DOMAIN cmp.label AS varchar(20)`,
	`CREATE TABLE cmp.types (
		id serial PRIMARY KEY,
		i2 smallint, i4 integer, i8 bigint, o oid,
		n numeric, n102 numeric(10,2), f4 real, f8 double precision,
		t text, vc varchar(30), c char(3), b boolean, by bytea,
		j json, jb jsonb, ai integer[], at text[], a2 integer[][],
		ts timestamp, ts3 timestamp(3), tz timestamptz, d date, tm time, ttz timetz,
		u uuid, ip inet, cidr cidr, mac macaddr, iv interval, iv3 interval(3), ivds interval day to second,
		m money, e cmp.mood, ea cmp.mood[], dom cmp.posint, lab cmp.label, bits bit(4), vb varbit(8),
		x xml, pt point, r int4range, ch "char"
	)`,
	`CREATE TABLE cmp.full (id integer, v text, n numeric)`,
	`ALTER TABLE cmp.full REPLICA IDENTITY FULL`,
	`CREATE TABLE cmp.fullpk (id integer PRIMARY KEY, v text)`,
	`ALTER TABLE cmp.fullpk REPLICA IDENTITY FULL`,
	`CREATE TABLE cmp.idx (id integer, code text NOT NULL, v text)`,
	`CREATE UNIQUE INDEX idx_code ON cmp.idx (code)`,
	`ALTER TABLE cmp.idx REPLICA IDENTITY USING INDEX idx_code`,
	`CREATE TABLE cmp.nothing (id integer PRIMARY KEY, v text)`,
	`ALTER TABLE cmp.nothing REPLICA IDENTITY NOTHING`,
	`CREATE TABLE cmp.toast (id integer PRIMARY KEY, big text, small integer)`,
	`ALTER TABLE cmp.toast ALTER COLUMN big SET STORAGE EXTERNAL`,
	`CREATE TABLE cmp.trunc (id integer PRIMARY KEY)`,
	`CREATE TABLE cmp."Odd Name" ("Col ""q""" integer PRIMARY KEY, "ü" text)`,
	`CREATE TABLE cmp.big (id integer PRIMARY KEY, pad text)`,
}

// workload is the WAL both readers decode: each string is one transaction.
var workload = []string{
	`INSERT INTO cmp.types (i2, i4, i8, o, n, n102, f4, f8, t, vc, c, b, by, j, jb, ai, at, a2,
		ts, ts3, tz, d, tm, ttz, u, ip, cidr, mac, iv, iv3, ivds, m, e, ea, dom, lab, bits, vb, x, pt, r, ch)
	VALUES (-32768, 2147483647, -9223372036854775808, 4294967295, 12345678901234567890.123456789, 12.5, 1.5, 0.1,
		E'tab\there "quoted" \\ back\nline ü 陿', 'varchar', 'ab', true, '\x00ff10', '{"a": [1, 2.5, null], "b": "x"}',
		'{"z": 1, "a": {"k": true}}', '{1,NULL,3}', '{"a b",NULL,"c\"d"}', '{{1,2},{3,4}}',
		'2026-11-23 04:56:29.368123', '2026-11-23 04:56:29.368', '2026-11-23 04:56:29.368123+05:30', '2026-11-23',
		'04:56:29.368123', '04:56:29+05:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8',
		'08:00:2b:01:02:03', '1 year 2 mons 3 days 04:05:06.789', '1 day 00:00:01.2345', '3 days 01:02:03', 12.34,
		'happy', '{sad,ok}', 7, 'lbl', B'1010', B'101', '<a>x</a>', '(1.5,2)', '[1,10)', 'q')`,
	`INSERT INTO cmp.types (n, f4, f8, d, ts, tz) VALUES ('NaN', 'NaN', 'Infinity', 'infinity', '-infinity', 'infinity'),
		('Infinity', '-Infinity', '-Infinity', '0044-03-15 BC', '1969-12-31 23:59:59.999999', '2000-01-01 00:00:00+00'),
		('-Infinity', 3.4e38, 1e-300, NULL, NULL, NULL)`,
	`INSERT INTO cmp.types DEFAULT VALUES`,
	`UPDATE cmp.types SET t = 'changed', b = false, f8 = 'NaN' WHERE id = 1`,
	`UPDATE cmp.types SET id = 100 WHERE id = 2`,
	`DELETE FROM cmp.types WHERE id = 3`,
	`INSERT INTO cmp.full VALUES (1, 'one', 1.5), (2, NULL, NULL)`,
	`UPDATE cmp.full SET v = 'uno' WHERE id = 1; UPDATE cmp.full SET n = 2 WHERE id = 2`,
	`DELETE FROM cmp.full WHERE id = 2`,
	`INSERT INTO cmp.fullpk VALUES (1, 'a'); UPDATE cmp.fullpk SET v = 'b'; DELETE FROM cmp.fullpk`,
	`INSERT INTO cmp.idx VALUES (1, 'k1', 'a'), (2, 'k2', 'b')`,
	`UPDATE cmp.idx SET v = 'c' WHERE code = 'k1'`,
	`UPDATE cmp.idx SET code = 'k3' WHERE code = 'k2'`,
	`DELETE FROM cmp.idx WHERE code = 'k1'`,
	`INSERT INTO cmp.nothing VALUES (1, 'x')`,
	`INSERT INTO cmp.toast VALUES (1, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 300) g), 1)`,
	`UPDATE cmp.toast SET small = 2 WHERE id = 1`,
	`UPDATE cmp.toast SET big = 'short now', small = 3 WHERE id = 1`,
	`DELETE FROM cmp.toast`,
	`INSERT INTO cmp.trunc VALUES (1), (2)`,
	`TRUNCATE cmp.trunc`,
	`INSERT INTO cmp.trunc VALUES (3); TRUNCATE cmp.trunc, cmp.nothing`,
	`INSERT INTO cmp."Odd Name" VALUES (1, 'ü'); UPDATE cmp."Odd Name" SET "Col ""q""" = 2`,
	`SELECT pg_logical_emit_message(true, 'cmp', 'hello "world"')`,
	`SELECT pg_logical_emit_message(true, 'cmp', '\x610062'::bytea)`,
	`SELECT pg_logical_emit_message(false, 'cmp', 'not in a transaction')`,
	`INSERT INTO cmp.trunc VALUES (5); SELECT pg_logical_emit_message(true, 'cmp', 'among changes'); SELECT pg_logical_emit_message(false, 'cmp', 'at once'); INSERT INTO cmp.trunc VALUES (6)`,
	`BEGIN; INSERT INTO cmp.trunc VALUES (7); ROLLBACK`,
	`BEGIN; INSERT INTO cmp.trunc VALUES (8); SAVEPOINT s; INSERT INTO cmp.trunc VALUES (9); ROLLBACK TO s; INSERT INTO cmp.trunc VALUES (10); COMMIT`,
	// Larger than logical_decoding_work_mem: streamed by pgoutput.
	`INSERT INTO cmp.big SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g; UPDATE cmp.big SET pad = 'y' WHERE id % 3 = 0; DELETE FROM cmp.big WHERE id % 5 = 0`,
}

// optionSets are the plugin options compared, each with format-version 1
// and 2 (include-typmod only changes format-version 1).
var optionSets = []string{
	"",
	"include-xids=1,include-timestamp=1,include-lsn=1",
	"include-types=0",
	"include-type-oids=1",
	"include-typmod=0",
	"include-not-null=1",
	"include-pk=1",
	"include-xids=1,include-timestamp=1,include-lsn=1,include-type-oids=1,include-not-null=1,include-pk=1",
	"filter-tables=cmp.full,cmp.idx,*.trunc",
	`add-tables=cmp.types,cmp.toast,cmp.Odd\ Name`,
	"actions=insert,truncate",
	"actions=update,delete,include-transaction=0",
	"timezone=Asia/Kolkata,include-timestamp",
	"timezone=America/St_Johns,include-timestamp,include-xids",
}

// TestWal2JSONMatchesPlugin decodes one stretch of WAL twice: through the
// real wal2json plugin (pg_logical_slot_peek_changes on a wal2json slot,
// once per option set) and through pgfeed (pgoutput via source.Open on a
// slot created at the same point, then the wal2json and wal2json2
// encoders with the same options). After JSON parsing, the two must be
// equal, but for the differences the README lists, which normalize undoes
// one by one.
func TestWal2JSONMatchesPlugin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	trustWal2JSON(ctx, t)
	dsn := pgtest.CreateDB(t, pg, "wal2json_cmp")
	admin := pgtest.Connect(t, dsn)
	pgtest.Exec(t, admin, schemaSQL...)

	// Both slots start here; pgfeed's publication, made by Open, comes
	// before the workload and is in the pgoutput slot's past.
	if _, err := admin.Exec(ctx, `SELECT pg_create_logical_replication_slot('cmp_pgfeed', 'pgoutput')`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, `SELECT pg_create_logical_replication_slot('cmp_wal2json', 'wal2json')`); err != nil {
		if strings.Contains(err.Error(), "wal2json") && os.Getenv("CI") != "true" {
			t.Skipf("the wal2json plugin is not installed (scripts/setup.sh installs it): %v", err)
		}
		t.Fatalf("creating a wal2json slot (scripts/setup.sh installs the plugin): %v", err)
	}
	if _, err := admin.Exec(ctx, `CREATE PUBLICATION cmp_pgfeed FOR TABLES IN SCHEMA cmp`); err != nil {
		t.Fatal(err)
	}
	for _, sql := range workload {
		_, err := admin.Exec(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var end event.LSN
	var endText string
	if err := admin.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endText); err != nil {
		t.Fatal(err)
	}
	end, err := event.ParseLSN(endText)
	if err != nil {
		t.Fatal(err)
	}
	events := readPgfeedSlot(ctx, t, dsn, "cmp_pgfeed", end)

	// The plugin's session prints values with pgfeed's session settings
	// (UTC, ISO dates, hex bytea), as pgfeed's walsender does.
	conn, err := source.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	for _, opts := range optionSets {
		parsed, err := encode.ParseWal2JSONOptions(opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, version := range []int{1, 2} {
			name := fmt.Sprintf("v%d/%s", version, opts)
			if opts == "" {
				name += "defaults"
			}
			t.Run(name, func(t *testing.T) {
				want := readPlugin(ctx, t, conn, version, opts, endText)
				var got []string
				if version == 1 {
					got = encodeV1(t, events, parsed)
				} else {
					got = encodeV2(t, events, parsed)
				}
				compare(t, normalize(want, version, true), normalize(got, version, false))
				if os.Getenv("FORMATCHECK_DUMP") != "" {
					t.Logf("plugin:\n%s\npgfeed:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
			})
		}
	}
}

// readPgfeedSlot streams a pgoutput slot (and its publication of the same
// name) up to end, begin and commit events included, as pgfeed stream does.
func readPgfeedSlot(ctx context.Context, t *testing.T, dsn, slot string, end event.LSN) []*event.Event {
	t.Helper()
	s, err := source.Open(ctx, source.Config{DSN: dsn, Slot: slot, Publication: slot, Transactions: true, EndLSN: end})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var events []*event.Event
	for {
		e, err := s.Next(ctx)
		if errors.Is(err, io.EOF) {
			if st := s.Stats(); st.StreamedTxns == 0 {
				t.Errorf("no transaction was streamed in progress (protocol %d): the large one should be", st.ProtocolVerion)
			}
			return events
		}
		if err != nil {
			t.Fatalf("reading the pgoutput slot: %v", err)
		}
		events = append(events, e)
	}
}

// readPlugin peeks at the wal2json slot (so that every option set reads
// the same changes) and returns one JSON text per output row.
func readPlugin(ctx context.Context, t *testing.T, conn *pgx.Conn, version int, opts, upto string) []string {
	t.Helper()
	args := []any{upto, "format-version", fmt.Sprint(version), "add-tables", "cmp.*"}
	if version == 2 {
		args = append(args, "actions", "insert,update,delete,truncate")
	}
	// The same options as the plugin takes them, one name and value each:
	// the lists of pgfeed's syntax go on over the commas that follow them.
	tz := "UTC"
	for _, o := range strings.Split(opts, ",") {
		if o == "" {
			continue
		}
		k, v, hasVal := strings.Cut(o, "=")
		if k == "timezone" { // pgfeed's option: the plugin's session setting
			tz = v
			continue
		}
		if n := len(args); !hasVal && n > 0 {
			switch args[n-2] {
			case "filter-tables", "add-tables":
				if strings.Contains(o, ".") {
					args[n-1] = args[n-1].(string) + "," + o
					continue
				}
			case "actions":
				if o == "insert" || o == "update" || o == "delete" || o == "truncate" {
					args[n-1] = args[n-1].(string) + "," + o
					continue
				}
			}
		}
		if !hasVal {
			v = "1"
		}
		args = append(args, k, v)
	}
	if _, err := conn.Exec(ctx, "SELECT set_config('TimeZone', $1, false)", tz); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(context.Background(), "SET TimeZone = 'UTC'")
	ph := make([]string, len(args)-1)
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+2)
	}
	rows, err := conn.Query(ctx, "SELECT data FROM pg_logical_slot_peek_changes('cmp_wal2json', $1::pg_lsn, NULL, "+strings.Join(ph, ", ")+")", args...)
	if err != nil {
		t.Fatalf("reading the wal2json slot: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("reading the wal2json slot: %v", err)
	}
	return out
}

// encodeV1 feeds every event to a wal2json encoder as pgfeed stream does
// and cuts its output into records where the encoder says a frame ends.
func encodeV1(t *testing.T, events []*event.Event, o encode.Wal2JSONOptions) []string {
	t.Helper()
	enc := encode.NewWal2JSON(o)
	var out []string
	var buf []byte
	for _, e := range events {
		var err error
		if buf, err = enc.Encode(buf, e); err != nil {
			t.Fatalf("encoding %s: %v", e.Op, err)
		}
		if !enc.InFrame() && len(buf) > 0 {
			out = append(out, string(buf))
			buf = buf[:0]
		}
	}
	return out
}

func encodeV2(t *testing.T, events []*event.Event, o encode.Wal2JSONOptions) []string {
	t.Helper()
	enc := encode.Wal2JSON2{Opts: o}
	var out []string
	for _, e := range events {
		b, err := enc.Encode(nil, e)
		if err != nil {
			t.Fatalf("encoding %s: %v", e.Op, err)
		}
		if len(b) > 0 {
			out = append(out, string(b))
		}
	}
	return out
}

// normalize parses every record and takes out what the README documents
// as different, on the side it is on: transactions with no change (the
// plugin writes one for every transaction, DDL included; pgoutput leaves
// empty ones out), and, in format-version 2, the begin's nextlsn (pgoutput
// tells it only at the commit).
func normalize(records []string, version int, plugin bool) []any {
	var out []any
	for _, r := range records {
		d := json.NewDecoder(strings.NewReader(r))
		d.UseNumber() // compare numbers as written: 12.50 is not 12.5
		var v any
		if err := d.Decode(&v); err != nil {
			out = append(out, "invalid JSON: "+r)
			continue
		}
		m, _ := v.(map[string]any)
		if version == 1 {
			if ch, ok := m["change"].([]any); ok && len(ch) == 0 {
				continue
			}
		} else if plugin && m["action"] == "B" {
			delete(m, "nextlsn")
		}
		out = append(out, v)
	}
	if version == 2 {
		// A begin right before its commit is an empty transaction.
		var kept []any
		for i := 0; i < len(out); i++ {
			if i+1 < len(out) && action(out[i]) == "B" && action(out[i+1]) == "C" {
				i++
				continue
			}
			kept = append(kept, out[i])
		}
		out = kept
	}
	return out
}

func action(v any) any {
	m, _ := v.(map[string]any)
	return m["action"]
}

func compare(t *testing.T, want, got []any) {
	t.Helper()
	n := max(len(want), len(got))
	bad := 0
	for i := 0; i < n; i++ {
		var w, g any
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if reflect.DeepEqual(w, g) {
			continue
		}
		bad++
		if bad <= 5 {
			t.Errorf("record %d differs\nplugin: %s\npgfeed: %s", i, js(w), js(g))
		}
	}
	if bad > 0 || len(want) != len(got) {
		t.Errorf("%d of %d records differ (plugin %d, pgfeed %d)", bad, n, len(want), len(got))
	}
	if len(want) < 10 {
		t.Errorf("the plugin wrote only %d records: the workload did not reach it", len(want))
	}
}

func js(v any) string {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(v)
	return strings.TrimSpace(b.String())
}
