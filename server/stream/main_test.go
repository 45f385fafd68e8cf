package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &pg, pgcluster.Options{}))
}

// testServer is a Server on a real listener, closed at the end of the test.
type testServer struct {
	*Server
	url string // http://127.0.0.1:port
}

func startServer(t testing.TB, dsn string, opts Options) *testServer {
	t.Helper()
	opts.DSN = dsn
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return &testServer{Server: s, url: hs.URL}
}

// post sends body as JSON and returns the status and the response body.
func (ts *testServer) post(t testing.TB, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(ts.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	return resp.StatusCode, b
}

func (ts *testServer) init(t testing.TB) string {
	t.Helper()
	code, body := ts.post(t, "/v1/init", "")
	if code != http.StatusOK {
		t.Fatalf("/v1/init: %d %s", code, body)
	}
	var r struct {
		SlotName string `json:"slotName"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.SlotName == "" {
		t.Fatalf("/v1/init answered %s (%v)", body, err)
	}
	return r.SlotName
}

// rows reads a snapshot page and decodes it, failing unless it is a 200.
func (ts *testServer) rows(t *testing.T, req string) []map[string]any {
	t.Helper()
	code, body := ts.post(t, "/v1/snapshot/data", req)
	if code != http.StatusOK {
		t.Fatalf("/v1/snapshot/data %s: %d %s", req, code, body)
	}
	var rows []map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("/v1/snapshot/data answered %s: %v", body, err)
	}
	return rows
}

// expectError posts req and checks the status and that the body is one
// {"error": ...} line mentioning every fragment.
func (ts *testServer) expectError(t *testing.T, path, req string, status int, fragments ...string) {
	t.Helper()
	code, body := ts.post(t, path, req)
	checkErrorBody(t, code, body, status, fragments...)
}

func checkErrorBody(t *testing.T, code int, body []byte, status int, fragments ...string) {
	t.Helper()
	if code != status {
		t.Fatalf("status %d, want %d; body %s", code, status, body)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil || len(e) != 1 {
		t.Fatalf("error body %s is not {\"error\": ...}", body)
	}
	msg, _ := e["error"].(string)
	if msg == "" || strings.Contains(msg, "\n") {
		t.Fatalf("error message %q is not one line", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Fatalf("error %q does not mention %q", msg, f)
		}
	}
}

// client is a WebSocket client of /v1/lr/stream.
type client struct {
	t    *testing.T
	conn *websocket.Conn
	in   chan message // what the reader goroutine received
}

type message struct {
	b   []byte
	err error
}

func (ts *testServer) dial(t *testing.T, query string) *client {
	t.Helper()
	return ts.dialURL(t, "/v1/lr/stream?"+query)
}

func (ts *testServer) dialURL(t *testing.T, path string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+path, nil)
	if err != nil {
		t.Fatalf("dialing the stream: %v", err)
	}
	conn.SetReadLimit(64 << 20)
	// One goroutine reads, so that a read can time out without closing
	// the connection (the library closes it when a Read is cancelled).
	c := &client{t: t, conn: conn, in: make(chan message, 1024)}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			c.in <- message{b, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

// read returns the next frame, failing after 30s.
func (c *client) read() []byte {
	c.t.Helper()
	b, err := c.tryRead(30 * time.Second)
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return b
}

// tryRead returns the next frame, or an error after d or once the
// connection is closed.
func (c *client) tryRead(d time.Duration) ([]byte, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m := <-c.in:
		if m.err != nil {
			c.in <- m // every later read fails alike
		}
		return m.b, m.err
	case <-t.C:
		return nil, context.DeadlineExceeded
	}
}

// frame reads a wal2json frame.
func (c *client) frame() txnFrame {
	c.t.Helper()
	b := c.read()
	var f txnFrame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	if f.Error != "" {
		c.t.Fatalf("error frame: %s", f.Error)
	}
	f.raw = b
	return f
}

func (c *client) send(msg string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.t.Fatalf("sending %s: %v", msg, err)
	}
}

func (c *client) ack(lsn string) { c.send(`{"lsn":"` + lsn + `"}`) }

// close ends the connection cleanly, as a client that is done does.
func (c *client) close() { c.conn.Close(websocket.StatusNormalClosure, "") }

// expectError reads frames until an error frame and checks it.
func (c *client) expectError(fragments ...string) {
	c.t.Helper()
	b := c.read()
	var e map[string]any
	if err := json.Unmarshal(b, &e); err != nil || e["error"] == nil {
		c.t.Fatalf("want an error frame, got %s", b)
	}
	msg, _ := e["error"].(string)
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			c.t.Fatalf("error frame %q does not mention %q", msg, f)
		}
	}
}

// txnFrame is pgdeltastream's frame.
type txnFrame struct {
	NextLSN string           `json:"nextlsn"`
	Change  []map[string]any `json:"change"`
	Error   string           `json:"error"`
	raw     []byte
}
