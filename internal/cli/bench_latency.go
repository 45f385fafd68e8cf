package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// latencyTable is what the latency bench writes to, one row per
// transaction.
const latencyTable = "pgfeed_bench_latency"

// runLatency measures commit → consumer latency of one-row transactions at
// a steady rate, for pgfeed stream and pg_recvlogical (test_decoding with
// include-timestamp) side by side on the same writes: each line's commit
// time, as the server stamped it, against the time the line was read.
func runLatency(ctx context.Context, e *env, f *benchFlags, dsn string, db *pgx.Conn, self, recvlogical string) error {
	for _, stmt := range []string{
		"DROP TABLE IF EXISTS " + latencyTable,
		"CREATE TABLE " + latencyTable + " (id bigserial PRIMARY KEY, v int NOT NULL)",
		"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('pgfeed_lat_feed', 'pgfeed_lat_recv')",
		"DROP PUBLICATION IF EXISTS pgfeed_lat_feed",
		"SELECT pg_create_logical_replication_slot('pgfeed_lat_recv', 'test_decoding')",
	} {
		if _, err := db.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("preparing the latency bench: %w", err)
		}
	}
	defer db.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('pgfeed_lat_feed', 'pgfeed_lat_recv')") //nolint:errcheck // best effort
	feed := exec.CommandContext(ctx, self, "stream", "--dsn", dsn, "--slot", "pgfeed_lat_feed", "--create", "--tables", "public."+latencyTable)
	recv := exec.CommandContext(ctx, recvlogical, "-d", dsn, "--slot", "pgfeed_lat_recv", "--start", "-f", "-",
		"-o", "include-timestamp=1", "-o", "skip-empty-xacts=1")
	// The commit times test_decoding prints are in the session's time zone.
	recv.Env = append(os.Environ(), "PGOPTIONS=-c TimeZone=UTC")
	feedLat, recvLat := &latencies{}, &latencies{}
	var wg sync.WaitGroup
	for _, c := range []struct {
		cmd   *exec.Cmd
		lat   *latencies
		parse func(string) (time.Time, bool)
	}{{feed, feedLat, feedCommitTime}, {recv, recvLat, recvCommitTime}} {
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := c.cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", c.cmd.Path, err)
		}
		defer func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.lat.read(out, c.parse)
		}()
	}
	// pgfeed creates its slot: wait for it, so that every write is seen.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var n int
		_ = db.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgfeed_lat_feed' AND active").Scan(&n)
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgfeed stream did not start streaming")
		}
	}
	fmt.Fprintf(e.stderr, "bench: one-row transactions at %d/s for %v...\n", f.latencyRate, f.latencyFor)
	written, err := writeSteadily(ctx, dsn, f.latencyRate, f.latencyFor)
	if err != nil {
		return err
	}
	// Let the last lines arrive, then stop both consumers.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if feedLat.count() >= written && recvLat.count() >= written {
			break
		}
	}
	for _, c := range []*exec.Cmd{feed, recv} {
		_ = c.Process.Signal(os.Interrupt)
	}
	wg.Wait()
	rp50, rp99, rmax := recvLat.summary()
	fp50, fp99, fmax := feedLat.summary()
	if f.json {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		return writeJSONResult(e, latencyResult{
			Transactions: written, Rate: float64(written) / f.latencyFor.Seconds(),
			Clients: map[string]latencyFigures{
				"pg_recvlogical": {P50: ms(rp50), P99: ms(rp99), Max: ms(rmax), Lines: recvLat.count()},
				"pgfeed stream":  {P50: ms(fp50), P99: ms(fp99), Max: ms(fmax), Lines: feedLat.count()},
			},
			Ratios: latencyRatios{P50: float64(fp50) / float64(max(rp50, 1)), P99: float64(fp99) / float64(max(rp99, 1))},
		})
	}
	fmt.Fprintf(e.stdout, "latency: %d one-row transactions at %.0f/s\n", written, float64(written)/f.latencyFor.Seconds())
	fmt.Fprintf(e.stdout, "pg_recvlogical: p50 %v p99 %v max %v (%d lines)\n", rp50, rp99, rmax, recvLat.count())
	fmt.Fprintf(e.stdout, "pgfeed stream: p50 %v p99 %v max %v (%d lines; p50 %.2fx, p99 %.2fx pg_recvlogical's)\n",
		fp50, fp99, fmax, feedLat.count(), float64(fp50)/float64(max(rp50, 1)), float64(fp99)/float64(max(rp99, 1)))
	return nil
}

// latencyResult is what bench --latency --json prints.
type latencyResult struct {
	Transactions int                       `json:"transactions"`
	Rate         float64                   `json:"transactions_per_second"`
	Clients      map[string]latencyFigures `json:"latency_ms"` // commit → line read, per client
	Ratios       latencyRatios             `json:"ratios"`     // pgfeed stream's to pg_recvlogical's
}

type latencyFigures struct {
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Lines int     `json:"lines"`
}

type latencyRatios struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// writeSteadily commits one-row transactions at rate per second for d and
// returns how many it committed.
func writeSteadily(ctx context.Context, dsn string, rate int, d time.Duration) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		// Behind schedule: write at once; ahead: wait for the schedule.
		if due := start.Add(time.Duration(n) * time.Second / time.Duration(rate)); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
		if _, err := conn.Exec(ctx, "INSERT INTO "+latencyTable+" (v) VALUES ($1)", n); err != nil {
			return n, fmt.Errorf("writing: %w", err)
		}
		n++
	}
	return n, nil
}

// latencies collects, per transaction, read time minus commit time.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) read(r io.Reader, commitTime func(string) (time.Time, bool)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		now := time.Now()
		if at, ok := commitTime(sc.Text()); ok {
			l.mu.Lock()
			l.d = append(l.d, now.Sub(at))
			l.mu.Unlock()
		}
	}
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

func (l *latencies) summary() (p50, p99, worst time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(int(q*float64(len(s))), len(s)-1)].Round(10 * time.Microsecond)
	}
	return at(0.5), at(0.99), s[len(s)-1].Round(10 * time.Microsecond)
}

// feedCommitTime reads the commit time of a pgfeed JSON line.
func feedCommitTime(line string) (time.Time, bool) {
	var ev struct {
		Op         string    `json:"op"`
		CommitTime time.Time `json:"commit_time"`
	}
	if json.Unmarshal([]byte(line), &ev) != nil || ev.Op != "insert" {
		return time.Time{}, false
	}
	return ev.CommitTime, true
}

// recvCommitTime reads the commit time of test_decoding's
// "COMMIT 745 (at 2026-12-02 07:12:00.123456+00)".
func recvCommitTime(line string) (time.Time, bool) {
	_, at, ok := strings.Cut(line, "(at ")
	if !ok || !strings.HasPrefix(line, "COMMIT") {
		return time.Time{}, false
	}
	t, err := time.Parse("2006-01-02 15:04:05.999999-07", strings.TrimSuffix(at, ")"))
	return t, err == nil
}
