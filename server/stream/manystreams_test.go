package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// TestManyStreamsManyClients: 10 v2 streams, each of a table of its own,
// served at once while writers write all ten; each stream is read by 5
// clients in turn (one client per stream at a time), each acking some of
// what it read and then leaving. The invariant, per stream: every client
// starts right after the last ack, and every change comes exactly once
// in commit order from there, up to the last row written.
func TestManyStreamsManyClients(t *testing.T) {
	const (
		streams = 10
		clients = 5  // per stream, in turn
		rows    = 60 // per table
	)
	dsn := pgtest.CreateDB(t, pg, "manystreams")
	db := pgtest.Connect(t, dsn)
	ts := startServer(t, dsn, Options{})
	for i := range streams {
		pgtest.Exec(t, db, fmt.Sprintf(`CREATE TABLE s%d (seq int PRIMARY KEY)`, i))
		if code, body := ts.post(t, "/v2/streams", fmt.Sprintf(`{"name":"s%d","tables":["public.s%d"]}`, i, i)); code != 201 {
			t.Fatalf("create s%d: %d %s", i, code, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Two writers, each the only one of its five tables: a table's seq
	// order is its commit order.
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			for n := 1; n <= rows; n++ {
				for i := w; i < streams; i += 2 {
					if _, err := conn.Exec(ctx, fmt.Sprintf(`INSERT INTO s%d VALUES (%d)`, i, n)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}

	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readInTurns(ctx, ts.url, fmt.Sprintf("s%d", i), clients, rows); err != nil {
				t.Errorf("stream s%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
}

// readInTurns reads stream name with n clients one after another, checking
// that each starts right after the last ack and sees every seq in order.
func readInTurns(ctx context.Context, base, name string, n, rows int) error {
	acked := 0 // the seq of the last row acked
	for k := range n {
		last := k == n-1
		conn, err := dialStream(ctx, base, name)
		if err != nil {
			return err
		}
		next := acked + 1 // the stream resumes right after the last ack
		// Each client but the last reads a share and acks all but the
		// last two rows it read, which its successor must get again.
		upTo := min(rows, (k+1)*rows/n+2)
		if last {
			upTo = rows
		}
		var lsns []string
		for next <= upTo {
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			_, b, err := conn.Read(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("client %d, waiting for seq %d: %w", k, next, err)
			}
			var f struct {
				Op        string `json:"op"`
				CommitLSN string `json:"commit_lsn"`
				After     struct {
					Seq int `json:"seq"`
				} `json:"after"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				return fmt.Errorf("client %d: frame %s: %w", k, b, err)
			}
			if f.Error != "" {
				return fmt.Errorf("client %d: error frame %q", k, f.Error)
			}
			if f.Op != "insert" || f.After.Seq != next {
				return fmt.Errorf("client %d: got %s seq %d, want insert seq %d (last ack %d)", k, f.Op, f.After.Seq, next, acked)
			}
			lsns = append(lsns, f.CommitLSN)
			next++
		}
		keep := 2
		if last {
			keep = 0
		}
		if i := len(lsns) - 1 - keep; i >= 0 {
			msg := `{"lsn":"` + lsns[i] + `"}`
			if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return fmt.Errorf("client %d: acking: %w", k, err)
			}
			acked = next - 1 - keep
		}
		// The server takes the ack before the close: messages of one
		// connection are read in order.
		conn.Close(websocket.StatusNormalClosure, "")
	}
	return nil
}

// dialStream connects to a stream. The server waits a moment for the
// previous client's session to end before it refuses a second client.
func dialStream(ctx context.Context, base, name string) (*websocket.Conn, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/v2/streams/" + name + "/ws"
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", name, err)
	}
	conn.SetReadLimit(1 << 20)
	return conn, nil
}
