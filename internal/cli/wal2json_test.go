package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// pgfeed stream --format wal2json prints one line per transaction, the
// plugin's format-version 1 object with the options of --wal2json-options
// (here the default xids, timestamps and nextlsn, and type OIDs), and a
// non-transactional message on a line of its own; --format wal2json2 prints
// one line per action, B and C included without --tx.
func TestStreamWal2JSON(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "wal2json_cli")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
	args := []string{"stream", "--dsn", dsn, "--slot", "w2j_cli", "--tables", "public.items"}
	args2 := []string{"stream", "--dsn", dsn, "--slot", "w2j_cli2", "--tables", "public.items"}
	for _, a := range [][]string{args, args2} {
		if code, _, stderr := runCLI(t, append(a, "--create", "--endpos", "0/1")...); code != 0 {
			t.Fatalf("creating slot: %s", stderr)
		}
	}
	pgtest.Exec(t, db,
		"INSERT INTO items VALUES (1, 'a'), (2, 'b')",
		"UPDATE items SET v = 'c' WHERE id = 1",
		"SELECT pg_logical_emit_message(false, 'app', 'alone')",
		"DELETE FROM items")
	var end string
	if err := db.QueryRow(t.Context(), "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCLI(t, append(args, "--format", "wal2json", "--endpos", end,
		"--wal2json-options", "include-xids,include-timestamp,include-lsn,include-type-oids")...)
	if code != 0 {
		t.Fatalf("stream: %s", stderr)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	type change struct {
		Kind           string   `json:"kind"`
		ColumnTypeOids []uint32 `json:"columntypeoids"`
		Content        string   `json:"content"`
	}
	var txs []struct {
		XID       *uint32  `json:"xid"`
		NextLSN   *string  `json:"nextlsn"`
		Timestamp *string  `json:"timestamp"`
		Change    []change `json:"change"`
	}
	for _, l := range lines {
		var tx struct {
			XID       *uint32  `json:"xid"`
			NextLSN   *string  `json:"nextlsn"`
			Timestamp *string  `json:"timestamp"`
			Change    []change `json:"change"`
		}
		if err := json.Unmarshal([]byte(l), &tx); err != nil {
			t.Fatalf("line is not one JSON object: %v\n%s", err, l)
		}
		txs = append(txs, tx)
	}
	kinds := func(cs []change) string {
		var k []string
		for _, c := range cs {
			k = append(k, c.Kind)
		}
		return strings.Join(k, ",")
	}
	want := []string{"insert,insert", "update", "message", "delete,delete"}
	if len(txs) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(txs), len(want), out)
	}
	for i, tx := range txs {
		if got := kinds(tx.Change); got != want[i] {
			t.Errorf("line %d: changes %s, want %s", i, got, want[i])
		}
		if want[i] == "message" { // its own object, as the plugin writes it
			if tx.XID != nil || tx.NextLSN != nil || tx.Change[0].Content != "alone" {
				t.Errorf("message line %s", lines[i])
			}
			continue
		}
		if tx.XID == nil || tx.NextLSN == nil || tx.Timestamp == nil {
			t.Errorf("line %d lacks xid, nextlsn or timestamp: %s", i, lines[i])
		}
	}
	if oids := txs[0].Change[0].ColumnTypeOids; len(oids) != 2 || oids[0] != 23 || oids[1] != 25 {
		t.Errorf("columntypeoids %v, want [23 25]", oids)
	}

	code, out, stderr = runCLI(t, append(args2, "--format", "wal2json2", "--endpos", end, "--wal2json-options", "")...)
	if code != 0 {
		t.Fatalf("stream: %s", stderr)
	}
	var actions []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var a struct{ Action string }
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		actions = append(actions, a.Action)
	}
	if got, want := strings.Join(actions, ""), "BIICBUCMBDDC"; got != want {
		t.Errorf("wal2json2 actions %s, want %s", got, want)
	}

	code, _, stderr = runCLI(t, append(args, "--format", "wal2json", "--endpos", end, "--wal2json-options", "pretty-print=1")...)
	expectOneLineError(t, code, stderr, "--wal2json-options", "pretty-print")
}
