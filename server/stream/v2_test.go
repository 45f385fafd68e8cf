package stream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestV2Streams: create a named stream with an initial snapshot, list it,
// stream its reads then its changes as native json frames with acks,
// backfill a table, and delete it while a client streams.
func TestV2Streams(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "v2")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY, total numeric)`, `CREATE TABLE other (id int PRIMARY KEY)`,
		`INSERT INTO orders VALUES (1, 10.5), (2, 20)`, `INSERT INTO other VALUES (1)`)
	// MaxUnacked 1: the snapshot's reads count as one transaction.
	ts := startServer(t, dsn, Options{MaxUnacked: 1})
	ts.expectError(t, "/v2/streams", `{"name":"Bad Name"}`, 400, "invalid stream name")
	ts.expectError(t, "/v2/streams", `{"name":"x","tables":["public."]}`, 400, "tables")
	code, body := ts.post(t, "/v2/streams", `{"name":"orders","tables":["public.orders"],"snapshot":true}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	jsonEqual(t, "created", json.RawMessage(body), `{"name":"orders","slot":"pgfeed_v2_orders","active":false,"confirmed_lsn":null,"retained_bytes":null,"wal_status":null,"ws":"/v2/streams/orders/ws","tables":["public.orders"],"snapshot":true}`)
	ts.expectError(t, "/v2/streams", `{"name":"orders"}`, 409, "exists")

	resp, err := http.Get(ts.url + "/v2/streams")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Streams []streamInfo }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Streams) != 1 || list.Streams[0].Name != "orders" || list.Streams[0].ConfirmedLSN == nil {
		t.Fatalf("list: %+v", list)
	}

	pgtest.Exec(t, db, `INSERT INTO orders VALUES (3, 30)`, `INSERT INTO other VALUES (2)`)
	c := ts.dialURL(t, "/v2/streams/orders/ws")
	var evs []map[string]any
	for range 3 {
		var e map[string]any
		if err := json.Unmarshal(c.read(), &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
		if len(evs) == 2 {
			c.ack(e["commit_lsn"].(string)) // the snapshot, read
		}
	}
	if evs[0]["op"] != "read" || evs[1]["op"] != "read" || evs[2]["op"] != "insert" || evs[2]["table"] != "orders" {
		t.Fatalf("snapshot then change: %v", evs)
	}
	jsonEqual(t, "read", evs[0]["after"], `{"id":1,"total":"10.5"}`)
	c.ack(evs[2]["commit_lsn"].(string))
	// A second client is refused.
	c2 := ts.dialURL(t, "/v2/streams/orders/ws")
	c2.expectError("stream orders already has a client", "POST /v2/streams")

	// A backfill of the table: its rows as reads, while streaming.
	code, body = ts.post(t, "/v2/streams/orders/backfill", `{"tables":["public.orders"]}`)
	if code != 202 {
		t.Fatalf("backfill: %d %s", code, body)
	}
	ids := map[string]bool{}
	for len(ids) < 3 {
		var e map[string]any
		if err := json.Unmarshal(c.read(), &e); err != nil {
			t.Fatal(err)
		}
		if e["op"] != "read" {
			t.Fatalf("backfill frame: %v", e)
		}
		ids[fmt.Sprint(e["after"].(map[string]any)["id"])] = true
	}

	// Deleting the stream tells its client and drops slot and publication.
	req, _ := http.NewRequest("DELETE", ts.url+"/v2/streams/orders", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	c.expectError("stream orders was deleted")
	if _, err := c.tryRead(10 * time.Second); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after delete: %v", err)
	}
	var slots, pubs int
	_ = db.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgfeed_v2_orders'),
		(SELECT count(*) FROM pg_publication WHERE pubname = 'pgfeed_v2_orders')`).Scan(&slots, &pubs)
	if slots != 0 || pubs != 0 {
		t.Fatalf("after delete: %d slots, %d publications", slots, pubs)
	}
	var defs int
	_ = db.QueryRow(t.Context(), `SELECT count(*) FROM `+StreamTable+` WHERE slot = 'pgfeed_v2_orders'`).Scan(&defs)
	if defs != 0 {
		t.Fatalf("after delete: the definition is still stored")
	}
	req, _ = http.NewRequest("DELETE", ts.url+"/v2/streams/orders", nil)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("second delete: %d", resp.StatusCode)
	}
	ws := ts.dialURL(t, "/v2/streams/nosuch/ws")
	ws.expectError("unknown stream")
}

// TestV2StreamsSurviveRestart: a stream's definition outlives the server
// that made it. After a restart it is listed with its table globs, its
// socket resumes after the last ack, and a table its glob takes that was
// created since is streamed too.
func TestV2StreamsSurviveRestart(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "v2restart")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t1 (id int PRIMARY KEY)`)
	ts := startServer(t, dsn, Options{})
	if code, body := ts.post(t, "/v2/streams", `{"name":"feed","tables":["public.t*"]}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	c := ts.dialURL(t, "/v2/streams/feed/ws")
	change := func(c *client) map[string]any {
		t.Helper()
		var e map[string]any
		if err := json.Unmarshal(c.read(), &e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	pgtest.Exec(t, db, `INSERT INTO t1 VALUES (1)`)
	e := change(c)
	c.ack(e["commit_lsn"].(string))
	pgtest.Exec(t, db, `INSERT INTO t1 VALUES (2)`)
	if e = change(c); fmt.Sprint(e["key"]) != "map[id:2]" {
		t.Fatalf("second change: %v", e)
	}
	c.close() // 2 was not acked

	// The restart: a new server on the same database.
	if err := ts.Server.Close(); err != nil {
		t.Fatal(err)
	}
	ts = startServer(t, dsn, Options{})
	resp, err := http.Get(ts.url + "/v2/streams")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Streams []streamInfo }
	_ = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Streams) != 1 || list.Streams[0].Name != "feed" || fmt.Sprint(list.Streams[0].Tables) != "[public.t*]" {
		t.Fatalf("after the restart, the list: %+v", list)
	}
	c = ts.dialURL(t, "/v2/streams/feed/ws")
	for i, want := range []string{"t1 map[id:2]", "t2 map[id:3]"} {
		if i == 1 {
			// A table its glob takes, created since the restart: the
			// stream knows its globs, so it takes the table in.
			// Rows written before it is in the publication are not
			// decoded, so wait for that first.
			pgtest.Exec(t, db, `CREATE TABLE t2 (id int PRIMARY KEY)`)
			for published := false; !published; time.Sleep(50 * time.Millisecond) {
				if err := db.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
					WHERE pubname = 'pgfeed_v2_feed' AND tablename = 't2')`).Scan(&published); err != nil {
					t.Fatal(err)
				}
			}
			pgtest.Exec(t, db, `INSERT INTO t2 VALUES (3)`)
		}
		e := change(c)
		if got := fmt.Sprint(e["table"], " ", e["key"]); got != want {
			t.Fatalf("after the restart: %s, want %s", got, want)
		}
		c.ack(e["commit_lsn"].(string))
	}
}
