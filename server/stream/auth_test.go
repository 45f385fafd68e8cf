package stream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

const (
	fullToken   = "full-access-token-0123456789"
	ordersToken = "orders-only-token-0123456789"
)

func (ts *testServer) do(t *testing.T, method, path, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestAuth: with tokens, every endpoint refuses a request without one or
// with a wrong one; a token limited to one table cannot read another, in
// snapshots or in streams.
func TestAuth(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "auth")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE orders (id int PRIMARY KEY)`, `CREATE TABLE items (id int PRIMARY KEY)`,
		`INSERT INTO orders VALUES (1)`, `INSERT INTO items VALUES (1)`)
	if _, err := New(Options{DSN: dsn, Tokens: []Token{{Secret: "short"}}}); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("a short token: %v", err)
	}
	ts := startServer(t, dsn, Options{Tokens: []Token{{Secret: fullToken}, {Secret: ordersToken, Tables: []string{"public.orders"}}}})

	for _, tok := range []string{"", "wrong-token-0123456789"} {
		for _, ep := range []struct{ method, path string }{{"POST", "/v1/init"}, {"POST", "/v1/snapshot/data"}, {"GET", "/v1/lr/stream"}, {"GET", "/nothing"}} {
			code, body := ts.do(t, ep.method, ep.path, tok, "{}")
			want := "missing bearer token"
			if tok != "" {
				want = "invalid bearer token"
			}
			checkErrorBody(t, code, body, 401, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName=x&access_token="+tok, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != 401 {
			t.Fatalf("WebSocket with token %q: %v", tok, err)
		}
	}

	code, body := ts.do(t, "POST", "/v1/init", ordersToken, "")
	if code != 200 {
		t.Fatalf("init with the orders token: %d %s", code, body)
	}
	slot := strings.Split(string(body), `"`)[3]
	code, body = ts.do(t, "POST", "/v1/snapshot/data", ordersToken, fmt.Sprintf(`{"slotName":%q,"table":"items"}`, slot))
	checkErrorBody(t, code, body, 403, "may not read table public.items", "public.orders")
	code, body = ts.do(t, "POST", "/v1/snapshot/data", ordersToken, fmt.Sprintf(`{"slotName":%q,"table":"orders"}`, slot))
	if code != 200 || strings.TrimSpace(string(body)) != `[{"id":1}]` {
		t.Fatalf("orders with the orders token: %d %s", code, body)
	}
	code, body = ts.do(t, "POST", "/v1/snapshot/data", fullToken, fmt.Sprintf(`{"slotName":%q,"table":"items"}`, slot))
	if code != 200 || strings.TrimSpace(string(body)) != `[{"id":1}]` {
		t.Fatalf("items with the full token: %d %s", code, body)
	}

	// The stream with the orders token (in the query, as browsers send it)
	// leaves out the changes of items, and transactions of items only.
	c := ts.dial(t, "slotName="+slot+"&access_token="+ordersToken)
	pgtest.Exec(t, db, `INSERT INTO items VALUES (2)`,
		`BEGIN; INSERT INTO items VALUES (3); INSERT INTO orders VALUES (3); COMMIT`,
		`INSERT INTO items VALUES (4)`)
	f := c.frame()
	jsonEqual(t, "orders-only frame", f.Change, `[{"kind":"insert","schema":"public","table":"orders","columnnames":["id"],"columntypes":["integer"],"columnvalues":[3]}]`)
	c.ack(f.NextLSN)
	pgtest.Exec(t, db, `INSERT INTO orders VALUES (5)`)
	f = c.frame()
	jsonEqual(t, "next orders frame", f.Change[0]["columnvalues"], `[5]`)
	c.ack(f.NextLSN)
	c.close()
	// The full token sees items from where the orders client acked.
	c = ts.dial(t, "slotName="+slot+"&access_token="+fullToken)
	pgtest.Exec(t, db, `INSERT INTO items VALUES (6)`)
	f = c.frame()
	jsonEqual(t, "items after the acks", f.Change, `[{"kind":"insert","schema":"public","table":"items","columnnames":["id"],"columntypes":["integer"],"columnvalues":[6]}]`)
}

// TestCORS: pages of the allowed origins may call the API (a preflight
// answered without a token, the answers readable), others may not, and the
// WebSocket checks the origin too.
func TestCORS(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "cors")
	ts := startServer(t, dsn, Options{Origins: []string{"*.example.com"}, Tokens: []Token{{Secret: fullToken}}})
	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", ts.url+"/v1/init", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := pre("https://app.example.com"); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight of an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := pre("https://evil.test"); resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight of another origin: %d %v", resp.StatusCode, resp.Header)
	}
	for origin, ok := range map[string]bool{"https://app.example.com": true, "https://evil.test": false} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName=pgfeed_v1_x", &websocket.DialOptions{
			HTTPHeader: http.Header{"Origin": {origin}, "Authorization": {"Bearer " + fullToken}},
		})
		cancel()
		if ok != (err == nil) {
			t.Fatalf("WebSocket from %s: %v", origin, err)
		}
		if ok {
			conn.CloseNow()
		} else if resp == nil || resp.StatusCode != 403 {
			t.Fatalf("WebSocket from %s: %v, want a 403", origin, resp)
		}
	}
}
