package stream

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestStreamBadInput: on the WebSocket, a malformed message, an ack of a
// position never sent and a message too large each get an error frame and
// change nothing: the stream goes on and the slot keeps the unacked
// changes. An unknown slot, an unknown format and a second client on a
// slot get an error frame and a close.
func TestStreamBadInput(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "wsbad")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	ts := startServer(t, dsn, Options{MaxMessageBytes: 256})
	slot := ts.init(t)

	for _, q := range []string{"slotName=pgfeed_v1_nosuch", "slotName=pgfeed", "", "slotName=" + slot + "&format=avro"} {
		c := ts.dial(t, q)
		switch {
		case strings.Contains(q, "format"):
			c.expectError(`unknown format "avro"`, "wal2json, json, debezium, cloudevents")
		case q == "":
			c.expectError("slotName is missing")
		default:
			c.expectError("unknown slot")
		}
		if _, err := c.tryRead(10 * time.Second); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("%s: after the error frame: %v, want a close with 1008", q, err)
		}
	}

	c := ts.dial(t, "slotName="+slot)
	c.ack("0/1") // nothing sent yet
	c.expectError("never sent", "nothing was sent yet")
	pgtest.Exec(t, db, `INSERT INTO t VALUES (1)`)
	f := c.frame()
	for _, m := range []struct{ msg, want string }{
		{`{"lsn":`, "malformed message"},
		{`hello`, "malformed message"},
		{`{"lsn":"banana"}`, `malformed lsn "banana"`},
		{`{"offset":"0/1"}`, "has no lsn"},
		{`{"lsn":"FFFFFFFF/FFFFFFFF"}`, "never sent: the last nextlsn sent is " + f.NextLSN},
		{`{"lsn":"` + strings.Repeat("0", 300) + `"}`, "larger than 256 bytes"},
	} {
		c.send(m.msg)
		c.expectError(m.want)
	}
	// A second client on the slot.
	c2 := ts.dial(t, "slotName="+slot)
	c2.expectError("already has a client", "one client per slot")
	if _, err := c2.tryRead(10 * time.Second); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("second client: %v, want a close with 1008", err)
	}
	// The first goes on, and nothing was acked: a reconnect repeats the frame.
	pgtest.Exec(t, db, `INSERT INTO t VALUES (2)`)
	if f2 := c.frame(); f2.Change[0]["columnvalues"].([]any)[0].(json.Number) != "2" {
		t.Fatalf("after the bad messages: %s", f2.raw)
	}
	c.close()
	c = ts.dial(t, "slotName="+slot)
	if again := c.frame(); string(again.raw) != string(f.raw) {
		t.Fatalf("after bad acks only, got %s, want %s again", again.raw, f.raw)
	}
}

