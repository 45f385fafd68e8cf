package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/file"
)

// `pgfeed run` into Kafka (a kfake cluster in this process), killed with
// SIGKILL five times under concurrent writers, with a broker outage during
// one run, then stopped with SIGTERM. Two sinks read the source: "plain"
// (idempotent producer, at-least-once) and "exact" (transactional). Read
// back, each topic applied to a map by key equals SELECT * of the table;
// and a read_committed consumer of the exact topic sees every event of
// each transaction once: no duplicate identity (commit_lsn, seq) and no gap
// in any transaction's seqs.
func TestRunKafkaUnderKill9(t *testing.T) {
	began := time.Now()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	brokers := kc.ListenAddrs()

	dsn := pgtest.CreateDB(t, pg, "runkafka")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf(`checkpoint = %q
[log]
level = "debug"
[sources.main]
dsn = "${TEST_DSN}"
slot = "runkafka"
create = true
tables = ["public.items", "public.marker"]
[sinks.plain]
type = "kafka"
sources = ["main"]
brokers = [%q]
topic = "plain.{table}"
create_topics = true
partitions = 3
[sinks.exact]
type = "kafka"
sources = ["main"]
brokers = [%q]
topic = "exact.{table}"
create_topics = true
partitions = 3
compression = "zstd"
transactional = true
transactional_id = "pgfeed-test-exact"
`, filepath.Join(dir, "state", "pgfeed.db"), brokers[0], brokers[0])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_DSN", dsn)
	if code, stdout, stderr := runCLI(t, "run", "--check", "--config", cfgPath); code != 0 || !strings.Contains(stdout, "ok") {
		t.Fatalf("--check: %d %s %s", code, stdout, stderr)
	}
	// Create the slot before any write, so that every change is in the stream.
	if code, _, stderr := runCLI(t, "run", "--config", cfgPath, "--endpos", "0/1"); code != 0 {
		t.Fatalf("creating the slot: %s", stderr)
	}

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(seed, 11)))
		}(uint64(w))
	}
	var down atomic.Bool
	var refused atomic.Int64
	resumed := 0 // runs that resumed from Kafka's position, ahead of the checkpoint
	for i := 0; i < 5; i++ {
		cmd, stderr := startProcess(t, os.DevNull, "run", "--config", cfgPath)
		if i == 2 {
			// A broker outage: every connection is dropped until the
			// broker refused some requests, then it recovers.
			time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
			down.Store(true)
			kc.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
				if !down.Load() {
					kc.DropControl()
					return nil, nil, false
				}
				kc.KeepControl()
				refused.Add(1)
				return nil, errors.New("broker down"), true
			})
			for start := time.Now(); refused.Load() < 10 && time.Since(start) < 30*time.Second; {
				time.Sleep(20 * time.Millisecond)
			}
			down.Store(false)
		}
		time.Sleep(time.Duration(400+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if strings.Contains(stderr.String(), "resuming from the position the sink committed") {
			resumed++
		}
	}
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")

	cmd := streamProcess(t, os.DevNull, "run", "--config", cfgPath)
	deadline := time.Now().Add(2 * time.Minute)
	t.Logf("writers stopped at %v", time.Since(began).Round(time.Millisecond))
	for len(readTopic(t, brokers, "exact.marker", true)) == 0 || len(readTopic(t, brokers, "plain.marker", false)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the marker never reached both kafka sinks")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v (want exit 0)", err)
	}

	t.Logf("final run stopped at %v", time.Since(began).Round(time.Millisecond))
	want := itemsInTable(t, db)
	if len(want) == 0 {
		t.Fatal("the workload left no rows")
	}
	plain := changes(readTopic(t, brokers, "plain.items", false))
	exact := changes(readTopic(t, brokers, "exact.items", true))
	for _, tc := range []struct {
		name string
		recs []*kgo.Record
	}{{"plain", plain}, {"exact", exact}} {
		got := applyRecords(t, tc.recs)
		if !reflect.DeepEqual(got, want) {
			reportDiff(t, got, want)
			t.Fatalf("state invariant broken in the %s topic after kill -9 of pgfeed run: %d rows, %d in the table", tc.name, len(got), len(want))
		}
	}
	// Exactly once: each identity once, and each transaction whole.
	seen := map[string]bool{}
	seqs := map[event.LSN][]int{}
	for _, r := range exact {
		commit, seq := identity(t, r)
		id := fmt.Sprintf("%s/%d", commit, seq)
		if seen[id] {
			t.Fatalf("read_committed consumer sees event %s twice", id)
		}
		seen[id] = true
		seqs[commit] = append(seqs[commit], seq)
	}
	for commit, s := range seqs {
		slices.Sort(s)
		for i, seq := range s {
			if seq != i+1 {
				t.Fatalf("transaction %s: seqs %v; want 1 to %d without a gap", commit, s, len(s))
			}
		}
	}
	if len(exact) < 200 {
		t.Fatalf("the workload was too small to mean anything: %d events", len(exact))
	}
	t.Logf("%d events exactly once in %d transactions (%d in the at-least-once topic), %d rows; broker refused %d requests during the outage; %d runs resumed from the position in Kafka",
		len(exact), len(seqs), len(plain), len(want), refused.Load(), resumed)
}

