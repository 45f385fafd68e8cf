package formatcheck

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestDebeziumRecordsMatchTheirSchemas encodes the changes of the
// many-type workload, as pgoutput delivers them, as Debezium records (key
// and value, with every decimal handling mode) and decodes each one the way
// a Kafka Connect JsonConverter consumer does: every value must agree with
// its own schema (types, ranges, optionality, base64 bytes, the fields of
// structs and the items of arrays), and the key must hold the key columns.
func TestDebeziumRecordsMatchTheirSchemas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := pgtest.CreateDB(t, pg, "debezium_cmp")
	admin := pgtest.Connect(t, dsn)
	pgtest.Exec(t, admin, schemaSQL...)
	pgtest.Exec(t, admin, `SELECT pg_create_logical_replication_slot('dbz_pgfeed', 'pgoutput')`,
		`CREATE PUBLICATION dbz_pgfeed FOR TABLES IN SCHEMA cmp`)
	for _, sql := range workload {
		pgtest.Exec(t, admin, sql)
	}
	var endText string
	if err := admin.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&endText); err != nil {
		t.Fatal(err)
	}
	end, err := event.ParseLSN(endText)
	if err != nil {
		t.Fatal(err)
	}
	events := readPgfeedSlot(ctx, t, dsn, "dbz_pgfeed", end)
	rows := 0
	for _, mode := range []string{"", encode.DecimalString, encode.DecimalDouble} {
		enc := encode.NewDebezium(encode.Options{ServerName: "srv", Database: "debezium_cmp", DebeziumDecimalHandling: mode, DebeziumTruncates: true})
		for _, e := range events {
			out, err := enc.Encode(nil, e)
			if err != nil {
				t.Fatalf("encoding %s of %s.%s (%s): %v", e.Op, e.Schema, e.Table, mode, err)
			}
			if len(out) == 0 {
				continue
			}
			checkRecord(t, fmt.Sprintf("%s %s.%s value (%s)", e.Op, e.Schema, e.Table, mode), out)
			key, ok, err := enc.EncodeKey(nil, e)
			if err != nil {
				t.Fatalf("encoding the key of %s.%s: %v", e.Schema, e.Table, err)
			}
			if e.Op.IsRowChange() {
				rows++
				if ok != !e.Rel.NoKey {
					t.Errorf("%s.%s: key %v, table keyed %v", e.Schema, e.Table, ok, !e.Rel.NoKey)
				}
			}
			if ok {
				checkRecord(t, fmt.Sprintf("%s %s.%s key (%s)", e.Op, e.Schema, e.Table, mode), key)
			}
		}
	}
	if rows < 30 {
		t.Errorf("only %d row events: the workload did not arrive", rows)
	}
}

// checkRecord decodes a {"schema":..,"payload":..} record and checks the
// payload against the schema.
func checkRecord(t *testing.T, what string, b []byte) {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var rec struct {
		Schema  map[string]any `json:"schema"`
		Payload any            `json:"payload"`
	}
	if err := d.Decode(&rec); err != nil {
		t.Errorf("%s: not JSON: %v", what, err)
		return
	}
	if rec.Schema == nil {
		t.Errorf("%s: no schema", what)
		return
	}
	for _, p := range checkValue(rec.Schema, rec.Payload, "") {
		t.Errorf("%s: %s", what, p)
	}
}

// checkValue returns where v disagrees with the Kafka Connect schema s.
func checkValue(s map[string]any, v any, path string) []string {
	if v == nil {
		if s["optional"] != true {
			return []string{path + ": null but not optional"}
		}
		return nil
	}
	typ, _ := s["type"].(string)
	bad := func(why string) []string { return []string{fmt.Sprintf("%s: %#v is not %s (%s)", path, v, typ, why)} }
	switch typ {
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			return bad("not an object")
		}
		var out []string
		fields, _ := s["fields"].([]any)
		seen := map[string]bool{}
		for _, f := range fields {
			f := f.(map[string]any)
			name := f["field"].(string)
			seen[name] = true
			fv, present := m[name]
			if !present {
				out = append(out, path+"."+name+": missing")
				continue
			}
			out = append(out, checkValue(f, fv, path+"."+name)...)
		}
		for name := range m {
			if !seen[name] {
				out = append(out, path+"."+name+": not in the schema")
			}
		}
		return out
	case "array":
		a, ok := v.([]any)
		if !ok {
			return bad("not an array")
		}
		items, _ := s["items"].(map[string]any)
		var out []string
		for i, x := range a {
			out = append(out, checkValue(items, x, fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case "int8", "int16", "int32", "int64":
		n, ok := v.(json.Number)
		if !ok {
			return bad("not a number")
		}
		i, err := n.Int64()
		if err != nil {
			return bad("not an integer")
		}
		limit := map[string]int64{"int8": math.MaxInt8, "int16": math.MaxInt16, "int32": math.MaxInt32, "int64": math.MaxInt64}[typ]
		if i > limit || i < -limit-1 {
			return bad("out of range")
		}
	case "float", "double":
		if str, ok := v.(string); ok && (str == "NaN" || str == "Infinity" || str == "-Infinity") {
			return nil
		}
		if _, ok := v.(json.Number); !ok {
			return bad("not a number")
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad("not a boolean")
		}
	case "string":
		if _, ok := v.(string); !ok {
			return bad("not a string")
		}
	case "bytes":
		str, ok := v.(string)
		if !ok {
			return bad("not a string")
		}
		if _, err := base64.StdEncoding.DecodeString(str); err != nil {
			return bad("not base64")
		}
		if s["name"] == "org.apache.kafka.connect.data.Decimal" {
			if p, _ := s["parameters"].(map[string]any); p == nil || p["scale"] == nil {
				return bad("a Decimal without its scale")
			}
		}
	default:
		return bad("unknown Connect type")
	}
	return nil
}
