package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// runStream feeds the slot's events through m to c in a goroutine, acking
// each transaction once applied, until the returned stop is called. With
// hold set at stop, the last batch is applied but not confirmed to the slot,
// as when a process dies between writing and acking.
func runStream(t *testing.T, s *testStream, m *Merger, c *consumer) (stop func(hold bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	var hold atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			n, err := s.poll(ctx, 500, !hold.Load(), func(e *event.Event) {
				for _, out := range m.Observe(e) {
					c.apply(t, out)
				}
			}, m.Ack)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("streaming: %v", err)
				}
				return
			}
			if n == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	return func(h bool) {
		hold.Store(h)
		cancel()
		<-done
	}
}

// drain applies what is left in the slot.
func drain(t *testing.T, ctx context.Context, s *testStream, m *Merger, c *consumer) {
	t.Helper()
	for {
		n, err := s.poll(ctx, 5000, true, func(e *event.Event) {
			for _, out := range m.Observe(e) {
				c.apply(t, out)
			}
		}, m.Ack)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// Composite, text and missing keys, walked against the real WAL.
func TestWalker(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	pgtest.Exec(t, conn,
		`CREATE TABLE comp (a int, b text, v int, PRIMARY KEY (a, b))`,
		`INSERT INTO comp SELECT g / 3, 'b' || (g % 3), g FROM generate_series(0, 599) g`,
		`CREATE TABLE txt (k text COLLATE "C" PRIMARY KEY, v text)`,
		`INSERT INTO txt SELECT 'k' || g, 'v' || g FROM generate_series(1, 300) g`,
		`INSERT INTO txt VALUES (E'tab\there', E'new\nline'), ('quote''s', NULL), ('Zürich €', 'x'), (E'back\\slash', ''), ('', 'empty key')`,
		`CREATE TABLE nokey (x int, y text)`,
		`INSERT INTO nokey SELECT g, 'y' || g FROM generate_series(1, 250) g`,
	)
	s := newTestStream(t, dsn)
	m := NewMerger()
	c := newConsumer()
	stop := runStream(t, s, m, c)
	defer stop(false)

	var logged strings.Builder
	var logMu sync.Mutex
	store := &MemoryProgress{}
	w := NewWalker(dsn, m, WalkerOptions{Source: "s", ChunkSize: 64, Progress: store, Publication: "p",
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logged}, nil))})
	defer w.Close(context.Background())

	for _, tc := range []struct {
		table string
		rows  int64
	}{{"comp", 600}, {"txt", 305}, {"nokey", 250}} {
		tab, err := Describe(ctx, conn, nil, tc.table)
		if err != nil {
			t.Fatal(err)
		}
		c.track(tab)
		p, err := w.Backfill(ctx, tc.table)
		if err != nil {
			t.Fatalf("%s: %v", tc.table, err)
		}
		if !p.Done || p.Rows != tc.rows {
			t.Errorf("%s: progress %+v, want %d rows done", tc.table, p, tc.rows)
		}
		c.check(t, ctx, conn, tab)
		if got := c.reads[tab.Name()]; got != int(tc.rows) {
			t.Errorf("%s: %d read events, want %d", tc.table, got, tc.rows)
		}
	}
	logMu.Lock()
	if !strings.Contains(logged.String(), `table \"public.nokey\" has no primary key`) {
		t.Errorf("no message about the table without key; log: %s", logged.String())
	}
	logMu.Unlock()

	// A done table is not read again.
	before := c.reads["public.comp"]
	if p, err := w.Backfill(ctx, "comp"); err != nil || !p.Done || c.reads["public.comp"] != before {
		t.Errorf("backfill of a done table: %+v, %v, reads %d -> %d", p, err, before, c.reads["public.comp"])
	}

	// Resuming from stored progress reads only the rest of the table.
	tab, _ := Describe(ctx, conn, nil, "comp")
	c.track(tab)
	store.SetProgress("s", "public.comp", Progress{LastKey: json.RawMessage(`["99","b1"]`), Rows: 299})
	p, err := w.Backfill(ctx, "comp")
	if err != nil || !p.Done || p.Rows != 600 {
		t.Fatalf("resumed: %+v, %v", p, err)
	}
	c.mu.Lock()
	if got := len(c.rows["public.comp"]); got != 301 {
		t.Errorf("resumed backfill delivered %d rows, want the 301 after (99, b1)", got)
	}
	for k := range c.rows["public.comp"] {
		if strings.HasPrefix(k, "99\x00b0") || strings.HasPrefix(k, "99\x00b1") || strings.HasPrefix(k, "1\x00") {
			t.Errorf("row %q at or before the stored key was read again", k)
		}
	}
	c.mu.Unlock()

	// Bad input: one clear line each.
	if _, err := w.Backfill(ctx, "nope"); !errors.As(err, new(*NotFoundError)) {
		t.Errorf("missing table: %v", err)
	}
	pgtest.Exec(t, conn, "CREATE PUBLICATION only_comp FOR TABLE comp", "CREATE TABLE outside (id int PRIMARY KEY)")
	w2 := NewWalker(dsn, m, WalkerOptions{Publication: "only_comp"})
	defer w2.Close(context.Background())
	if _, err := w2.Backfill(ctx, "outside"); err == nil || !strings.Contains(err.Error(), `table "public.outside" is not in publication "only_comp", so its changes are not streamed: run ALTER PUBLICATION "only_comp" ADD TABLE "public"."outside"`) {
		t.Errorf("table outside the publication: %v", err)
	}
	store.SetProgress("s", "public.txt", Progress{LastKey: json.RawMessage(`["a","b"]`)})
	if _, err := w.Backfill(ctx, "txt"); err == nil || !strings.Contains(err.Error(), "does not match the table's key") {
		t.Errorf("stored key of the wrong shape: %v", err)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// countingStore records the progress a Walker starts from and cancels a
// context once enough rows are stored, to stop a Walker mid-table.
type countingStore struct {
	MemoryProgress
	mu        sync.Mutex
	started   []Progress
	stopAfter int64
	stop      context.CancelFunc
}

func (s *countingStore) Progress(source, table string) (Progress, bool, error) {
	p, ok, err := s.MemoryProgress.Progress(source, table)
	s.mu.Lock()
	s.started = append(s.started, p)
	s.mu.Unlock()
	return p, ok, err
}

func (s *countingStore) SetProgress(source, table string, p Progress) error {
	err := s.MemoryProgress.SetProgress(source, table, p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil && p.Rows >= s.stopAfter {
		s.stop()
		s.stop = nil
	}
	return err
}

// walkerAt returns the last key a walker of table big stored.
func walkerAt(s ProgressStore) int {
	p, _, _ := s.Progress("s", "public.big")
	var key []string
	if json.Unmarshal(p.LastKey, &key) != nil || len(key) != 1 {
		return 0
	}
	n, _ := strconv.Atoi(key[0])
	return n
}

// slowSink widens each chunk's window, as a slow network between walker
// and database would: the high watermark is written a while after the
// chunk was read, so that writes land between the two.
type slowSink struct{ m *Merger }

func (s slowSink) AddChunk(c *Chunk) error {
	time.Sleep(10 * time.Millisecond)
	return s.m.AddChunk(c)
}

// The state invariant across a backfill that runs while writers insert,
// update (keys too) and delete rows of the table, with the walker and the
// stream consumer killed mid-table and restarted: applying everything
// delivered gives exactly the table, and the second walker resumed from
// the stored key instead of starting over.
func TestBackfillWhileWriting(t *testing.T) {
	ctx := testCtx(t)
	dsn, conn := newDB(t)
	const rows, chunkSize = 4000, 50
	store := &countingStore{stopAfter: rows / 3}
	pgtest.Exec(t, conn,
		`CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, s text)`,
		`INSERT INTO big SELECT g * 2, 0, md5(g::text) FROM generate_series(1, 4000) g`,
	)
	tab, err := Describe(ctx, conn, nil, "big")
	if err != nil {
		t.Fatal(err)
	}
	s := newTestStream(t, dsn)
	c := newConsumer()
	c.track(tab)

	// Writers: small transactions of random changes, until told to stop.
	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	defer func() {
		stopWriters()
		writers.Wait()
	}()
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			wc, err := Connect(ctx, dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer wc.Close(context.Background())
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for wctx.Err() == nil {
				id := rnd.IntN(2 * rows * 11 / 10)
				if rnd.IntN(3) > 0 {
					// Most writes go to the rows the walker reads next, so
					// that they land inside chunk windows.
					id = walkerAt(&store.MemoryProgress) + rnd.IntN(2*chunkSize)
				}
				var sql string
				switch rnd.IntN(10) {
				case 0, 1, 2:
					sql = `INSERT INTO big VALUES ($1, 1, 'ins') ON CONFLICT (id) DO UPDATE SET v = big.v + 1`
				case 3, 4, 5, 6:
					sql = `UPDATE big SET v = v + 1, s = s || '.' WHERE id = $1`
				case 7:
					sql = `UPDATE big SET id = id + 1 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM big WHERE id = $1 + 1)`
				default:
					sql = `DELETE FROM big WHERE id = $1`
				}
				if _, err := wc.Exec(wctx, sql, id); err != nil && wctx.Err() == nil &&
					!strings.Contains(err.Error(), "duplicate key") && !strings.Contains(err.Error(), "deadlock") {
					t.Errorf("writer: %v", err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	time.Sleep(200 * time.Millisecond) // a backlog for the stream to work through

	// First run: killed once about a third of the table is stored.
	m := NewMerger()
	stopStream := runStream(t, s, m, c)
	runCtx, kill := context.WithCancel(ctx)
	store.stop = kill
	w := NewWalker(dsn, slowSink{m}, WalkerOptions{Source: "s", ChunkSize: chunkSize, Progress: store})
	if _, err := w.Backfill(runCtx, "big"); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run ended with %v, want it killed", err)
	}
	w.Close(context.Background())
	stopStream(true) // its last batch is applied but never confirmed
	stored, _, _ := store.MemoryProgress.Progress("s", "public.big")
	if stored.Done || stored.Rows < rows/3 || len(stored.LastKey) == 0 {
		t.Fatalf("progress after the kill: %+v", stored)
	}

	// Second run: a fresh consumer, merger and walker; the stream redelivers
	// from the slot's confirmed position.
	s = s.reopen(dsn)
	m = NewMerger()
	stopStream = runStream(t, s, m, c)
	w = NewWalker(dsn, slowSink{m}, WalkerOptions{Source: "s", ChunkSize: chunkSize, Progress: store})
	defer w.Close(context.Background())
	p, err := w.Backfill(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the writers overlap the end of the walk
	stopWriters()
	writers.Wait()
	stopStream(false)
	drain(t, ctx, s.reopen(dsn), m, c)

	store.mu.Lock()
	resumedFrom := store.started[len(store.started)-1]
	store.mu.Unlock()
	if string(resumedFrom.LastKey) != string(stored.LastKey) || resumedFrom.Rows != stored.Rows {
		t.Errorf("second run started from %+v, want the stored %+v", resumedFrom, stored)
	}
	var final int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&final); err != nil {
		t.Fatal(err)
	}
	if !p.Done || p.Rows-stored.Rows >= final-stored.Rows/2 {
		t.Errorf("second run read %d rows of a table of %d after %d were stored: it did not resume", p.Rows-stored.Rows, final, stored.Rows)
	}
	c.check(t, ctx, conn, tab)
	t.Logf("first run stored %d rows; second run read %d more; %d read events in all", stored.Rows, p.Rows-stored.Rows, c.reads["public.big"])
}
