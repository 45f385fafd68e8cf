package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestLimits: the slot count, the snapshot's hold time, the stream count
// and the frame size are bounded, each with a clear answer.
func TestLimits(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "limits")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	ts := startServer(t, dsn, Options{MaxSlots: 2, SnapshotHold: 700 * time.Millisecond, MaxStreams: 1, MaxFrameBytes: 300})
	a, b := ts.init(t), ts.init(t)
	ts.expectError(t, "/v1/init", "", 409, "2 slots named pgfeed_v1_* exist", "pgfeed slot drop")

	// The snapshot is released after its hold time.
	ts.rows(t, fmt.Sprintf(`{"slotName":%q,"table":"t"}`, a))
	time.Sleep(1500 * time.Millisecond)
	ts.expectError(t, "/v1/snapshot/data", fmt.Sprintf(`{"slotName":%q,"table":"t"}`, a), 409, "no longer held")

	c := ts.dial(t, "slotName="+a)
	pgtest.Exec(t, db, `INSERT INTO t SELECT i, repeat('x', 50) FROM generate_series(1, 10) i`)
	// One stream at most: a second client, on another slot, is told.
	c2 := ts.dial(t, "slotName="+b)
	c2.expectError("1 streams are running", "--max-streams")
	// A transaction larger than the frame size comes in parts; only the
	// last has nextlsn, and together they hold every change in order.
	var ids []string
	var parts int
	for {
		f := c.frame()
		parts++
		for _, ch := range f.Change {
			ids = append(ids, ch["columnvalues"].([]any)[0].(json.Number).String())
		}
		if len(f.raw) > 300+200 {
			t.Fatalf("frame of %d bytes, limit 300 (+ one change)", len(f.raw))
		}
		if f.NextLSN != "" {
			c.ack(f.NextLSN)
			break
		}
		if strings.Contains(string(f.raw), "nextlsn") {
			t.Fatalf("a part with nextlsn: %s", f.raw)
		}
	}
	if parts < 3 || strings.Join(ids, ",") != "1,2,3,4,5,6,7,8,9,10" {
		t.Fatalf("%d parts holding %v", parts, ids)
	}
}

// TestShutdown: Close ends every stream with an error frame that says to
// reconnect, and what was acked stays acked.
func TestShutdown(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "shutdown")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	ts := startServer(t, dsn, Options{})
	slot := ts.init(t)
	c := ts.dial(t, "slotName="+slot)
	pgtest.Exec(t, db, `INSERT INTO t VALUES (1)`)
	f := c.frame()
	c.ack(f.NextLSN)
	time.Sleep(200 * time.Millisecond) // the ack travels
	done := make(chan struct{})
	go func() { ts.Close(); close(done) }()
	c.expectError("shutting down", "resume after your last ack")
	if _, err := c.tryRead(10 * time.Second); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after the error frame: %v, want a close with 1001", err)
	}
	<-done
	var confirmed string
	if err := db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed); err != nil {
		t.Fatal(err)
	}
	if lsn(t, confirmed) < lsn(t, f.NextLSN) {
		t.Fatalf("confirmed %s after Close, want at least the ack %s", confirmed, f.NextLSN)
	}
}

// FuzzParseAck: no client message makes the ack parser panic, and what it
// accepts is a position it prints back.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{`{"lsn":"0/170FCB0"}`, `{"lsn":23791520}`, `{"lsn":"23791520"}`, `{"lsn":null}`, `{}`, `[`, `{"lsn":"1/"}`, `{"lsn":-1}`, `{"lsn":1e3}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pos, err := parseAck(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		if back, err := event.ParseLSN(pos.String()); err != nil || back != pos {
			t.Fatalf("%s does not round-trip: %v", pos, err)
		}
	})
}

// TestSentLog: acks map to the stream's commit positions, in both ack
// styles, and positions never sent are refused.
func TestSentLog(t *testing.T) {
	ctx := context.Background()
	l := newSentLog(true, 10)
	for _, tx := range []sentTxn{{commit: 100, end: 110}, {commit: 110, end: 120}, {commit: 130, end: 140}} {
		if err := l.begin(ctx, tx.commit); err != nil {
			t.Fatal(err)
		}
		l.end(tx.commit, tx.end)
	}
	for _, c := range []struct {
		pos, want event.LSN
		err       bool
	}{{105, 0, false}, {110, 100, false}, {141, 0, true}, {120, 110, false}, {120, 0, false}, {140, 130, false}} {
		got, err := l.ack(c.pos)
		if (err != nil) != c.err || got != c.want {
			t.Fatalf("ack %d: %d, %v; want %d (error %v)", c.pos, got, err, c.want, c.err)
		}
	}
	// Commit style: the commit LSN itself, once its frame is being sent.
	l = newSentLog(false, 10)
	_ = l.begin(ctx, 200)
	if _, err := l.ack(200); err == nil {
		t.Fatal("ack before any frame was sent")
	}
	l.sending(200)
	if got, err := l.ack(200); err != nil || got != 200 {
		t.Fatalf("ack 200: %d %v", got, err)
	}
	// A skipped transaction with nothing unacked is acked at once.
	if c, now, err := l.skip(ctx, 300, 310); err != nil || !now || c != 300 {
		t.Fatalf("skip: %d %v %v", c, now, err)
	}
}

