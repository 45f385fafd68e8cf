package source

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/internal/pgtest"
)

var pg *pgcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, &pg, pgcluster.Options{Settings: map[string]string{
		// Small, so that a modest transaction is streamed in progress (protocol v2).
		"logical_decoding_work_mem": "64kB",
	}}))
}

// open starts a stream on dsn with a fresh slot and publication, closed at the end of the test.
func open(t *testing.T, cfg Config) *Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// next waits for the next event that is not a begin/commit boundary (unless asked for).
func next(t *testing.T, s *Stream) *event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return e
}

// nothingFor asserts that no event arrives within d.
func nothingFor(t *testing.T, s *Stream, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if e, err := s.Next(ctx); err == nil {
		t.Fatalf("unexpected event %s", e.AppendJSON(nil))
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v", err)
	}
}

// asMap decodes an event's JSON, the way a consumer of the CLI sees it.
func asMap(t *testing.T, e *event.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.AppendJSON(nil), &m); err != nil {
		t.Fatalf("event JSON %s: %v", e.AppendJSON(nil), err)
	}
	return m
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// startWriters runs n goroutines, each with its own connection and random
// source, calling step until the returned stop is called (stop waits for them).
func startWriters(t *testing.T, dsn string, n int, seed uint64, step func(conn *pgx.Conn, r *rand.Rand)) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), dsn)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close(context.Background())
			r := rand.New(rand.NewPCG(uint64(w), seed))
			for ctx.Err() == nil {
				step(conn, r)
			}
		}()
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}
