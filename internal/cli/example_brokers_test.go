package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink/redis"
)

// examples/nats.toml and examples/redis.toml run as they are, with the
// server's address in the environment: the initial snapshot and a change
// reach the broker, and a SIGTERM stops pgfeed with exit code 0.
func TestExampleBrokers(t *testing.T) {
	nsrv := brokertest.StartNATS(t)
	rsrv := brokertest.StartRedis(t)
	t.Setenv("NATS_URL", nsrv.URL())
	t.Setenv("REDIS_ADDR", rsrv.Addr)
	t.Setenv("PGFEED_STATE", t.TempDir())

	nc, err := natsgo.Connect(nsrv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(&goredis.Options{Addr: rsrv.Addr, DisableIdentity: true})
	defer rc.Close()

	for _, tc := range []struct {
		example, slot string
		// events returns the values of the events of a table that reached
		// the broker, in order.
		events func(table string) [][]byte
	}{
		{"nats", "pgfeed_nats", func(table string) [][]byte {
			var out [][]byte
			for _, m := range natsMessages(t, js, "PGFEED", "pgfeed.public."+table+".>") {
				out = append(out, m.Data)
			}
			return out
		}},
		{"redis", "pgfeed_redis", func(table string) [][]byte {
			var out [][]byte
			for _, e := range rc.XRange(context.Background(), "pgfeed:public."+table, "-", "+").Val() {
				out = append(out, []byte(e.Values[redis.FieldValue].(string)))
			}
			return out
		}},
	} {
		t.Run(tc.example, func(t *testing.T) {
			dsn := pgtest.CreateDB(t, pg, "example"+tc.example)
			t.Setenv("PGFEED_DSN", dsn)
			db := pgtest.Connect(t, dsn)
			pgtest.Exec(t, db, "CREATE TABLE users(id int PRIMARY KEY, name text)", "INSERT INTO users VALUES (1, 'ada')", "CREATE TABLE marker(id int PRIMARY KEY)")
			path, err := filepath.Abs(filepath.Join("..", "..", "examples", tc.example+".toml"))
			if err != nil {
				t.Fatal(err)
			}
			cmd, stderr := startProcess(t, os.DevNull, "run", "--config", path)
			waitUntil(t, "slot "+tc.slot, func() bool {
				var n int
				_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1 AND active", tc.slot).Scan(&n)
				return n == 1 || cmd.ProcessState != nil
			})
			pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
			waitUntil(t, "the marker", func() bool { return len(tc.events("marker")) > 0 })
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("pgfeed run --config examples/%s.toml: %v\n%s", tc.example, err, stderr.String())
			}
			users := tc.events("users")
			if len(users) != 1 {
				t.Fatalf("users: %d events; want the snapshot's one row", len(users))
			}
			var e struct {
				Op    string         `json:"op"`
				After map[string]any `json:"after"`
			}
			if err := json.Unmarshal(users[0], &e); err != nil || e.Op != "read" || e.After["name"] != "ada" {
				t.Fatalf("users: %s (%v)", users[0], err)
			}
			if strings.Contains(stderr.String(), "level=ERROR") {
				t.Errorf("errors logged:\n%s", stderr.String())
			}
		})
	}
}
