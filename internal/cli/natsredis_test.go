package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/redis"
)

// `pgfeed run` with a NATS JetStream sink and a Redis stream sink, killed
// with SIGKILL five times under concurrent writers, then stopped with
// SIGTERM: reading each broker's stream back and applying its events by key
// gives exactly the table, and neither stream holds an event twice (the
// JetStream duplicate window and the Redis marks dropped the redeliveries).
func TestRunNATSAndRedisSurviveKill9(t *testing.T) {
	b := startBrokerRun(t, "runbrokers", "--appendonly", "yes")
	skips := 0 // runs in which Redis skipped a redelivery: for the log, as it depends on timing
	for range 5 {
		cmd, stderr := startProcess(t, os.DevNull, "run", "--config", b.cfgPath)
		time.Sleep(time.Duration(400+rand.IntN(1200)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if strings.Contains(stderr.String(), "skipped records already in the stream") {
			skips++
		}
	}
	b.stopWriters()
	stderr := b.finish()
	if strings.Contains(stderr, "skipped records already in the stream") {
		skips++
	}
	t.Logf("redis skipped redelivered records in %d of 6 runs", skips)
	b.check()
}

// `pgfeed run` keeps going while nats-server and redis-server are stopped
// and started again under writers: once they are back, both streams hold
// the table's state, nothing lost and nothing twice.
func TestRunBrokerRestart(t *testing.T) {
	// Redis keeps what it acknowledged across its restart only in its
	// append-only file, written before each reply with fsync always.
	b := startBrokerRun(t, "runrestart", "--appendonly", "yes", "--appendfsync", "always")
	cmd, stderr := startProcess(t, os.DevNull, "run", "--config", b.cfgPath)
	time.Sleep(time.Second)
	b.nats.Stop()
	b.redis.Stop()
	time.Sleep(time.Second) // writes go on meanwhile; pgfeed retries
	b.nats.Restart()
	b.redis.Restart()
	time.Sleep(time.Second)
	b.stopWriters()
	b.stop(cmd)
	if !strings.Contains(stderr.String(), "retrying") {
		t.Logf("pgfeed logged no retry: the outage fell between its writes")
	}
	b.check()
}

// brokerRun is a database with writers and a pgfeed configuration that
// feeds a NATS JetStream sink and a Redis stream sink from it.
type brokerRun struct {
	t           *testing.T
	nats, redis *brokertest.Server
	db          *pgx.Conn
	cfgPath     string
	js          jetstream.JetStream
	rc          *goredis.Client
	stopWriters func()
}

func startBrokerRun(t *testing.T, name string, redisArgs ...string) *brokerRun {
	b := &brokerRun{t: t, nats: brokertest.StartNATS(t), redis: brokertest.StartRedis(t, redisArgs...)}
	dsn := pgtest.CreateDB(t, pg, name)
	b.db = pgtest.Connect(t, dsn)
	pgtest.Exec(t, b.db, "CREATE TABLE items(id int PRIMARY KEY, val int NOT NULL, note text)", "CREATE TABLE marker(id int PRIMARY KEY)")
	dir := t.TempDir()
	b.cfgPath = filepath.Join(dir, "pgfeed.toml")
	cfg := fmt.Sprintf(`checkpoint = %q
[log]
level = "debug"
[sources.main]
dsn = "${TEST_DSN}"
slot = %q
create = true
tables = ["public.items", "public.marker"]
[sinks.bus]
type = "nats"
sources = ["main"]
url = %q
subject = "pgfeed.{schema}.{table}.{op}"
stream = "PGFEED"
create_stream = true
duplicate_window = "10m"
ack_timeout = "5s"
[sinks.cache]
type = "redis"
sources = ["main"]
addr = %q
stream = "pgfeed:{table}"
timeout = "2s"
`, filepath.Join(dir, "state", "pgfeed.db"), name, b.nats.URL(), b.redis.Addr)
	if err := os.WriteFile(b.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_DSN", dsn)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			writeRandomly(ctx, t, dsn, rand.New(rand.NewPCG(seed, 11)))
		}(uint64(w))
	}
	b.stopWriters = func() { stop(); wg.Wait() }
	t.Cleanup(b.stopWriters)
	return b
}

// finish inserts a marker, runs pgfeed until both sinks have it and stops
// it with SIGTERM, expecting exit code 0. It returns pgfeed's stderr.
func (b *brokerRun) finish() string {
	cmd, stderr := startProcess(b.t, os.DevNull, "run", "--config", b.cfgPath)
	b.stop(cmd)
	return stderr.String()
}

// stop inserts a marker, waits until both sinks have it and stops the
// running pgfeed with SIGTERM, expecting exit code 0.
func (b *brokerRun) stop(cmd *exec.Cmd) {
	t := b.t
	t.Helper()
	pgtest.Exec(t, b.db, "INSERT INTO marker VALUES (1)")
	b.connect()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		inNATS := len(natsMessages(t, b.js, "PGFEED", "pgfeed.public.marker.>")) > 0
		inRedis := b.rc.XLen(context.Background(), "pgfeed:marker").Val() > 0
		if inNATS && inRedis {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the marker never reached both sinks (nats %v, redis %v)", inNATS, inRedis)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pgfeed run after SIGTERM: %v (want exit 0)", err)
	}
}