// TestStreamFormats: ?format=json frames are native events, acked by
// their commit_lsn; debezium and cloudevents frames are those encoders'.
func TestStreamFormats(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "wsformats")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v numeric)`)
	ts := startServer(t, dsn, Options{})
	slot := ts.init(t)
	c := ts.dial(t, "slotName="+slot+"&format=json")
	pgtest.Exec(t, db, `INSERT INTO t VALUES (1, 1.50), (2, 2)`)
	var evs []map[string]any
	for range 2 {
		var e map[string]any
		if err := json.Unmarshal(c.read(), &e); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	for i, e := range evs {
		if e["op"] != "insert" || e["table"] != "t" || e["seq"] != float64(i+1) || e["commit_lsn"] == nil || e["commit_lsn"] != evs[0]["commit_lsn"] {
			t.Fatalf("event %d: %v", i, e)
		}
	}
	jsonEqual(t, "native after", evs[0]["after"], `{"id":1,"v":"1.50"}`)
	c.ack(evs[0]["commit_lsn"].(string))
	c.ack(evs[0]["lsn"].(string)) // an earlier position: fine, changes nothing
	// An ack of a commit_lsn is confirmed once the stream has read that
	// commit (the frames of a transaction go out before it arrives).
	waitConfirmed(t, db, slot, lsn(t, evs[0]["commit_lsn"].(string))+1)
	pgtest.Exec(t, db, `UPDATE t SET v = 3 WHERE id = 1`)
	var u map[string]any
	if err := json.Unmarshal(c.read(), &u); err != nil || u["op"] != "update" {
		t.Fatalf("update: %v %v", u, err)
	}
	c.close()
	c = ts.dial(t, "slotName="+slot+"&format=cloudevents")
	var ce map[string]any
	if err := json.Unmarshal(c.read(), &ce); err != nil {
		t.Fatal(err)
	}
	if ce["specversion"] != "1.0" || ce["type"] != "io.pgfeed.change.update" || !strings.HasPrefix(ce["id"].(string), u["commit_lsn"].(string)+":") {
		t.Fatalf("cloudevent after the ack of the inserts: %v", ce)
	}
	c.close()
	c = ts.dial(t, "slotName="+slot+"&format=debezium")
	var dbz struct {
		Payload struct {
			Op     string         `json:"op"`
			After  map[string]any `json:"after"`
			Source map[string]any `json:"source"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(c.read(), &dbz); err != nil || dbz.Payload.Op != "u" || dbz.Payload.After["id"] != float64(1) {
		t.Fatalf("debezium: %+v %v", dbz, err)
	}
	// Debezium consumers ack with the commit LSN as a number.
	var seq []string
	if err := json.Unmarshal([]byte(dbz.Payload.Source["sequence"].(string)), &seq); err != nil {
		t.Fatal(err)
	}
	c.send(`{"lsn":` + seq[0] + `}`)
	commit, _ := strconv.ParseUint(seq[0], 10, 64)
	waitConfirmed(t, db, slot, event.LSN(commit)+1)
	c.close()
	c = ts.dial(t, "slotName="+slot)
	pgtest.Exec(t, db, `DELETE FROM t WHERE id = 2`)
	if f := c.frame(); f.Change[0]["kind"] != "delete" {
		t.Fatalf("after the debezium ack, want the delete first: %s", f.raw)
	}
}

// TestBackpressure: a client that does not ack gets at most MaxUnacked
// transactions; the rest wait in the slot, not in memory, and come once it
// acks.
func TestBackpressure(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "wsbackpressure")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	ts := startServer(t, dsn, Options{MaxUnacked: 3})
	slot := ts.init(t)
	c := ts.dial(t, "slotName="+slot)
	for i := 1; i <= 10; i++ {
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO t VALUES (%d)`, i))
	}
	var frames []txnFrame
	for range 3 {
		frames = append(frames, c.frame())
	}
	if b, err := c.tryRead(time.Second); err == nil {
		t.Fatalf("a fourth frame before any ack: %s", b)
	}
	c.ack(frames[1].NextLSN)
	frames = append(frames, c.frame(), c.frame())
	if b, err := c.tryRead(time.Second); err == nil {
		t.Fatalf("a sixth frame with 3 unacked: %s", b)
	}
	c.ack(frames[4].NextLSN)
	for range 5 {
		f := c.frame()
		frames = append(frames, f)
		c.ack(f.NextLSN)
	}
	for i, f := range frames {
		if got := f.Change[0]["columnvalues"].([]any)[0].(json.Number).String(); got != itoa(i+1) {
			t.Fatalf("frame %d holds id %s", i, got)
		}
	}
}

// waitConfirmed waits until the slot is confirmed at pos or beyond.
func waitConfirmed(t *testing.T, db *pgx.Conn, slot string, pos event.LSN) {
	t.Helper()
	var confirmed string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := db.QueryRow(t.Context(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if lsn(t, confirmed) >= pos {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s confirmed at %s, want %s or beyond", slot, confirmed, pos)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
