package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/source"
)

// BenchmarkStream measures changes per second from a table to one
// WebSocket client that acks every frame, in pgdeltastream's wal2json
// frames and in native json frames (one per change). Writes are
// transactions of 1000 rows, made before the client connects, so that the
// figure is the server's, not the writer's.
//
//	go test -run XXX -bench Stream -benchtime 100000x ./server/stream/
func BenchmarkStream(b *testing.B) {
	for _, format := range []string{"direct", "wal2json", "json"} {
		b.Run(format, func(b *testing.B) {
			dsn := pgtest.CreateDB(b, pg, "bench_"+format)
			db := pgtest.Connect(b, dsn)
			pgtest.Exec(b, db, `CREATE TABLE t (id int PRIMARY KEY, name text, v numeric, at timestamptz)`)
			ts := startServer(b, dsn, Options{})
			slot := ts.init(b)
			for i := 0; i < b.N; i += 1000 {
				pgtest.Exec(b, db, fmt.Sprintf(`INSERT INTO t SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(%d, %d) g`, i+1, min(i+1000, b.N)))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			if format == "direct" {
				// The baseline: the same slot read by source.Stream itself,
				// as pgfeed stream or run read it, with nothing after it.
				ts.Server.releaseSnapshotOf(slot)
				st, err := source.Open(ctx, source.Config{DSN: dsn, Slot: slot, Tables: []string{"*.*"}, Create: true, ExpectSlot: true})
				if err != nil {
					b.Fatal(err)
				}
				defer st.Close()
				for n := 0; n < b.N; n++ {
					e, err := st.Next(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if n%1000 == 999 {
						_ = st.Ack(e.CommitLSN)
					}
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
				return
			}
			conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName="+slot+"&format="+format, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.CloseNow()
			conn.SetReadLimit(64 << 20)
			changes := 0
			for changes < b.N {
				_, msg, err := conn.Read(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if format == "json" {
					changes++
					if changes%1000 == 0 {
						i := bytes.Index(msg, []byte(`"commit_lsn":"`))
						j := bytes.IndexByte(msg[i+14:], '"')
						_ = conn.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+string(msg[i+14:i+14+j])+`"}`))
					}
					continue
				}
				changes += bytes.Count(msg, []byte(`{"kind":`))
				if i := bytes.Index(msg, []byte(`"nextlsn":"`)); i >= 0 {
					j := bytes.IndexByte(msg[i+11:], '"')
					_ = conn.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+string(msg[i+11:i+11+j])+`"}`))
				}
			}
			b.ReportMetric(float64(changes)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkStreamClients measures the changes per second delivered in all
// to 10 WebSocket clients, each on a slot of its own, wal2json frames,
// each client acking every frame.
func BenchmarkStreamClients(b *testing.B) {
	const clients = 10
	dsn := pgtest.CreateDB(b, pg, "bench_clients")
	db := pgtest.Connect(b, dsn)
	pgtest.Exec(b, db, `CREATE TABLE t (id int PRIMARY KEY, name text, v numeric, at timestamptz)`)
	ts := startServer(b, dsn, Options{})
	slots := make([]string, clients)
	for i := range slots {
		slots[i] = ts.init(b)
	}
	for i := 0; i < b.N; i += 1000 {
		pgtest.Exec(b, db, fmt.Sprintf(`INSERT INTO t SELECT g, 'name ' || g, g * 1.5, now() FROM generate_series(%d, %d) g`, i+1, min(i+1000, b.N)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	errs := make(chan error, clients)
	for _, slot := range slots {
		go func() {
			conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName="+slot, nil)
			if err != nil {
				errs <- err
				return
			}
			defer conn.CloseNow()
			conn.SetReadLimit(64 << 20)
			for changes := 0; changes < b.N; {
				_, msg, err := conn.Read(ctx)
				if err != nil {
					errs <- err
					return
				}
				changes += bytes.Count(msg, []byte(`{"kind":`))
				if i := bytes.Index(msg, []byte(`"nextlsn":"`)); i >= 0 {
					j := bytes.IndexByte(msg[i+11:], '"')
					_ = conn.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+string(msg[i+11:i+11+j])+`"}`))
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(clients*b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkLatency measures commit-to-client latency at 5000 rows/s (50
// rows every 10ms, each its own statement's transaction) to one wal2json
// client: each row carries clock_timestamp(), the client notes when its
// frame arrived. One op is one 10ms tick.
//
//	go test -run XXX -bench Latency -benchtime 500x ./server/stream/
func BenchmarkLatency(b *testing.B) {
	dsn := pgtest.CreateDB(b, pg, "bench_latency")
	db := pgtest.Connect(b, dsn)
	pgtest.Exec(b, db, `CREATE TABLE t (id int PRIMARY KEY, at timestamptz)`)
	ts := startServer(b, dsn, Options{})
	slot := ts.init(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http")+"/v1/lr/stream?slotName="+slot, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.CloseNow()
	var lat []time.Duration
	done := make(chan error, 1)
	go func() {
		for n := 0; n < b.N*50; {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				done <- err
				return
			}
			now := time.Now()
			var f txnFrame
			if err := json.Unmarshal(msg, &f); err != nil {
				done <- err
				return
			}
			for _, ch := range f.Change {
				at, err := time.Parse("2006-01-02 15:04:05.999999-07", ch["columnvalues"].([]any)[1].(string))
				if err != nil {
					done <- err
					return
				}
				lat = append(lat, now.Sub(at))
				n++
			}
			_ = conn.Write(ctx, websocket.MessageText, []byte(`{"lsn":"`+f.NextLSN+`"}`))
		}
		done <- nil
	}()
	b.ResetTimer()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range b.N {
		<-tick.C
		for j := range 50 {
			if _, err := db.Exec(ctx, `INSERT INTO t VALUES ($1, clock_timestamp())`, i*50+j); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// releaseSnapshotOf lets a benchmark open a slot of the server itself.
func (s *Server) releaseSnapshotOf(name string) {
	s.mu.Lock()
	sl := s.slots[name]
	s.mu.Unlock()
	if sl != nil {
		sl.releaseSnapshot()
	}
}