// changes drops schema events: they carry no seq, and one may come again
// after a restart (the relation is news to the new stream).
func changes(recs []*kgo.Record) []*kgo.Record {
	return slices.DeleteFunc(recs, func(r *kgo.Record) bool {
		return slices.ContainsFunc(r.Headers, func(h kgo.RecordHeader) bool { return h.Key == "op" && string(h.Value) == "schema" })
	})
}

// identity reads the commit_lsn and seq headers of a record.
func identity(t *testing.T, r *kgo.Record) (event.LSN, int) {
	t.Helper()
	var commit event.LSN
	seq := -1
	for _, h := range r.Headers {
		switch h.Key {
		case "commit_lsn":
			if err := commit.UnmarshalText(h.Value); err != nil {
				t.Fatalf("commit_lsn header %q: %v", h.Value, err)
			}
		case "seq":
			seq, _ = strconv.Atoi(string(h.Value))
		}
	}
	if commit == 0 || seq < 1 {
		t.Fatalf("record without identity headers: %v", r.Headers)
	}
	return commit, seq
}

// applyRecords applies change events to a map by key in the order of their
// identity (commit_lsn, seq): partitions keep each key's order, but a
// primary-key change moves a row between keys, and so between partitions.
// Redelivered duplicates sort next to their original and apply again
// harmlessly.
func applyRecords(t *testing.T, recs []*kgo.Record) map[int]map[string]any {
	t.Helper()
	type ev struct {
		commit event.LSN
		seq    int
		value  []byte
	}
	evs := make([]ev, len(recs))
	for i, r := range recs {
		c, s := identity(t, r)
		evs[i] = ev{c, s, r.Value}
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return cmp.Or(cmp.Compare(a.commit, b.commit), cmp.Compare(a.seq, b.seq)) })
	path := filepath.Join(t.TempDir(), "events.jsonl")
	var lines []byte
	for _, e := range evs {
		lines = append(append(lines, e.value...), '\n')
	}
	if err := os.WriteFile(path, lines, 0o644); err != nil {
		t.Fatal(err)
	}
	state := map[int]map[string]any{}
	applyOutput(t, path, state)
	return state
}

// readTopic reads every record of a topic up to its current end; with
// committed, as a read_committed consumer up to the last stable offset.
func readTopic(t *testing.T, brokers []string, topic string, committed bool) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var ends kadm.ListedOffsets
	if committed {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		t.Fatalf("listing offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
	}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	rd, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: still waiting for partitions %v", topic, want)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out
}

