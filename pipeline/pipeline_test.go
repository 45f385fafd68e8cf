package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/route"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/source"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &pg, pgcluster.Options{})) }

func openStore(t *testing.T) *checkpoint.Store {
	t.Helper()
	s, err := checkpoint.Open(filepath.Join(t.TempDir(), "pgfeed.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSink(t *testing.T, name, src string, s sink.Sink) Sink {
	t.Helper()
	r, err := route.New(route.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return Sink{Name: name, Sources: []string{src}, Sink: s, Router: r, Encoder: encode.JSON{}}
}

// run starts the pipeline and returns a function that stops it and returns Run's error.
func run(t *testing.T, p *Pipeline) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("pipeline did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readState applies every event of a file sink's folder to a map by id.
func readState(t *testing.T, dir string) (map[int]map[string]any, bool) {
	t.Helper()
	files, err := file.Files(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	state := map[int]map[string]any{}
	marker := false
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e struct {
				Op     string         `json:"op"`
				Table  string         `json:"table"`
				Key    map[string]any `json:"key"`
				Before map[string]any `json:"before"`
				After  map[string]any `json:"after"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				continue // the line a crash cut short; the sink drops it on reopen
			}
			if e.Table == "marker" {
				marker = marker || e.Op == "insert" // a change, not a snapshot row
				continue
			}
			switch e.Op {
			case "insert", "update", "read":
				if e.Before != nil {
					delete(state, int(e.Before["id"].(float64)))
				}
				state[int(e.After["id"].(float64))] = e.After
			case "delete":
				delete(state, int(e.Key["id"].(float64)))
			}
		}
	}
	return state, marker
}

func tableState(t *testing.T, db *pgx.Conn) map[int]map[string]any {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT id, val FROM items")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]map[string]any{}
	for rows.Next() {
		var id, val int
		if err := rows.Scan(&id, &val); err != nil {
			t.Fatal(err)
		}
		want[id] = map[string]any{"id": float64(id), "val": float64(val)}
	}
	return want
}

func compareState(t *testing.T, got, want map[int]map[string]any) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("empty table: the workload did nothing")
	}
	if !reflect.DeepEqual(got, want) {
		n := 0
		for id, w := range want {
			if !reflect.DeepEqual(got[id], w) && n < 10 {
				t.Errorf("id %d: sink %v, table %v", id, got[id], w)
				n++
			}
		}
		t.Fatalf("state invariant broken: %d rows in the sink, %d in the table", len(got), len(want))
	}
}

// writer makes random changes to items until ctx ends, reconnecting when
// the server goes away (the test restarts it).
func writer(ctx context.Context, dsn string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	var conn *pgx.Conn
	for ctx.Err() == nil {
		if conn == nil {
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			conn = c
		}
		id := 1 + r.IntN(200)
		// Not cancelled by ctx: a statement cancelled on the client side
		// may still commit on the server after the test read the table's
		// end, so each one runs to its end.
		stmt := context.WithoutCancel(ctx)
		var err error
		switch op := r.IntN(10); {
		case op < 5:
			_, err = conn.Exec(stmt, "INSERT INTO items VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET val = $2", id, r.IntN(1000))
		case op < 8:
			_, err = conn.Exec(stmt, "UPDATE items SET val = val + 1 WHERE id = $1", id)
		default:
			_, err = conn.Exec(stmt, "DELETE FROM items WHERE id = $1", id)
		}
		if err != nil && conn.IsClosed() {
			conn = nil
		}
	}
	if conn != nil {
		conn.Close(context.Background())
	}
}

// PostgreSQL restarted mid-stream, with a fast and then an immediate
// shutdown: the pipeline reconnects with backoff, resumes from its last
// ack, and the file sink ends up with exactly the table's state.
func TestReconnectAfterPostgresRestart(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "restart")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	fs, err := file.Open(dir, file.Options{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	p := &Pipeline{
		Sources:    []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "restart", Create: true}}},
		Sinks:      []Sink{newSink(t, "files", "main", fs)},
		Store:      store,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'restart' AND active").Scan(&n)
		return n == 1
	})

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); writer(ctx, dsn, uint64(i)) }()
	}
	for _, mode := range []string{"fast", "immediate"} {
		time.Sleep(time.Second)
		if err := pg.Restart(context.Background(), mode); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	stopWriters()
	wg.Wait()

	db = pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
	waitFor(t, "the marker in the sink", func() bool { _, m := readState(t, dir); return m })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, _ := readState(t, dir)
	compareState(t, got, tableState(t, db))
	if p.Stats("files").Events.Load() == 0 {
		t.Fatal("no events written")
	}
}

// slowSink delays every Write, like a sink whose destination is slow.
type slowSink struct {
	delay   time.Duration
	mu      sync.Mutex
	records int
}

func (s *slowSink) Write(ctx context.Context, batch []sink.Record) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	s.records += len(batch)
	s.mu.Unlock()
	return nil
}

func (s *slowSink) Close() error { return nil }

func (s *slowSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// A slow sink under a fast writer: the events queued for it stay within the
// configured bounds (the source stops reading instead), and nothing is lost.
func TestSlowSinkBackpressure(t *testing.T) {
	const rows = 60_000
	dsn := pgtest.CreateDB(t, pg, "slow")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int, pad text)")
	slow := &slowSink{delay: 20 * time.Millisecond}
	k := newSink(t, "slow", "main", slow)
	k.MaxBatch, k.MaxBatchBytes, k.QueueBatches = 500, 128<<10, 2
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "slow", Create: true}}},
		Sinks:   []Sink{k},
		Store:   openStore(t),
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slow' AND active").Scan(&n)
		return n == 1
	})
	for i := 0; i < rows; i += 1000 {
		_, err := db.Exec(context.Background(), "INSERT INTO items SELECT g, g, repeat('x', 200) FROM generate_series($1::int, $1::int + 999) g", i)
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d rows in the slow sink", rows), func() bool { return slow.count() >= rows })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if slow.count() != rows {
		t.Fatalf("sink got %d records, want %d", slow.count(), rows)
	}
	// The queue holds at most QueueBatches full batches, plus the one being
	// built and the one being written.
	bound := int64(k.QueueBatches+2) * int64(k.MaxBatchBytes+4096)
	st := p.Stats("slow")
	if hw := st.MaxQueuedBytes.Load(); hw > bound {
		t.Fatalf("queued bytes peaked at %d, bound %d", hw, bound)
	}
	t.Logf("queued bytes high-water %d KiB (bound %d KiB) for %d rows of ~%d KiB", st.MaxQueuedBytes.Load()>>10, bound>>10, rows, rows*450>>10)
}
