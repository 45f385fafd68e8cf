package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pgfeed/pgfeed/internal/pgtest"
)

// An upstream `pgfeed run` writes Debezium's envelope (key records,
// tombstones after deletes) to Kafka; a downstream `pgfeed run` reads the
// topic with a Kafka source that tells the format by itself, into files of
// native JSON, and is killed with SIGKILL twice under concurrent writers.
// The files hold exactly the table's state. (One topic of one partition,
// as in TestRunKafkaSourceUnderKill9.)
func TestRunKafkaSourceDebezium(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "cdc.dbz"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	brokers := kc.ListenAddrs()
	dsn := pgtest.CreateDB(t, pg, "kafkadbz")
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
slot = "kafkadbz"
create = true
tables = ["public.items", "public.marker"]
[sinks.kafka]
type = "kafka"
sources = ["main"]
format = "debezium"
brokers = [%q]
topic = "cdc.dbz"
`, filepath.Join(dir, "up", "pgfeed.db"), brokers[0]))
	write(downCfg, fmt.Sprintf(`checkpoint = %q
[sources.upstream]
type = "kafka"
brokers = [%q]
topics = ["cdc.dbz"]
instance_id = "downstream-dbz"
session_timeout = "6s"
[sinks.files]
type = "file"
sources = ["upstream"]
path = %q
rotate_bytes = "256KiB"
`, filepath.Join(dir, "down", "pgfeed.db"), brokers[0], out))
	runThroughKafka(t, db, dsn, upCfg, downCfg, out, 2, 29, 800)

	// The topic really is Debezium's: envelopes with key records, and
	// tombstones after deletes, which the source skipped.
	tombstones, envelopes := countDebeziumRecords(t, brokers[0], "cdc.dbz")
	if envelopes == 0 || tombstones == 0 {
		t.Fatalf("the upstream wrote %d Debezium envelopes and %d tombstones; want both", envelopes, tombstones)
	}

	events, nfiles := downstreamMatchesTable(t, db, out, "downstream of Kafka in Debezium's format")
	t.Logf("%d events downstream (%d files) from %d envelopes and %d tombstones", events, nfiles, envelopes, tombstones)
}

// countDebeziumRecords reads the whole topic and counts tombstones and
// Debezium envelopes (with a key record) in it.
func countDebeziumRecords(t *testing.T, broker, topic string) (tombstones, envelopes int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case r.Value == nil:
				tombstones++
			case strings.HasPrefix(string(r.Value), `{"schema":{`) && strings.Contains(string(r.Value), `"payload":{"before":`) && r.Key != nil:
				envelopes++
			}
		})
		if envelopes > 0 && tombstones > 0 && fs.Empty() {
			break
		}
	}
	return tombstones, envelopes
}