// A Kafka sink that cannot start says why in one line: broker unreachable,
// authentication failed, topic missing with create_topics off.
func TestRunKafkaErrors(t *testing.T) {
	dsn := pgtest.CreateDB(t, pg, "runkafkaerr")
	t.Setenv("TEST_DSN", dsn)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	plainKC, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer plainKC.Close()
	saslKC, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "pgfeed", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer saslKC.Close()

	for _, tc := range []struct {
		name, settings string
		want           []string
	}{
		{"unreachable", fmt.Sprintf("brokers = [%q]\ntopic = \"t\"", closed), []string{"sinks.k", "connecting to kafka at " + closed}},
		{"auth", fmt.Sprintf("brokers = [%q]\ntopic = \"t\"\n[sinks.k.sasl]\nmechanism = \"SCRAM-SHA-512\"\nuser = \"pgfeed\"\npassword = \"wrong\"", saslKC.ListenAddrs()[0]), []string{"sinks.k", "authenticating to kafka", `"pgfeed"`}},
		{"missing topic", fmt.Sprintf("brokers = [%q]\ntopic = \"orders\"", plainKC.ListenAddrs()[0]), []string{"sinks.k", `topic "orders" does not exist`, "create_topics = true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pgfeed.toml")
			cfg := fmt.Sprintf("checkpoint = %q\n[sources.main]\ndsn = \"${TEST_DSN}\"\nslot = \"runkafkaerr\"\ncreate = true\n[sinks.k]\ntype = \"kafka\"\nsources = [\"main\"]\n%s\n",
				filepath.Join(dir, "pgfeed.db"), tc.settings)
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := runCLI(t, "run", "--check", "--config", path); code != 0 {
				t.Fatalf("--check refused a valid file: %s", stderr)
			}
			code, _, stderr := runCLI(t, "run", "--config", path)
			expectOneLineError(t, code, stderr, tc.want...)
		})
	}

	// A Kafka source of a topic that does not exist.
	srcDir := t.TempDir()
	srcCfg := filepath.Join(srcDir, "pgfeed.toml")
	if err := os.WriteFile(srcCfg, []byte(fmt.Sprintf("checkpoint = %q\n[sources.up]\ntype = \"kafka\"\nbrokers = [%q]\ntopics = [\"nope\"]\n[sinks.out]\ntype = \"discard\"\nsources = [\"up\"]\n",
		filepath.Join(srcDir, "pgfeed.db"), plainKC.ListenAddrs()[0])), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "--config", srcCfg)
	expectOneLineError(t, code, stderr, "sources.up", `topic "nope" does not exist`)

	// Replay cannot rewind an exactly-once sink: its position is in Kafka.
	db := pgtest.Connect(t, dsn)
	var start string
	if err := db.QueryRow(context.Background(), "SELECT lsn::text FROM pg_create_logical_replication_slot('runkafkaerr', 'pgoutput')").Scan(&start); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf("checkpoint = %q\n[sources.main]\ndsn = \"${TEST_DSN}\"\nslot = \"runkafkaerr\"\n[sinks.k]\ntype = \"kafka\"\nsources = [\"main\"]\nbrokers = [%q]\ntransactional = true\ntransactional_id = \"x\"\n",
		filepath.Join(dir, "pgfeed.db"), plainKC.ListenAddrs()[0])
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "replay", "--config", path, "--from", start)
	expectOneLineError(t, code, stderr, "sink k is exactly-once", "--sinks")
}

// The Kafka example of the repository runs as it is against a broker: the
// initial snapshot and the changes reach their topics, exactly once.
func TestExampleKafka(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	brokers := kc.ListenAddrs()
	dsn := pgtest.CreateDB(t, pg, "examplekafka")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE orders(id int PRIMARY KEY, total numeric)", "INSERT INTO orders VALUES (1, 9.90)")
	t.Setenv("PGFEED_DSN", dsn)
	t.Setenv("PGFEED_STATE", filepath.Join(t.TempDir(), "state"))
	t.Setenv("KAFKA_BROKER", brokers[0])
	cfg, err := filepath.Abs("../../examples/kafka.toml")
	if err != nil {
		t.Fatal(err)
	}
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", cfg)
	waitUntil(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgfeed_pg' AND active").Scan(&n)
		return n == 1 || cmd.ProcessState != nil
	})
	pgtest.Exec(t, db, "UPDATE orders SET total = 10 WHERE id = 1", "INSERT INTO orders VALUES (2, 1)")
	var recs []*kgo.Record
	waitUntil(t, "3 events in cdc.public.orders", func() bool {
		recs = changes(readTopic(t, brokers, "cdc.public.orders", true))
		return len(recs) >= 3
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed run: %v\n%s", err, stderr.String())
	}
	var ops []string
	for _, r := range recs {
		for _, h := range r.Headers {
			if h.Key == "op" {
				ops = append(ops, string(h.Value)+" "+string(r.Key))
			}
		}
	}
	// Partitions keep each key's order, not the order across keys.
	slices.Sort(ops)
	if want := []string{`insert {"id":2}`, `read {"id":1}`, `update {"id":1}`}; !reflect.DeepEqual(ops, want) {
		t.Fatalf("events (op and key) %q; want %q", ops, want)
	}
}

