package stream

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestSnapshotBadInput: every mistake in a snapshot request is a 4xx with
// one line naming it, and the server goes on serving.
func TestSnapshotBadInput(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "badinput")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE items (id int PRIMARY KEY, name text)`, `INSERT INTO items VALUES (1, 'a'), (2, 'b')`,
		`CREATE TABLE nokey (v int)`)
	ts := startServer(t, dsn, Options{MaxRows: 100})
	slot := ts.init(t)
	req := func(body string) string { return fmt.Sprintf(body, slot) }
	cases := []struct {
		name, body string
		status     int
		fragments  []string
	}{
		{"malformed JSON", `{"slotName":`, 400, []string{"malformed JSON"}},
		{"not an object", `[1,2]`, 400, []string{"malformed JSON"}},
		{"two values", req(`{"slotName":%q,"table":"items"} {}`), 400, []string{"more than one"}},
		{"unknown field", req(`{"slotName":%q,"table":"items","limt":5}`), 400, []string{"limt"}},
		{"no slot", `{"table":"items"}`, 400, []string{"slotName is missing"}},
		{"unknown slot", `{"slotName":"pgfeed_v1_nosuch","table":"items"}`, 404, []string{"unknown slot", "/v1/init"}},
		{"someone else's slot", `{"slotName":"other","table":"items"}`, 404, []string{"unknown slot"}},
		{"no table", req(`{"slotName":%q}`), 400, []string{"table is missing"}},
		{"unknown table", req(`{"slotName":%q,"table":"nosuch"}`), 404, []string{`"nosuch" does not exist`}},
		{"catalog table", req(`{"slotName":%q,"table":"pg_catalog.pg_authid"}`), 404, []string{"not published"}},
		{"negative limit", req(`{"slotName":%q,"table":"items","limit":-1}`), 400, []string{"limit -1 is negative"}},
		{"limit too large", req(`{"slotName":%q,"table":"items","limit":101}`), 400, []string{"above 100"}},
		{"negative offset", req(`{"slotName":%q,"table":"items","offset":-5}`), 400, []string{"offset -5"}},
		{"fractional limit", req(`{"slotName":%q,"table":"items","limit":1.5}`), 400, []string{"malformed JSON"}},
		{"unknown column", req(`{"slotName":%q,"table":"items","order_by":{"column":"nosuch","order":"ASC"}}`), 400, []string{`"nosuch" does not exist`, "id, name"}},
		{"no column", req(`{"slotName":%q,"table":"items","order_by":{"order":"ASC"}}`), 400, []string{"order_by.column is missing"}},
		{"bad order", req(`{"slotName":%q,"table":"items","order_by":{"column":"id","order":"sideways"}}`), 400, []string{"ASC or DESC"}},
		{"after without the key", req(`{"slotName":%q,"table":"items","after":{"name":"a"}}`), 400, []string{"after lacks column \"id\""}},
		{"after with extra columns", req(`{"slotName":%q,"table":"items","after":{"id":1,"x":2}}`), 400, []string{"exactly the sort columns"}},
		{"after of the wrong type", req(`{"slotName":%q,"table":"items","after":{"id":"one"}}`), 400, []string{"invalid input syntax"}},
		{"after null", req(`{"slotName":%q,"table":"items","after":{"id":null}}`), 400, []string{"null"}},
		{"after on a table without key", req(`{"slotName":%q,"table":"nokey","after":{"v":1}}`), 400, []string{"no primary key"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ts.expectError(t, "/v1/snapshot/data", c.body, c.status, c.fragments...)
		})
	}
	// A body too large.
	ts.expectError(t, "/v1/snapshot/data", `{"slotName":"`+strings.Repeat("x", 70<<10)+`"}`, 413, "larger than")
	// Wrong methods and paths.
	resp, err := http.Get(ts.url + "/v1/snapshot/data")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("GET /v1/snapshot/data: %d, want 405", resp.StatusCode)
	}
	ts.expectError(t, "/v2/nothing", `{}`, 404, "no such endpoint")
	resp, err = http.Get(ts.url + "/v1/lr/stream?slotName=" + slot)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("GET /v1/lr/stream without WebSocket: %d, want 400", resp.StatusCode)
	}
	// And the server still serves.
	hr, err := http.Get(ts.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(hr.Body)
	hr.Body.Close()
	if hr.StatusCode != 200 || strings.TrimSpace(string(hb)) != `{"ok":true,"snapshots_held":1,"streams":0}` {
		t.Fatalf("/health: %d %s", hr.StatusCode, hb)
	}
	rows := ts.rows(t, req(`{"slotName":%q,"table":"items","limit":1,"after":{"id":1}}`))
	jsonEqual(t, "page after the bad requests", rows, `[{"id":2,"name":"b"}]`)
	// A table without key pages in physical order.
	pgtest.Exec(t, db, `INSERT INTO nokey VALUES (3)`) // after the snapshot: not seen
	jsonEqual(t, "keyless table", ts.rows(t, req(`{"slotName":%q,"table":"nokey"}`)), `[]`)
}

// TestHostileNames: names that would be SQL if pasted are looked up and
// quoted, never executed: a table and a column named like injections are
// read as what they are, and injections into names of things that do not
// exist are refused.
func TestHostileNames(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "hostile")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db,
		`CREATE TABLE victim (id int PRIMARY KEY)`, `INSERT INTO victim VALUES (1)`,
		`CREATE TABLE "Weird""; DROP TABLE victim; --" ("id; DROP TABLE victim" int PRIMARY KEY, "Na me" text)`,
		`INSERT INTO "Weird""; DROP TABLE victim; --" VALUES (1, 'x'), (2, 'y')`)
	ts := startServer(t, dsn, Options{})
	slot := ts.init(t)
	for _, body := range []string{
		`{"slotName":%q,"table":"victim; DROP TABLE victim"}`,
		`{"slotName":%q,"table":"victim\"; DROP TABLE victim; --"}`,
		`{"slotName":%q,"table":"victim) t; DROP TABLE victim; --"}`,
		`{"slotName":%q,"table":"victim","order_by":{"column":"id; DROP TABLE victim","order":"ASC"}}`,
		`{"slotName":%q,"table":"victim","order_by":{"column":"id\" ; DROP TABLE victim; --","order":"ASC"}}`,
		`{"slotName":%q,"table":"victim","order_by":{"column":"id","order":"ASC; DROP TABLE victim"}}`,
		`{"slotName":%q,"table":"victim","after":{"id":"1) OR (1=1"}}`,
	} {
		code, resp := ts.post(t, "/v1/snapshot/data", fmt.Sprintf(body, slot))
		if code < 400 || code > 499 {
			t.Fatalf("%s: %d %s, want a 4xx", body, code, resp)
		}
	}
	var n int
	if err := db.QueryRow(t.Context(), `SELECT count(*) FROM victim`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("victim after the attempts: %d rows, %v", n, err)
	}
	// The hostile-looking names that exist are quoted and read.
	rows := ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"\"Weird\"\"; DROP TABLE victim; --\"","order_by":{"column":"id; DROP TABLE victim","order":"DESC"}}`, slot))
	jsonEqual(t, "hostile table", rows, `[{"id; DROP TABLE victim":2,"Na me":"y"},{"id; DROP TABLE victim":1,"Na me":"x"}]`)
	rows = ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"\"Weird\"\"; DROP TABLE victim; --\"","order_by":{"column":"Na me"},"after":{"Na me":"x","id; DROP TABLE victim":1}}`, slot))
	jsonEqual(t, "hostile keyset", rows, `[{"id; DROP TABLE victim":2,"Na me":"y"}]`)
	if err := db.QueryRow(t.Context(), `SELECT count(*) FROM victim`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("victim after the reads: %d rows, %v", n, err)
	}
}

// TestKeysetTypes: after values keep their exact value and type: a bigint
// beyond float precision, a char(n) longer than one character, a
// timestamptz; pages by a composite key neither repeat nor skip rows.
func TestKeysetTypes(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "keyset")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE k (code char(3), n bigint, at timestamptz, PRIMARY KEY (code, n))`,
		`INSERT INTO k VALUES ('abc', 9007199254740993, '2026-01-01 00:00:00+00'), ('abc', 9007199254740994, '2026-01-02 00:00:00+00'),
			('abd', 1, '2026-01-03 00:00:00+00'), ('b', 5, '2026-01-04 00:00:00+00')`)
	ts := startServer(t, dsn, Options{})
	slot := ts.init(t)
	code, body := ts.post(t, "/v1/snapshot/data", fmt.Sprintf(`{"slotName":%q,"table":"k","limit":10,"after":{"code":"abc","n":9007199254740993}}`, slot))
	if code != 200 || !strings.HasPrefix(string(body), `[{"code":"abc","n":9007199254740994,`) || strings.Count(string(body), `"code"`) != 3 {
		t.Fatalf("after a bigint beyond float precision: %d %s", code, body)
	}
	rows := ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"k","order_by":{"column":"at","order":"DESC"},"limit":1,"after":{"at":"2026-01-03T00:00:00Z","code":"abd","n":1}}`, slot))
	if len(rows) != 1 || rows[0]["code"] != "abc" || rows[0]["at"] != "2026-01-02T00:00:00Z" {
		t.Fatalf("after a timestamptz, descending: %v", rows)
	}
}
