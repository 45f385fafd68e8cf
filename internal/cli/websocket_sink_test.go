package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// wsSinkFrame is what a client of the websocket sink reads: a record in
// the native JSON format, or an error frame.
type wsSinkFrame struct {
	Op        string         `json:"op"`
	Table     string         `json:"table"`
	CommitLSN string         `json:"commit_lsn"`
	LSN       string         `json:"lsn"`
	Key       map[string]any `json:"key"`
	Error     string         `json:"error"`
}

func (f wsSinkFrame) String() string {
	if f.Error != "" {
		return "error: " + f.Error
	}
	return fmt.Sprintf("%s %v", f.Op, f.Key["id"])
}

// wsSinkClient is a test client of the websocket sink.
type wsSinkClient struct {
	t    *testing.T
	name string
	conn *websocket.Conn
}

func dialSink(t *testing.T, name, url, token string) *wsSinkClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatalf("%s: dialing %s: %v", name, url, err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	return &wsSinkClient{t: t, name: name, conn: conn}
}

// next reads the next frame.
func (c *wsSinkClient) next() (wsSinkFrame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return wsSinkFrame{}, err
	}
	var f wsSinkFrame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("%s: frame %q: %v", c.name, b, err)
	}
	return f, nil
}

// change reads frames up to the next change of a row (insert, update,
// delete), acking each frame when ack is set.
func (c *wsSinkClient) change(ack bool) wsSinkFrame {
	c.t.Helper()
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("%s: reading: %v", c.name, err)
		}
		if f.Error != "" {
			c.t.Fatalf("%s: unexpected error frame %q", c.name, f.Error)
		}
		if ack {
			c.ack(f)
		}
		switch f.Op {
		case "insert", "update", "delete":
			return f
		}
	}
}

func (c *wsSinkClient) ack(f wsSinkFrame) {
	c.t.Helper()
	pos := f.CommitLSN
	if pos == "" {
		pos = f.LSN
	}
	c.send(`{"lsn":"` + pos + `"}`)
}

func (c *wsSinkClient) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatalf("%s: sending %s: %v", c.name, msg, err)
	}
}

// expect reads changes and checks they are want, in order ("insert 1").
func (c *wsSinkClient) expect(ack bool, want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.change(ack).String(); got != w {
			c.t.Fatalf("%s: got %s, want %s", c.name, got, w)
		}
	}
}

// errorFrame reads frames until an error frame, which it returns; data
// frames before it are acked (or not, when ack is false).
func (c *wsSinkClient) errorFrame(ack bool) string {
	c.t.Helper()
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("%s: reading, expecting an error frame: %v", c.name, err)
		}
		if f.Error != "" {
			return f.Error
		}
		if ack {
			c.ack(f)
		}
	}
}

// TestRunWebSocketSink runs pgfeed with a websocket sink on the [http]
// server and checks, with real clients: changes in order and acked;
// a client killed mid-stream gets again what it did not ack; a second
// client gets the same; a client that stops acking is dropped with an
// error frame while the other goes on; bad input gets error frames.
func TestRunWebSocketSink(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "wssink")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, v text)")
	dir := t.TempDir()
	addr := freeAddr(t)
	const token = "ws-sink-test-token-0123"
	t.Setenv("PGFEED_TEST_WS_TOKEN", token)
	path := filepath.Join(dir, "pgfeed.toml")
	writeConfig(t, path, fmt.Sprintf(`checkpoint = %q
[http]
listen = %q
token = "${PGFEED_TEST_WS_TOKEN}"
[sources.main]
dsn = %q
slot = "wssink"
create = true
tables = ["public.items"]
[sinks.live]
type = "websocket"
format = "json"
sources = ["main"]
max_lag_records = 4
ack_timeout = "3s"
`, filepath.Join(dir, "pgfeed.db"), addr, dsn))
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", path)
	base := "http://" + addr
	url := "ws://" + addr + "/changes"
	waitUntil(t, "/status 200", func() bool {
		code, _, err := httpGet(base + "/status")
		return err == nil && code == 200
	})
	connected := func(n int) {
		t.Helper()
		waitUntil(t, fmt.Sprintf("%d client connections in the log", n), func() bool {
			return strings.Count(stderr.String(), "websocket sink: client connected") >= n
		})
	}

	// With no client, the pipeline waits and says so once.
	pgtest.Exec(t, db, "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	waitUntil(t, "the no-client warning", func() bool {
		return strings.Contains(stderr.String(), "no client connected")
	})

	// Inserts, updates, deletes in order; the batch waiting comes first.
	a := dialSink(t, "a", url, token)
	pgtest.Exec(t, db, "UPDATE items SET v = 'a2' WHERE id = 1")
	pgtest.Exec(t, db, "DELETE FROM items WHERE id = 2")
	a.expect(true, "insert 1", "insert 2", "insert 3", "update 1", "delete 2")

	// Killed mid-stream: what was not acked comes again.
	for i := 10; i < 15; i++ {
		pgtest.Exec(t, db, fmt.Sprintf("INSERT INTO items VALUES (%d, 'x')", i))
	}
	a.expect(false, "insert 10")
	a.conn.CloseNow()
	a = dialSink(t, "a again", url, token)
	a.expect(true, "insert 10", "insert 11", "insert 12", "insert 13", "insert 14")

	// A second client receives the same.
	b := dialSink(t, "b", url, token)
	connected(3)
	pgtest.Exec(t, db, "INSERT INTO items VALUES (20, 'y')")
	a.expect(true, "insert 20")
	b.expect(true, "insert 20")

	// b stops acking: it is dropped with an error frame, and a goes on.
	// One transaction of 10 rows is one batch, more than the 4 records a
	// client may hold unacked: b falls behind.
	pgtest.Exec(t, db, "INSERT INTO items SELECT g, 'z' FROM generate_series(30, 39) g")
	want := []string{}
	for i := 30; i < 40; i++ {
		want = append(want, fmt.Sprintf("insert %d", i))
	}
	a.expect(true, want...)
	if msg := b.errorFrame(false); !strings.Contains(msg, "dropped") || !strings.Contains(msg, "fell behind") {
		t.Errorf("b's error frame %q, want it dropped for falling behind", msg)
	}
	pgtest.Exec(t, db, "INSERT INTO items VALUES (40, 'z')")
	a.expect(true, "insert 40")

	// Bad input: an error frame each, and a goes on.
	a.send("not json")
	if msg := a.errorFrame(true); !strings.Contains(msg, "malformed message") {
		t.Errorf("malformed ack: error frame %q", msg)
	}
	a.send(`{"lsn":"FF/0"}`)
	if msg := a.errorFrame(true); !strings.Contains(msg, "never sent") {
		t.Errorf("ack of a position never sent: error frame %q", msg)
	}
	a.send(`{"lsn":"nope"}`)
	if msg := a.errorFrame(true); !strings.Contains(msg, "malformed lsn") {
		t.Errorf("bad lsn: error frame %q", msg)
	}
	for _, tok := range []string{"", "wrong-token-wrong-token"} {
		bad := dialSink(t, "bad token", url, tok)
		f, err := bad.next()
		if err != nil || !strings.Contains(f.Error, "bearer token") {
			t.Errorf("token %q: first frame %v (%v), want an error frame about the token", tok, f, err)
		}
	}
	pgtest.Exec(t, db, "INSERT INTO items VALUES (50, 'w')")
	a.expect(true, "insert 50")

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
}