// TestMaxAckDelay: a client that leaves a frame unacked too long is
// dropped with an error frame; reconnected, it gets the frame again.
func TestMaxAckDelay(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "ackdelay")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY)`)
	ts := startServer(t, dsn, Options{MaxAckDelay: 500 * time.Millisecond})
	slot := ts.init(t)
	c := ts.dial(t, "slotName="+slot)
	pgtest.Exec(t, db, `INSERT INTO t VALUES (1)`)
	f := c.frame()
	c.expectError("unacked longer than 500ms", "--max-ack-delay")
	c = ts.dial(t, "slotName="+slot)
	if again := c.frame(); string(again.raw) != string(f.raw) {
		t.Fatalf("after the drop: %s, want %s", again.raw, f.raw)
	}
	c.ack(f.NextLSN)
	pgtest.Exec(t, db, `INSERT INTO t VALUES (2)`)
	f = c.frame()
	c.ack(f.NextLSN)
	if b, err := c.tryRead(1500 * time.Millisecond); err == nil {
		t.Fatalf("a client that acks was sent %s", b)
	}
}

// TestSlowClientDropped: a client that stops reading is backpressured (the
// server's writes block, the slot waits, nothing is confirmed) and dropped
// after WriteTimeout; it then gets everything again from its last ack.
func TestSlowClientDropped(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "slowclient")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	ts := startServer(t, dsn, Options{WriteTimeout: time.Second})
	slot := ts.init(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A client that never reads: nothing drains its socket.
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName="+slot, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var active bool
		_ = db.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active)
		if active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream did not start")
		}
	}
	// The slot may advance while nothing is in flight, even into the first
	// insert's records while the walsender is still decoding it (a
	// keepalive's WAL end is where decoding is, and that transaction,
	// committing later, is sent again after a restart), but never over its
	// commit: before is read right after that commit.
	var before string
	for i := range 40 {
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO t SELECT g, repeat('x', 1000) FROM generate_series(%d, %d) g`, i*1000+1, i*1000+1000))
		if i == 0 {
			if err := db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&before); err != nil {
				t.Fatal(err)
			}
		}
	}
	var active bool
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := db.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active); err != nil {
			t.Fatal(err)
		}
		if !active || time.Now().After(deadline) {
			break
		}
	}
	if active {
		t.Fatal("the client that does not read was not dropped")
	}
	var after string
	if err := db.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if lsn(t, after) >= lsn(t, before) {
		t.Fatalf("the slot moved to %s, over the first insert's commit (before %s), without an ack", after, before)
	}
	c := ts.dial(t, "slotName="+slot)
	if f := c.frame(); f.Change[0]["columnvalues"].([]any)[0].(json.Number) != "1" {
		t.Fatalf("after the drop, first frame %.200s", f.raw)
	}
}

// TestMaxUnackedBytes: a client that holds MaxUnackedBytes of frames
// unacked gets no more, and acking nothing is dropped with an error frame;
// reconnected, it gets them again, and acking streams on past the bound.
func TestMaxUnackedBytes(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "unackedbytes")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, pad text)`)
	ts := startServer(t, dsn, Options{MaxUnackedBytes: 2000, WriteTimeout: time.Second})
	slot := ts.init(t)
	c := ts.dial(t, "slotName="+slot)
	for i := 1; i <= 10; i++ { // ten frames of some 300 bytes
		pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO t VALUES (%d, repeat('x', 200))`, i))
	}
	var first []byte
	frames := 0
	for {
		b := c.read()
		if strings.Contains(string(b), `"error"`) {
			if !strings.Contains(string(b), "--max-unacked-bytes") || !strings.Contains(string(b), "fell behind") {
				t.Fatalf("error frame %s, want one naming --max-unacked-bytes", b)
			}
			break
		}
		if first == nil {
			first = b
		}
		frames++
	}
	if frames == 0 || frames >= 10 {
		t.Fatalf("%d frames before the drop, want the bound to stop it before all 10", frames)
	}

	// Reconnected, it resumes after its last ack (none): the first frame
	// again. Acking each frame, it gets all 10 and 10 more, past the bound:
	// its acks make room.
	c = ts.dial(t, "slotName="+slot)
	for i := 1; i <= 20; i++ {
		if i > 10 {
			pgtest.Exec(t, db, fmt.Sprintf(`INSERT INTO t VALUES (%d, repeat('x', 200))`, i))
		}
		f := c.frame()
		if i == 1 && string(f.raw) != string(first) {
			t.Fatalf("after the drop: %s, want %s", f.raw, first)
		}
		if got := f.Change[0]["columnvalues"].([]any)[0].(json.Number).String(); got != fmt.Sprint(i) {
			t.Fatalf("frame %d holds id %s", i, got)
		}
		c.ack(f.NextLSN)
	}
}
