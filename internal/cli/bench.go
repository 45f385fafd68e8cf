package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgfeed/pgfeed/internal/pgcluster"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

// tomlStrings writes a TOML array of strings.
func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

type benchFlags struct {
	conn       connFlags
	rows       int
	txnSize    int
	rounds     int
	cpuprofile string
	sinks      []string // extra sinks to run to, each against a local server
	kafka      []string // brokers for the kafka sinks; empty: a kfake cluster in this process
	// latency measures commit → consumer latency instead of throughput.
	latency     bool
	latencyRate int
	latencyFor  time.Duration
	json        bool // one JSON object on stdout instead of lines
}

func newBenchCmd(e *env) *cobra.Command {
	var f benchFlags
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure pgfeed stream and pgfeed run against pg_recvlogical on the same workload, as ratios",
		Long: `Write one workload (inserts, updates and deletes of a mixed-type table), then
decode it from the WAL with pg_recvlogical (pgoutput, output to /dev/null) and with
pgfeed stream (JSON lines to /dev/null) and pgfeed run (to the discard sink and to the
file sink), each from its own slot created before the workload, in alternating rounds.
Prints rows/s of each and pgfeed's ratios.

Without --dsn it runs a throwaway PostgreSQL of its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd.Context(), e, &f) },
	}
	f.conn.register(c)
	c.Flags().IntVar(&f.rows, "rows", 300_000, "rows inserted (plus 10% updated and 5% deleted)")
	c.Flags().IntVar(&f.txnSize, "txn-size", 1000, "changes per transaction")
	c.Flags().StringVar(&f.cpuprofile, "cpuprofile", "", "write CPU profiles of the pgfeed runs to FILE.<round>")
	c.Flags().StringSliceVar(&f.sinks, "sink", nil, "also measure pgfeed run to these sinks, each against a local server it starts: webhook, kafka (idempotent, and exactly-once), nats, redis")
	c.Flags().StringSliceVar(&f.kafka, "kafka-brokers", nil, "brokers for --sink kafka (default: an in-process kfake cluster)")
	c.Flags().BoolVar(&f.latency, "latency", false, "measure commit-to-consumer latency of one-row transactions instead of throughput, against pg_recvlogical")
	c.Flags().IntVar(&f.latencyRate, "latency-rate", 5000, "one-row transactions per second for --latency")
	c.Flags().DurationVar(&f.latencyFor, "latency-for", 10*time.Second, "how long --latency writes")
	c.Flags().BoolVar(&f.json, "json", false, "print the results as one JSON object (rates in rows/s, latencies in milliseconds, ratios), for machines")
	c.Flags().IntVar(&f.rounds, "rounds", 2, "rounds of (pg_recvlogical, pgfeed) on the same WAL; the best of each counts")
	return c
}

func runBench(ctx context.Context, e *env, f *benchFlags) error {
	if f.rows <= 0 || f.txnSize <= 0 || f.rounds <= 0 {
		return fmt.Errorf("--rows, --txn-size and --rounds must be positive")
	}
	for _, k := range f.sinks {
		if !slices.Contains([]string{"webhook", "kafka", "nats", "redis"}, k) {
			return fmt.Errorf("--sink %s: not available to bench (have: webhook, kafka, nats, redis)", k)
		}
	}
	if i := slices.Index(f.sinks, "kafka"); i >= 0 {
		// Kafka is measured twice: idempotent, and exactly-once.
		f.sinks = slices.Insert(f.sinks, i+1, "kafka-txn")
		if len(f.kafka) == 0 {
			kc, err := kfake.NewCluster(kfake.NumBrokers(1))
			if err != nil {
				return fmt.Errorf("starting an in-process kafka: %w", err)
			}
			defer kc.Close()
			f.kafka = kc.ListenAddrs()
		}
	}
	binDir, err := pgcluster.FindBinDir()
	if err != nil {
		return err
	}
	recvlogical := filepath.Join(binDir, "pg_recvlogical")
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the pgfeed binary: %w", err)
	}
	dsn := f.conn.resolve(e)
	if dsn == "" {
		fmt.Fprintln(e.stderr, "bench: starting a throwaway PostgreSQL...")
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{BinDir: binDir})
		if err != nil {
			return err
		}
		defer cluster.Remove()
		dsn = cluster.DSN("")
	}
	db, err := source.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	if f.latency {
		if f.latencyRate <= 0 || f.latencyFor <= 0 {
			return fmt.Errorf("--latency-rate and --latency-for must be positive")
		}
		return runLatency(ctx, e, f, dsn, db, self, recvlogical)
	}

	const pub = "pgfeed_bench"
	// Per round: pg_recvlogical, pgfeed stream, pgfeed run to discard, pgfeed run to files.
	const perRound = 4
	slots := make([]string, 0, perRound*f.rounds)
	for r := 0; r < f.rounds; r++ {
		slots = append(slots, fmt.Sprintf("pgfeed_bench_recv_%d", r), fmt.Sprintf("pgfeed_bench_feed_%d", r),
			fmt.Sprintf("pgfeed_bench_run_discard_%d", r), fmt.Sprintf("pgfeed_bench_run_file_%d", r))
	}
	// The extra sinks' slots come after, one per sink and round.
	for _, k := range f.sinks {
		for r := 0; r < f.rounds; r++ {
			slots = append(slots, fmt.Sprintf("pgfeed_bench_run_%s_%d", k, r))
		}
	}
	extraSlot := func(i, r int) string { return slots[perRound*f.rounds+i*f.rounds+r] }
	extraSettings := map[string]string{}
	if slices.Contains(f.sinks, "webhook") {
		url, stop, err := benchWebhook()
		if err != nil {
			return err
		}
		defer stop()
		extraSettings["webhook"] = fmt.Sprintf("url = %q\nmax_in_flight = 2\n", url)
	}
	for _, k := range []string{"nats", "redis"} {
		if !slices.Contains(f.sinks, k) {
			continue
		}
		addr, stop, err := benchServer(ctx, k)
		if err != nil {
			return err
		}
		defer stop()
		if k == "nats" {
			extraSettings[k] = fmt.Sprintf("url = \"nats://%s\"\nsubject = \"pgfeedbench.{round}.{table}\"\nstream = \"PGFEED_BENCH_{round}\"\ncreate_stream = true\n", addr)
		} else {
			extraSettings[k] = fmt.Sprintf("addr = %q\nstream = \"pgfeed-bench:{round}:{table}\"\n", addr)
		}
	}
	if slices.Contains(f.sinks, "kafka") {
		extraSettings["kafka"] = fmt.Sprintf("brokers = %s\ntopic = \"pgfeed-bench.kafka.{round}\"\ncreate_topics = true\npartitions = 6\n", tomlStrings(f.kafka))
		extraSettings["kafka-txn"] = fmt.Sprintf("brokers = %s\ntopic = \"pgfeed-bench.kafka-txn.{round}\"\ncreate_topics = true\npartitions = 6\ntransactional = true\ntransactional_id = \"pgfeed-bench-%d-{round}\"\n", tomlStrings(f.kafka), os.Getpid())
	}
	work, err := os.MkdirTemp("", "pgfeed-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cleanup := func() {
		for _, s := range slots {
			_, _ = db.Exec(context.Background(), "SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1", s)
		}
		_, _ = db.Exec(context.Background(), "DROP PUBLICATION IF EXISTS "+pub)
		_, _ = db.Exec(context.Background(), "DROP TABLE IF EXISTS pgfeed_bench")
	}
	cleanup()
	defer cleanup()
	setup := []string{
		`CREATE TABLE pgfeed_bench(id bigint PRIMARY KEY, qty integer, price numeric(12,2), name text, active boolean,
			created timestamptz, attrs jsonb, tags text[], ref uuid, ratio double precision)`,
		"CREATE PUBLICATION " + pub + " FOR TABLE pgfeed_bench",
	}
	for _, s := range setup {
		if _, err := db.Exec(ctx, s); err != nil {
			return fmt.Errorf("preparing the benchmark: %w", err)
		}
	}
	// The server's own decode rate, with no client at all: a slot read
	// with pg_logical_slot_peek_binary_changes, which does not consume.
	const peekSlot = "pgfeed_bench_peek"
	for _, s := range append(slices.Clone(slots), peekSlot) {
		if _, err := db.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", s); err != nil {
			return fmt.Errorf("creating slot %s: %w", s, err)
		}
	}

	fmt.Fprintf(e.stderr, "bench: writing %d inserts, %d updates, %d deletes in transactions of %d...\n", f.rows, f.rows/10, f.rows/20, f.txnSize)
	changes, err := benchWorkload(ctx, db, f.rows, f.txnSize)
	if err != nil {
		return err
	}
	var end string
	if err := db.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
		return err
	}

	best := map[string]time.Duration{}
	timed := func(name string, cmd *exec.Cmd) error {
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		elapsed := time.Since(start)
		if err != nil {
			return fmt.Errorf("running %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
		}
		fmt.Fprintf(e.stderr, "bench: %-14s %8.0f rows/s (%v)\n", name, float64(changes)/elapsed.Seconds(), elapsed.Round(time.Millisecond))
		if b, ok := best[name]; !ok || elapsed < b {
			best[name] = elapsed
		}
		return nil
	}
	peek := func() error {
		start := time.Now()
		var n int64
		err := db.QueryRow(ctx, `SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, NULL,
			'proto_version', '1', 'publication_names', $3, 'messages', 'true')`, peekSlot, end, pub).Scan(&n)
		if err != nil {
			return fmt.Errorf("timing the server's decoding: %w", err)
		}
		elapsed := time.Since(start)
		fmt.Fprintf(e.stderr, "bench: %-14s %8.0f rows/s (%v, %d messages)\n", "server decode", float64(changes)/elapsed.Seconds(), elapsed.Round(time.Millisecond), n)
		if b, ok := best["server decode"]; !ok || elapsed < b {
			best["server decode"] = elapsed
		}
		return nil
	}
	runConfig := func(r int, sinkType string) (string, error) {
		slot := slots[perRound*r+2]
		extra := ""
		if sinkType == "file" {
			slot = slots[perRound*r+3]
			extra = fmt.Sprintf("path = %q\nrotate_bytes = \"256MiB\"\n", filepath.Join(work, fmt.Sprintf("files-%d", r)))
		}
		if i := slices.Index(f.sinks, sinkType); i >= 0 {
			// Each round writes to its own topic (and transactional id).
			slot, extra = extraSlot(i, r), strings.ReplaceAll(extraSettings[sinkType], "{round}", strconv.Itoa(r))
		}
		kind := strings.TrimSuffix(sinkType, "-txn")
		path := filepath.Join(work, fmt.Sprintf("%s-%d.toml", sinkType, r))
		cfg := fmt.Sprintf("checkpoint = %q\n[log]\nlevel = \"warn\"\n[sources.main]\ndsn = %q\nslot = %q\npublication = %q\n[sinks.out]\ntype = %q\nsources = [\"main\"]\n%s",
			filepath.Join(work, fmt.Sprintf("%s-%d.db", sinkType, r)), dsn, slot, pub, kind, extra)
		return path, os.WriteFile(path, []byte(cfg), 0o600)
	}
	for r := 0; r < f.rounds; r++ {
		discardCfg, err := runConfig(r, "discard")
		if err != nil {
			return err
		}
		fileCfg, err := runConfig(r, "file")
		if err != nil {
			return err
		}
		runDiscard := exec.CommandContext(ctx, self, "run", "--config", discardCfg, "--endpos", end)
		runFile := exec.CommandContext(ctx, self, "run", "--config", fileCfg, "--endpos", end)
		recv := exec.CommandContext(ctx, recvlogical, "-d", dsn, "--slot", slots[perRound*r], "--start", "--endpos", end, "--no-loop",
			"-o", "proto_version=2", "-o", "publication_names="+pub, "-o", "messages=true", "-o", "streaming=on", "-f", os.DevNull)
		feed := exec.CommandContext(ctx, self, "stream", "--dsn", dsn, "--slot", slots[perRound*r+1], "--publication", pub, "--endpos", end)
		if f.cpuprofile != "" {
			feed.Args = append(feed.Args, "--cpuprofile", fmt.Sprintf("%s.%d", f.cpuprofile, r))
		}
		// pgfeed writes JSON lines to /dev/null (exec opens it when Stdout is nil).
		steps := []func() error{
			peek,
			func() error { return timed("pg_recvlogical", recv) },
			func() error { return timed("pgfeed stream", feed) },
			func() error { return timed("run discard", runDiscard) },
			func() error { return timed("run file", runFile) },
		}
		for _, k := range f.sinks {
			cfg, err := runConfig(r, k)
			if err != nil {
				return err
			}
			cmd := exec.CommandContext(ctx, self, "run", "--config", cfg, "--endpos", end)
			steps = append(steps, func() error { return timed("run "+k, cmd) })
		}
		if r%2 == 1 { // alternate, so that none always reads a warmer cache
			slices.Reverse(steps)
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	rate := func(name string) float64 { return float64(changes) / best[name].Seconds() }
	recvRate, serverRate := rate("pg_recvlogical"), rate("server decode")
	if f.json {
		res := throughputResult{Changes: changes, Rounds: f.rounds, Rates: map[string]float64{}, Ratios: map[string]throughputRatios{}}
		for name := range best {
			res.Rates[name] = rate(name)
			if name == "server decode" {
				continue
			}
			r := throughputRatios{PgRecvlogical: rate(name) / recvRate, ServerDecode: rate(name) / serverRate}
			if strings.HasPrefix(name, "run ") && name != "run discard" {
				r.RunDiscard = rate(name) / rate("run discard")
			}
			res.Ratios[name] = r
		}
		return writeJSONResult(e, res)
	}
	fmt.Fprintf(e.stdout, "changes: %d\nserver decode (no client): %.0f rows/s\npg_recvlogical: %.0f rows/s (%.2fx server decode)\n", changes, serverRate, recvRate, recvRate/serverRate)
	for _, name := range []string{"pgfeed stream", "run discard", "run file"} {
		fmt.Fprintf(e.stdout, "%s: %.0f rows/s (%.2fx pg_recvlogical, %.2fx server decode)\n", name, rate(name), rate(name)/recvRate, rate(name)/serverRate)
	}
	for _, k := range f.sinks {
		name := "run " + k
		fmt.Fprintf(e.stdout, "%s: %.0f rows/s (%.2fx pg_recvlogical, %.2fx run discard)\n", name, rate(name), rate(name)/recvRate, rate(name)/rate("run discard"))
	}
	return nil
}

// throughputResult is what bench --json prints for a throughput run.
type throughputResult struct {
	Changes int                `json:"changes"`
	Rounds  int                `json:"rounds"`
	Rates   map[string]float64 `json:"rows_per_second"` // best round of each: "server decode", "pg_recvlogical", "pgfeed stream", "run discard", ...
	// Ratios of each client's rate to pg_recvlogical's, to the server's
	// own decode rate and, for run to a sink, to run → discard.
	Ratios map[string]throughputRatios `json:"ratios"`
}

type throughputRatios struct {
	PgRecvlogical float64 `json:"pg_recvlogical"`
	ServerDecode  float64 `json:"server_decode"`
	RunDiscard    float64 `json:"run_discard,omitempty"`
}

func writeJSONResult(e *env, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(append(b, '\n'))
	return err
}

// benchWebhook serves a webhook endpoint on a free local port that reads
// each request and accepts it, as a receiver that does no work would.
func benchWebhook() (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("starting the bench webhook: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/bench", func() { _ = srv.Close() }, nil
}

// benchServer starts nats-server (with JetStream) or redis-server on a
// free local port, with its data in a temporary folder, and returns its
// address and how to stop it.
func benchServer(ctx context.Context, kind string) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("finding a port for %s: %w", kind, err)
	}
	addr = ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	dir, err := os.MkdirTemp("", "pgfeed-bench-"+kind+"-")
	if err != nil {
		return "", nil, err
	}
	var cmd *exec.Cmd
	if kind == "nats" {
		cmd = exec.CommandContext(ctx, "nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", dir)
	} else {
		cmd = exec.CommandContext(ctx, "redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("starting %s (bash scripts/setup.sh installs it): %w", cmd.Path, err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("%s did not start listening on %s", kind, addr)
		}
	}
}

// benchWorkload writes the workload and returns the number of row changes.
func benchWorkload(ctx context.Context, db *pgx.Conn, rows, txnSize int) (int, error) {
	stmts := []struct {
		sql   string
		count int
	}{
		{`INSERT INTO pgfeed_bench SELECT g, g % 1000, (g % 100000) / 100.0, 'name ' || g, g % 2 = 0,
			'2026-01-01'::timestamptz + g * interval '1 second', jsonb_build_object('n', g, 'tag', 'x' || (g % 7)),
			ARRAY['a' || (g % 5), 'b'], md5(g::text)::uuid, g / 7.0
			FROM generate_series($1::bigint, $2::bigint) g`, rows},
		{`UPDATE pgfeed_bench SET qty = qty + 1, name = name || '!' WHERE id BETWEEN $1 AND $2 AND id % 10 = 0`, rows},
		{`DELETE FROM pgfeed_bench WHERE id BETWEEN $1 AND $2 AND id % 20 = 5`, rows},
	}
	changes := 0
	for _, st := range stmts {
		step := txnSize
		if !strings.HasPrefix(st.sql, "INSERT") {
			step = txnSize * 10 // a tenth (or twentieth) of the rows change: keep transactions of similar size
		}
		for lo := 1; lo <= st.count; lo += step {
			tag, err := db.Exec(ctx, st.sql, lo, min(lo+step-1, st.count))
			if err != nil {
				return 0, fmt.Errorf("writing the workload: %w", err)
			}
			changes += int(tag.RowsAffected())
		}
	}
	return changes, nil
}
