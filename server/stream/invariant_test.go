package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestConcurrentClientsInvariant: several clients, each with a slot of its
// own made while writers run, read their snapshot in keyset pages, stream
// and ack, one dropping and reconnecting without acking; each applies every
// change by key, and each ends with exactly what SELECT * returns.
func TestConcurrentClientsInvariant(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "invariant")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, `CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL, note text)`,
		`INSERT INTO kv SELECT i, i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n' || i END FROM generate_series(1, 300) i`)
	ts := startServer(t, dsn, Options{})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopWriters := make(chan struct{})
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				id := r.IntN(400) + 1
				var sql string
				switch r.IntN(4) {
				case 0:
					sql = fmt.Sprintf(`INSERT INTO kv VALUES (%d, %d, 'w%d') ON CONFLICT (id) DO UPDATE SET v = kv.v + 1`, id, i, w)
				case 1:
					sql = fmt.Sprintf(`DELETE FROM kv WHERE id = %d`, id)
				case 2:
					sql = fmt.Sprintf(`UPDATE kv SET v = v + 1, note = NULL WHERE id BETWEEN %d AND %d`, id, id+5)
				default:
					sql = fmt.Sprintf(`BEGIN; UPDATE kv SET note = 'x%d' WHERE id = %d; INSERT INTO kv VALUES (%d, 0, NULL) ON CONFLICT DO NOTHING; COMMIT`, i, id, 400+id)
				}
				if _, err := conn.Exec(ctx, sql); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}

	const clients = 4
	results := make([]*invClient, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 300 * time.Millisecond) // slots made at different moments
			cl := &invClient{ts: ts, state: map[int64]string{}}
			results[i] = cl
			if err := cl.start(ctx, i == 1); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
	close(stopWriters)
	writers.Wait()
	if t.Failed() {
		return
	}
	want := map[int64]string{}
	rows, _ := db.Query(ctx, `SELECT id, v, note FROM kv`)
	for rows.Next() {
		var id, v int64
		var note *string
		if err := rows.Scan(&id, &v, &note); err != nil {
			t.Fatal(err)
		}
		want[id] = rowString(v, note)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for i, cl := range results {
		if err := cl.catchUp(ctx, want); err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
}

func rowString(v int64, note *string) string {
	if note == nil {
		return fmt.Sprintf("%d/null", v)
	}
	return fmt.Sprintf("%d/%q", v, *note)
}

// invClient applies a slot's snapshot and changes to a map by key.
type invClient struct {
	ts     *testServer
	slot   string
	conn   *websocket.Conn
	state  map[int64]string
	frames int
}

func (c *invClient) start(ctx context.Context, reconnect bool) error {
	resp, err := http.Post(c.ts.url+"/v1/init", "application/json", nil)
	if err != nil {
		return err
	}
	var ir initResponse
	err = json.NewDecoder(resp.Body).Decode(&ir)
	resp.Body.Close()
	if err != nil || ir.SlotName == "" {
		return fmt.Errorf("init: %v", err)
	}
	c.slot = ir.SlotName
	after := ""
	for {
		body := fmt.Sprintf(`{"slotName":%q,"table":"kv","limit":37%s}`, c.slot, after)
		resp, err := http.Post(c.ts.url+"/v1/snapshot/data", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("snapshot: %d %s", resp.StatusCode, b)
		}
		var rows []struct {
			ID   int64   `json:"id"`
			V    int64   `json:"v"`
			Note *string `json:"note"`
		}
		if err := json.Unmarshal(b, &rows); err != nil {
			return err
		}
		for _, r := range rows {
			c.state[r.ID] = rowString(r.V, r.Note)
		}
		if len(rows) < 37 {
			break
		}
		after = fmt.Sprintf(`,"after":{"id":%d}`, rows[len(rows)-1].ID)
	}
	if err := c.dial(ctx); err != nil {
		return err
	}
	if reconnect {
		// Take some frames, ack half way, then drop without acking the rest.
		var acked string
		saved := maps.Clone(c.state)
		for i := range 20 {
			f, err := c.next(ctx, 20*time.Second)
			if err != nil {
				return err
			}
			if i == 9 {
				acked = f.NextLSN
				if err := c.ack(ctx, acked); err != nil {
					return err
				}
				saved = maps.Clone(c.state)
			}
		}
		c.conn.CloseNow()
		// What came after the ack comes again: start from the state then.
		// (Applying it twice would be as right: changes apply by key.)
		c.state = saved
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *invClient) dial(ctx context.Context) error {
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.ts.url, "http")+"/v1/lr/stream?slotName="+c.slot, nil)
	if err != nil {
		return err
	}
	conn.SetReadLimit(64 << 20)
	c.conn = conn
	return nil
}

func (c *invClient) ack(ctx context.Context, lsn string) error {
	return c.conn.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+lsn+`"}`))
}

// next reads a frame and applies it.
func (c *invClient) next(ctx context.Context, d time.Duration) (txnFrame, error) {
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, b, err := c.conn.Read(rctx)
	if err != nil {
		return txnFrame{}, err
	}
	var f txnFrame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil || f.Error != "" || f.NextLSN == "" {
		return f, fmt.Errorf("frame %s: %v", b, err)
	}
	for _, ch := range f.Change {
		switch ch["kind"] {
		case "insert", "update":
			names, values := ch["columnnames"].([]any), ch["columnvalues"].([]any)
			row := map[string]any{}
			for i, n := range names {
				row[n.(string)] = values[i]
			}
			id, _ := row["id"].(json.Number).Int64()
			v, _ := row["v"].(json.Number).Int64()
			var note *string
			if s, ok := row["note"].(string); ok {
				note = &s
			}
			c.state[id] = rowString(v, note)
		case "delete":
			keys := ch["oldkeys"].(map[string]any)["keyvalues"].([]any)
			id, _ := keys[0].(json.Number).Int64()
			delete(c.state, id)
		default:
			return f, fmt.Errorf("unexpected change %v", ch)
		}
	}
	c.frames++
	return f, nil
}

// catchUp reads and acks frames until the state is want.
func (c *invClient) catchUp(ctx context.Context, want map[int64]string) error {
	defer c.conn.Close(websocket.StatusNormalClosure, "")
	for !maps.Equal(c.state, want) {
		f, err := c.next(ctx, 20*time.Second)
		if err != nil {
			return fmt.Errorf("after %d frames, state differs from SELECT (%d rows, want %d): %v", c.frames, len(c.state), len(want), err)
		}
		if err := c.ack(ctx, f.NextLSN); err != nil {
			return err
		}
	}
	return nil
}