// A downstream `pgfeed run` reads with a Kafka source what an upstream
// `pgfeed run` writes with an exactly-once Kafka sink, into files; the
// downstream is killed with SIGKILL four times under concurrent writers.
// The files hold exactly the table's state: offsets were committed only for
// batches the files had. (One topic of one partition, so that the marker
// comes after every change, and since a primary-key change moves a row
// between keys, which partitions do not order.)
func TestRunKafkaSourceUnderKill9(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cdc.all"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	brokers := kc.ListenAddrs()
	dsn := pgtest.CreateDB(t, pg, "kafkasource")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	upCfg := filepath.Join(dir, "up.toml")
	downCfg := filepath.Join(dir, "down.toml")
	out := filepath.Join(dir, "out")
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(upCfg, fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = "${TEST_DSN}"
slot = "kafkasource"
create = true
tables = ["public.items", "public.marker"]
[sinks.kafka]
type = "kafka"
sources = ["main"]
brokers = [%q]
topic = "cdc.all"
transactional = true
transactional_id = "pgfeed-up"
`, filepath.Join(dir, "up", "pgfeed.db"), brokers[0]))
	write(downCfg, fmt.Sprintf(`checkpoint = %q
[log]
level = "debug"
[sources.upstream]
type = "kafka"
brokers = [%q]
topics = ["cdc.all"]
instance_id = "downstream-1"
session_timeout = "6s"
[sinks.files]
type = "file"
sources = ["upstream"]
path = %q
rotate_bytes = "256KiB"
`, filepath.Join(dir, "down", "pgfeed.db"), brokers[0], out))
	runThroughKafka(t, db, dsn, upCfg, downCfg, out, 4, 13, 500)
	events, nfiles := downstreamMatchesTable(t, db, out, "downstream of Kafka after kill -9")
	t.Logf("%d events downstream in %d files", events, nfiles)
}

// runThroughKafka runs the upstream pipeline (Postgres → Kafka) of upCfg
// under three writers while the downstream one (Kafka → files in out) of
// downCfg is killed with SIGKILL kills times, each after minSleep ms plus up
// to 1.2 s; then it inserts the marker row, runs the downstream until the
// marker is in out, and stops both cleanly. seed varies the writers.
func runThroughKafka(t *testing.T, db *pgx.Conn, dsn, upCfg, downCfg, out string, kills int, seed uint64, minSleep int) {
	t.Helper()
	t.Setenv("TEST_DSN", dsn)
	for _, cfg := range []string{upCfg, downCfg} {
		if code, _, stderr := runCLI(t, "run", "--check", "--config", cfg); code != 0 {
			t.Fatalf("--check %s: %s", cfg, stderr)
		}
	}
	if code, _, stderr := runCLI(t, "run", "--config", upCfg, "--endpos", "0/1"); code != 0 {
		t.Fatalf("creating the slot: %s", stderr)
	}
	up := streamProcess(t, os.DevNull, "run", "--config", upCfg)

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(s uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(s, seed)))
		}(uint64(w))
	}
	for range kills {
		cmd := streamProcess(t, os.DevNull, "run", "--config", downCfg)
		time.Sleep(time.Duration(minSleep+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")

	down := streamProcess(t, os.DevNull, "run", "--config", downCfg)
	deadline := time.Now().Add(2 * time.Minute)
	for !markerIn(t, out) {
		if time.Now().After(deadline) {
			t.Fatal("the marker never reached the downstream files")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, cmd := range []*exec.Cmd{down, up} {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("pgfeed run after SIGTERM: %v (want exit 0)", err)
		}
	}
}

// downstreamMatchesTable applies the files a file sink wrote to out, in
// order, and fails the test unless the result is the items table; what
// names the path the events took, for the message. It returns how many
// events and files it applied.
func downstreamMatchesTable(t *testing.T, db *pgx.Conn, out, what string) (events, nfiles int) {
	t.Helper()
	files, err := file.Files(out, "")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]map[string]any{}
	for _, f := range files {
		events += applyOutput(t, f, got)
	}
	want := itemsInTable(t, db)
	if len(want) == 0 || events < 200 {
		t.Fatalf("the workload was too small to mean anything: %d rows, %d events", len(want), events)
	}
	if !reflect.DeepEqual(got, want) {
		reportDiff(t, got, want)
		t.Fatalf("state invariant broken %s: %d rows in files, %d in the table", what, len(got), len(want))
	}
	return events, len(files)
}