// connect opens the test's own clients of both servers.
func (b *brokerRun) connect() {
	t := b.t
	if b.js != nil {
		return
	}
	nc, err := natsgo.Connect(b.nats.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if b.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	b.rc = goredis.NewClient(&goredis.Options{Addr: b.redis.Addr, DisableIdentity: true})
	t.Cleanup(func() { b.rc.Close() })
}

// check reads both streams back and applies their events by key: each
// must give SELECT * of the table, and hold no event twice.
func (b *brokerRun) check() {
	t := b.t
	t.Helper()
	b.connect()
	want := itemsInTable(t, b.db)
	if len(want) == 0 {
		t.Fatal("the workload left no rows")
	}
	check := func(name string, values [][]byte, ids []string) {
		t.Helper()
		got := map[int]map[string]any{}
		events := 0
		for _, v := range values {
			if applyEvent(t, name, v, got) {
				events++
			}
		}
		if !reflect.DeepEqual(got, want) {
			reportDiff(t, got, want)
			t.Fatalf("state invariant broken through %s: %d rows there, %d in the table", name, len(got), len(want))
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Errorf("%s holds event %s twice", name, id)
			}
			seen[id] = true
		}
		t.Logf("%s: %d events, %d rows", name, events, len(want))
	}

	var values [][]byte
	var ids []string
	for _, m := range natsMessages(t, b.js, "PGFEED", "pgfeed.public.items.>") {
		values = append(values, m.Data)
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	check("the NATS stream", values, ids)

	values, ids = nil, nil
	entries, err := b.rc.XRange(context.Background(), "pgfeed:items", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		values = append(values, []byte(e.Values[redis.FieldValue].(string)))
		ids = append(ids, e.Values[redis.FieldID].(string))
	}
	check("the Redis stream", values, ids)
}

// natsMessages returns the messages of a stream on subjects matching the
// filter, in stream order.
func natsMessages(t *testing.T, js jetstream.JetStream, stream, filter string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
}

// `pgfeed run` connects its sinks at start: an unreachable server, refused
// credentials or a missing stream is one line that names the sink and the
// cause, before any slot is touched.
func TestRunBrokerErrors(t *testing.T) {
	nsrv := brokertest.StartNATS(t)
	nauth := brokertest.StartNATS(t, "--user", "pgfeed", "--pass", "secret")
	rsrv := brokertest.StartRedis(t, "--requirepass", "secret")
	dead := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	dir := t.TempDir()
	head := fmt.Sprintf(`checkpoint = %q
[sources.main]
dsn = "postgres://127.0.0.1:1/none"
[sinks.s]
sources = ["main"]
`, filepath.Join(dir, "pgfeed.db"))
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"nats unreachable", `type = "nats"
url = "nats://` + dead + `"`, []string{"sinks.s:", "no server reachable", dead}},
		{"nats stream missing", `type = "nats"
url = "` + nsrv.URL() + `"
stream = "NOPE"`, []string{"sinks.s:", `stream "NOPE" does not exist`, "create_stream = true"}},
		{"nats no stream for the subjects", `type = "nats"
url = "` + nsrv.URL() + `"`, []string{"sinks.s:", `no JetStream stream captures subject "pgfeed.>"`}},
		{"nats wrong password", `type = "nats"
url = "` + nauth.URL() + `"
jetstream = false
user = "pgfeed"
password = "wrong"`, []string{"sinks.s:", "authentication failed"}},
		{"redis unreachable", `type = "redis"
addr = "` + dead + `"`, []string{"sinks.s:", "no server reachable", dead}},
		{"redis wrong password", `type = "redis"
addr = "` + rsrv.Addr + `"
password = "wrong"`, []string{"sinks.s:", "authentication failed"}},
		{"redis db out of range", `type = "redis"
addr = "` + rsrv.Addr + `"
password = "secret"
db = 99`, []string{"sinks.s:", "db 99"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".toml")
			if err := os.WriteFile(path, []byte(head+tc.body+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if code, _, stderr := runCLI(t, "run", "--check", "--config", path); code != 0 {
				t.Fatalf("--check: %s", stderr)
			}
			code, _, stderr := runCLI(t, "run", "--config", path)
			expectOneLineError(t, code, stderr, tc.want...)
		})
	}
}
