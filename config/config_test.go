package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgfeed/pgfeed/route"
)

// env returns a getenv over a fixed set of variables.
func env(kv ...string) func(string) (string, bool) {
	m := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// minimal is the smallest valid configuration; cases add to it.
const minimal = `
[sources.main]
dsn = "postgres://localhost/db"

[sinks.out]
type = "stdout"
sources = ["main"]
`

func TestExample(t *testing.T) {
	data, err := os.ReadFile("example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, env("PGFEED_DSN", "postgres://u:p@db/app", "WEBHOOK_TOKEN", "s3cret", "WEBHOOK_SECRET", "sign"))
	if err != nil {
		t.Fatalf("example.toml:\n%v", err)
	}
	if c.Checkpoint != "pgfeed.db" || c.Log.Level != slog.LevelInfo || c.Log.Format != "text" || c.HTTP.Listen != "127.0.0.1:8080" {
		t.Errorf("top level: %+v", c)
	}
	var names []string
	for _, s := range c.Sinks {
		names = append(names, s.Name+":"+s.Type+":"+s.Format)
		// Every validated sink compiles into a router.
		if _, err := route.New(s.RouteOptions()); err != nil {
			t.Errorf("sink %s: route.New: %v", s.Name, err)
		}
	}
	want := "archive:file:json console:stdout:wal2json events:kafka:debezium bus:nats:json cache:redis:json hook:webhook:cloudevents hook_dead:file:json live:websocket:json null:discard:avro"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("sinks in file order:\n got %s\nwant %s", got, want)
	}
	pg := c.Source("main").Settings.(*PostgresSource)
	wantPG := &PostgresSource{
		DSN: "postgres://u:p@db/app", Slot: "pgfeed_main", Publication: "pgfeed_main", Create: true,
		Tables: []string{"public.*"}, Exclude: []string{"public.audit_*"}, Snapshot: true,
		Retain: Retain{Age: time.Hour}, Heartbeat: 30 * time.Second,
		Filters: map[string]string{"public.orders": "status <> 'draft'"},
	}
	if !reflect.DeepEqual(pg, wantPG) {
		t.Errorf("source main:\n got %+v\nwant %+v", pg, wantPG)
	}
	archive := c.Sink("archive")
	if fs := archive.Settings.(*FileSink); *fs != (FileSink{Path: "out/", RotateBytes: 64 << 20, RotateEvery: time.Hour}) {
		t.Errorf("archive: %+v", fs)
	}
	wantRoute := route.Options{
		Include: []string{"public.*"}, Exclude: []string{"public.sessions"},
		Drop: []string{"public.users.password"}, Mask: []string{"public.users.email"},
		Default: "{schema}.{table}", Other: "pgfeed.{op}", Tables: map[string]string{"public.users": "users"},
	}
	if got := archive.RouteOptions(); !reflect.DeepEqual(got, wantRoute) {
		t.Errorf("archive route:\n got %+v\nwant %+v", got, wantRoute)
	}
	if k := c.Sink("events"); k.Route.Default != "cdc.{schema}.{table}" || !reflect.DeepEqual(k.Settings, &KafkaSink{
		Brokers: []string{"127.0.0.1:9092"}, FallbackTopic: "cdc.other", Compression: "zstd", Acks: "all",
		CreateTopics: true, Partitions: 6, Replication: 1, MaxMessageBytes: 1_000_000,
		Transactional: true, TransactionalID: "pgfeed-events", OffsetsTopic: "pgfeed.offsets",
	}) {
		t.Errorf("events: %+v %+v", k.Route, k.Settings)
	}
	wantNATS := &NATSSink{
		URL: "nats://127.0.0.1:4222", JetStream: true, Stream: "PGFEED", CreateStream: true,
		StreamSubjects: []string{"pgfeed.>"}, DuplicateWindow: 2 * time.Minute, Storage: "file", AckTimeout: 30 * time.Second,
	}
	if n := c.Sink("bus"); n.Route.Default != "pgfeed.{schema}.{table}.{op}" || !reflect.DeepEqual(n.Settings, wantNATS) {
		t.Errorf("bus: %+v %+v", n.Route, n.Settings)
	}
	if r := c.Sink("cache"); r.Route.Default != "pgfeed:{table}" || *r.Settings.(*RedisSink) != (RedisSink{Addr: "127.0.0.1:6379", Mode: RedisStream, MaxLen: 1000000, Idempotent: true, Timeout: 10 * time.Second}) {
		t.Errorf("cache: %+v %+v", r.Route, r.Settings)
	}
	hook := c.Sink("hook").Settings.(*WebhookSink)
	if hook.Headers["Authorization"] != "Bearer s3cret" || hook.Timeout != 10*time.Second || hook.Secret != "sign" || c.Sink("hook").DeadLetter != "hook_dead" {
		t.Errorf("hook: %+v", hook)
	}
	if ws := c.Sink("live").Settings.(*WebSocketSink); *ws != (WebSocketSink{Path: "/changes"}) {
		t.Errorf("live: %+v", ws)
	}
	if got := len(c.SinksOf("main")); got != 8 {
		t.Errorf("SinksOf(main) = %d sinks", got)
	}

	// The example names its secret: without it, the error says which.
	_, err = Parse(data, env("PGFEED_DSN", "x"))
	if want := "sinks.hook.headers.Authorization: environment variable WEBHOOK_TOKEN is not set (set it, or give a default: ${WEBHOOK_TOKEN:-value})\n" +
		"sinks.hook.secret: environment variable WEBHOOK_SECRET is not set (set it, or give a default: ${WEBHOOK_SECRET:-value})"; err == nil || err.Error() != want {
		t.Errorf("without WEBHOOK_TOKEN: %v\nwant %s", err, want)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Checkpoint: DefaultCheckpoint,
		Log:        Log{Level: slog.LevelInfo, Format: "text"},
		Sources: []*Source{{Name: "main", Type: SourcePostgres, Settings: &PostgresSource{
			DSN: "postgres://localhost/db", Slot: "pgfeed_main", Publication: "pgfeed_main",
		}}},
		Sinks: []*Sink{{Name: "out", Type: SinkStdout, Sources: []string{"main"}, Format: "json",
			Route:    Route{Default: route.DefaultTemplate, Other: route.DefaultOtherTemplate},
			Settings: &StdoutSink{}}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %#v\nwant %#v", c, want)
	}
}

func TestGoodConfigs(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		check func(*Config) bool
	}{
		{"kafka source", `
[sources.upstream]
type = "kafka"
brokers = ["k1:9092", "k2:9092"]
topics = ["cdc.public.users"]
[sinks.out]
type = "stdout"
sources = ["upstream"]`, func(c *Config) bool {
			return reflect.DeepEqual(c.Sources[0].Settings, &KafkaSource{Brokers: []string{"k1:9092", "k2:9092"}, Topics: []string{"cdc.public.users"}, Group: "pgfeed-upstream"})
		}},
		{"kafka source of debezium records", `
[sources.upstream]
type = "kafka"
brokers = ["k1:9092"]
topics = ["t"]
format = "debezium"
[sinks.out]
type = "stdout"
sources = ["upstream"]`, func(c *Config) bool {
			return c.Sources[0].Settings.(*KafkaSource).Format == "debezium"
		}},
		{"kafka sink with tls and sasl", sink(`type = "kafka"
brokers = ["k1:9093"]
[sinks.archive.tls]
server_name = "kafka"
[sinks.archive.sasl]
mechanism = "scram-sha-256"
user = "u"
password = "p"`), func(c *Config) bool {
			return reflect.DeepEqual(c.Sink("archive").Settings, &KafkaSink{
				Brokers: []string{"k1:9093"},
				TLS:     &TLS{ServerName: "kafka"},
				SASL:    SASL{Mechanism: "SCRAM-SHA-256", User: "u", Password: "p"},
			})
		}},
		{"kafka sink, empty tls table", sink(`type = "kafka"
brokers = ["k1:9093"]
[sinks.archive.tls]`), func(c *Config) bool {
			return reflect.DeepEqual(c.Sink("archive").Settings, &KafkaSink{Brokers: []string{"k1:9093"}, TLS: &TLS{}})
		}},
		{"kafka source with tls and sasl", `
[sources.upstream]
type = "kafka"
brokers = ["k1:9093"]
topics = ["cdc.public.users"]
group = "g"
[sources.upstream.tls]
insecure_skip_verify = true
[sources.upstream.sasl]
mechanism = "PLAIN"
user = "u"
password = "p"
[sinks.out]
type = "stdout"
sources = ["upstream"]`, func(c *Config) bool {
			return reflect.DeepEqual(c.Sources[0].Settings, &KafkaSource{
				Brokers: []string{"k1:9093"}, Topics: []string{"cdc.public.users"}, Group: "g",
				TLS: &TLS{InsecureSkipVerify: true}, SASL: SASL{Mechanism: "PLAIN", User: "u", Password: "p"},
			})
		}},
		{"default slot from a dashed name", `
[sources.Main-DB]
dsn = "x"
[sinks.out]
type = "discard"
sources = ["Main-DB"]`, func(c *Config) bool { return c.Sources[0].Settings.(*PostgresSource).Slot == "pgfeed_main_db" }},
		{"sizes and durations", minimal + `
[sinks.f]
type = "file"
sources = ["main"]
path = "a.jsonl"
rotate_bytes = 1048576
rotate_every = "1h30m"`, func(c *Config) bool {
			return *c.Sink("f").Settings.(*FileSink) == FileSink{Path: "a.jsonl", RotateBytes: 1 << 20, RotateEvery: 90 * time.Minute}
		}},
		{"retain as a size", strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "x"
retain = "512MB"`, 1), func(c *Config) bool {
			return c.Sources[0].Settings.(*PostgresSource).Retain == Retain{Bytes: 512e6}
		}},
		{"retain as bytes", strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "x"
retain = 4096`, 1), func(c *Config) bool {
			return c.Sources[0].Settings.(*PostgresSource).Retain == Retain{Bytes: 4096}
		}},
		{"heartbeat by default", minimal, func(c *Config) bool {
			return c.Sources[0].Settings.(*PostgresSource).Heartbeat == 0 // the stream's default
		}},
		{"failover slot asked for", strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "x"
failover = false`, 1), func(c *Config) bool {
			f := c.Sources[0].Settings.(*PostgresSource).Failover
			return f != nil && !*f
		}},
		{"failover by default", minimal, func(c *Config) bool {
			return c.Sources[0].Settings.(*PostgresSource).Failover == nil
		}},
		{"heartbeats off", strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "x"
heartbeat = "0s"`, 1), func(c *Config) bool {
			return c.Sources[0].Settings.(*PostgresSource).Heartbeat < 0
		}},
		{"redis channel", minimal + `
[sinks.r]
type = "redis"
sources = ["main"]
addr = "localhost:6379"
channel = "changes"`, func(c *Config) bool {
			s := c.Sink("r")
			return s.Settings.(*RedisSink).Mode == RedisChannel && s.Route.Default == "changes"
		}},
		{"websocket on its own listener", minimal + `
[sinks.ws]
type = "websocket"
sources = ["main"]
listen = ":9000"
path = "/feed"`, func(c *Config) bool {
			return *c.Sink("ws").Settings.(*WebSocketSink) == WebSocketSink{Listen: ":9000", Path: "/feed"}
		}},
		{"websocket lag limits", minimal + `
[sinks.ws]
type = "websocket"
sources = ["main"]
listen = ":9000"
max_lag_records = 5
max_lag_bytes = "1MiB"
ack_timeout = "3s"`, func(c *Config) bool {
			return *c.Sink("ws").Settings.(*WebSocketSink) == WebSocketSink{Listen: ":9000", Path: "/changes", MaxLagRecords: 5, MaxLagBytes: 1 << 20, AckTimeout: 3 * time.Second}
		}},
		{"filter on an unqualified table", strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "x"
tables = ["orders"]
[sources.main.filter.orders]
where = "WHERE total > 0"`, 1), func(c *Config) bool {
			return reflect.DeepEqual(c.Sources[0].Settings.(*PostgresSource).Filters, map[string]string{"public.orders": "total > 0"})
		}},
		{"log", minimal + `
[log]
level = "DEBUG"
format = "json"`, func(c *Config) bool { return c.Log == Log{Level: slog.LevelDebug, Format: "json"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml), nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config: %+v", c)
				for _, s := range c.Sources {
					t.Logf("source %+v %+v", s, s.Settings)
				}
				for _, s := range c.Sinks {
					t.Logf("sink %+v %+v", s, s.Settings)
				}
			}
		})
	}
}

// sink returns minimal with one more sink of the given body.
func sink(body string) string {
	return minimal + "\n[sinks.archive]\nsources = [\"main\"]\n" + body + "\n"
}

// withSource returns minimal with more settings for source main.
func withSource(body string) string {
	return strings.Replace(minimal, `dsn = "postgres://localhost/db"`, `dsn = "postgres://localhost/db"`+"\n"+body, 1)
}

func TestProblems(t *testing.T) {
	tests := []struct {
		name string
		toml string
		want string // the whole error: one line per problem
	}{
		{"unknown source", minimal + `
[sinks.archive]
type = "stdout"
sources = ["mian"]`, `sinks.archive.sources[0]: unknown source "mian" (did you mean main? have: main)`},
		{"unknown source, no suggestion", minimal + `
[sinks.archive]
type = "stdout"
sources = ["orders"]`, `sinks.archive.sources[0]: unknown source "orders" (have: main)`},
		{"dsn missing", `
[sources.main]
slot = "s"
[sinks.out]
type = "stdout"
sources = ["main"]`, `sources.main.dsn: missing`},
		{"dsn empty", strings.Replace(minimal, "postgres://localhost/db", "", 1), `sources.main.dsn: empty`},
		{"invalid size", sink(`type = "file"
path = "out/"
rotate_bytes = "64XB"`), `sinks.archive.rotate_bytes: invalid size "64XB" (want e.g. "64MB", "1GiB" or a number of bytes)`},
		{"negative size", sink(`type = "file"
path = "out/"
rotate_bytes = -1`), `sinks.archive.rotate_bytes: invalid size -1: must not be negative`},
		{"size of the wrong type", sink(`type = "file"
path = "out/"
rotate_bytes = true`), `sinks.archive.rotate_bytes: expected a size such as "64MB" or a number of bytes, got boolean`},
		{"unknown key, typo", sink(`type = "file"
path = "out/"
rotat_bytes = "64MB"`), `sinks.archive.rotat_bytes: unknown key (did you mean rotate_bytes?)`},
		{"unknown key, other case", withSource(`DSN = "x"`), `sources.main.DSN: unknown key (did you mean dsn?)`},
		{"unknown key of another type", sink(`type = "stdout"
path = "out/"`), `sinks.archive.path: unknown key (known here: columns, dead_letter, format, route, sources, tables, type)`},
		{"unknown top-level key", "chekpoint = \"x\"\n" + minimal, `chekpoint: unknown key (did you mean checkpoint?)`},
		{"wrong type", withSource(`create = "yes"`), `sources.main.create: expected a boolean, got string`},
		{"wrong type, integer", sink(`type = "redis"
addr = "localhost:6379"
db = "0"`), `sinks.archive.db: expected an integer, got string`},
		{"array expected", withSource(`tables = "public.*"`), `sources.main.tables: expected an array of strings, got string`},
		{"array element", minimal + `
[sinks.archive]
type = "stdout"
sources = ["main", 1]`, `sinks.archive.sources[1]: expected a string, got integer`},
		{"table expected", "log = \"debug\"\n" + minimal, `log: expected a table, got string`},
		{"sink with no source", minimal + `
[sinks.archive]
type = "stdout"`, `sinks.archive.sources: missing: name the sources this sink reads, e.g. sources = ["main"]`},
		{"sink with empty sources", minimal + `
[sinks.archive]
type = "stdout"
sources = []`, `sinks.archive.sources: empty: name the sources this sink reads, e.g. sources = ["main"]`},
		{"source listed twice", minimal + `
[sinks.archive]
type = "stdout"
sources = ["main", "main"]`, `sinks.archive.sources[1]: source "main" is listed twice`},
		{"source feeding no sink", minimal + `
[sources.other]
dsn = "x"`, `sources.other: feeds no sink: list it in a sink's sources (a sink of type "discard" consumes it without writing), or remove it`},
		{"duplicate slot", minimal + `
[sources.other]
dsn = "x"
slot = "pgfeed_main"
[sinks.o2]
type = "discard"
sources = ["other"]`, `sources.other.slot: slot "pgfeed_main" is also used by sources.main: each source needs a slot of its own`},
		{"invalid slot", withSource(`slot = "Main-Slot"`), `sources.main.slot: invalid slot name "Main-Slot" (PostgreSQL allows 1 to 63 lowercase letters, digits and "_")`},
		{"default slot too long", strings.Replace(minimal, "main", strings.Repeat("m", 60), -1), `sources.` + strings.Repeat("m", 60) + `.slot: missing, and the default "pgfeed_` + strings.Repeat("m", 60) + `" is longer than 63 bytes: set one`},
		{"invalid publication", withSource(`publication = "my pub"`), `sources.main.publication: invalid publication name "my pub" (use 1 to 63 lower-case letters, digits and "_": pgfeed never quotes it, so PostgreSQL would fold upper case)`},
		{"upper-case publication", withSource(`publication = "MyPub"`), `sources.main.publication: invalid publication name "MyPub" (use 1 to 63 lower-case letters, digits and "_": pgfeed never quotes it, so PostgreSQL would fold upper case)`},
		{"invalid glob", withSource(`tables = ["public.*", "public.[a"]`), `sources.main.tables[1]: invalid pattern "public.[a": syntax error in pattern`},
		{"invalid table name", withSource(`exclude = ["a.b.c"]`), `sources.main.exclude[0]: "a.b.c": want table or schema.table`},
		{"invalid format", sink(`type = "stdout"
format = "jsn"`), `sinks.archive.format: unknown format "jsn" (have: json, wal2json, wal2json2, debezium, cloudevents, avro)`},
		{"invalid duration", withSource(`heartbeat = "5 mins"`), `sources.main.heartbeat: invalid duration "5 mins" (want e.g. "30s", "5m", "1h30m"): time: unknown unit " mins" in duration "5 mins"`},
		{"duration of the wrong type", withSource(`heartbeat = 30`), `sources.main.heartbeat: expected a duration such as "30s", got integer`},
		{"negative duration", withSource(`heartbeat = "-1s"`), `sources.main.heartbeat: invalid duration "-1s": must not be negative`},
		{"invalid retain", withSource(`retain = "forever"`), `sources.main.retain: invalid retain "forever" (want a duration such as "1h" or a size such as "512MB")`},
		{"unset variable", strings.Replace(minimal, "postgres://localhost/db", "${PGFEED_DSN}", 1), `sources.main.dsn: environment variable PGFEED_DSN is not set (set it, or give a default: ${PGFEED_DSN:-value})`},
		{"bad variable reference", sink(`type = "file"
path = "${OUT"`), `sinks.archive.path: unclosed "${" at "${OUT"`},
		{"unknown sink type", sink(`type = "fiel"
path = "x"`), `sinks.archive.type: unknown sink type "fiel" (have: discard, file, kafka, nats, redis, stdout, webhook, websocket)`},
		{"sink type missing", minimal + `
[sinks.archive]
sources = ["main"]`, `sinks.archive.type: missing`},
		{"unknown source type", `
[sources.main]
type = "mysql"
dsn = "x"
[sinks.out]
type = "stdout"
sources = ["main"]`, `sources.main.type: unknown source type "mysql" (have: kafka, postgres)`},
		{"unknown placeholder", sink(`type = "stdout"
[sinks.archive.route]
default = "{schema}.{tabel}"`), `sinks.archive.route.default: template "{schema}.{tabel}": unknown placeholder {tabel} (have {schema}, {table}, {op})`},
		{"route for a pattern", sink(`type = "stdout"
[sinks.archive.route.tables]
"public.*" = "x"`), `sinks.archive.route.tables."public.*": "public.*" is a pattern: name one table`},
		{"two routes for one table", sink(`type = "stdout"
[sinks.archive.route.tables]
"public.users" = "a"
users = "b"`), `sinks.archive.route.tables.users: second route for table public.users`},
		{"bad column pattern", sink(`type = "stdout"
[sinks.archive.columns]
mask = ["email"]`), `sinks.archive.columns.mask[0]: "email": want table.column or schema.table.column`},
		{"unknown key in columns", sink(`type = "stdout"
[sinks.archive.columns]
hide = ["public.users.email"]`), `sinks.archive.columns.hide: unknown key (known here: drop, mask)`},
		{"bad include", sink(`type = "stdout"
[sinks.archive.tables]
include = ["[x"]`), `sinks.archive.tables.include[0]: invalid pattern "[x": syntax error in pattern`},
		{"row filter with a second statement", withSource(`[sources.main.filter."public.orders"]
where = "true; drop table orders"`), `sources.main.filter."public.orders".where: row filter "true; drop table orders": ";" at offset 4: a filter is one expression`},
		{"row filter without where", withSource(`[sources.main.filter."public.orders"]
wehre = "x > 1"`), "sources.main.filter.\"public.orders\".where: missing\nsources.main.filter.\"public.orders\".wehre: unknown key (did you mean where?)"},
		{"row filter on a pattern", withSource(`[sources.main.filter."public.*"]
where = "x > 1"`), `sources.main.filter."public.*": "public.*" is a pattern: name one table`},
		{"row filter on a table not captured", withSource(`tables = ["public.*"]
exclude = ["public.orders"]
[sources.main.filter.orders]
where = "x > 1"`), `sources.main.filter.orders: table public.orders is not among this source's tables (see tables and exclude), so the filter would never apply`},
		{"websocket without a server", sink(`type = "websocket"`), `sinks.archive.listen: missing: set it, or set http.listen to serve this sink on the admin server`},
		{"websocket on the admin address", "[http]\nlisten = \":8080\"\n" + sink(`type = "websocket"
listen = ":8080"`), `sinks.archive.listen: same address as http.listen: leave listen out to serve this sink on the admin server`},
		{"two websockets on one endpoint", "[http]\nlisten = \":8080\"\n" + sink(`type = "websocket"`) + `
[sinks.ws2]
type = "websocket"
sources = ["main"]`, `sinks.ws2.path: "/changes" on :8080 is also served by sinks.archive`},
		{"websocket path", "[http]\nlisten = \":8080\"\n" + sink(`type = "websocket"
path = "changes"`), `sinks.archive.path: invalid path "changes": must start with "/"`},
		{"two file sinks on one path", sink(`type = "file"
path = "out/"`) + `
[sinks.f2]
type = "file"
sources = ["main"]
path = "./out"`, `sinks.f2.path: "./out" is also written by sinks.archive`},
		{"file without path", sink(`type = "file"`), `sinks.archive.path: missing`},
		{"kafka topic and route.default", sink(`type = "kafka"
brokers = ["localhost:9092"]
topic = "t"
[sinks.archive.route]
default = "{table}"`), `sinks.archive.topic: conflicts with sinks.archive.route.default: set one of them`},
		{"kafka broker address", sink(`type = "kafka"
brokers = ["localhost", ":9092", "h:port"]`), `sinks.archive.brokers[0]: invalid address "localhost" (want host:port)
sinks.archive.brokers[1]: invalid address ":9092": missing host
sinks.archive.brokers[2]: invalid address "h:port": port "port" is not a number from 0 to 65535`},
		{"kafka settings", sink(`type = "kafka"
brokers = ["localhost:9092"]
compression = "brotli"
acks = "none"
fallback_topic = "bad topic"
partitions = -1
max_message_bytes = "2GiB"
[sinks.archive.sasl]
mechanism = "GSSAPI"`), `sinks.archive.compression: unknown compression "brotli" (have: none, gzip, snappy, lz4, zstd)
sinks.archive.acks: unknown acks "none" (have: all, leader)
sinks.archive.fallback_topic: invalid topic "bad topic" (Kafka allows 1 to 249 letters, digits, ".", "_" and "-")
sinks.archive.partitions: must be from 1 to 2147483647 (or left out for the broker's default)
sinks.archive.create_topics: partitions and replication apply to topics pgfeed creates: set create_topics = true, or leave them out
sinks.archive.max_message_bytes: must be from 1 to 1GiB
sinks.archive.sasl.mechanism: unknown mechanism "GSSAPI" (have: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)`},
		{"kafka transactional", sink(`type = "kafka"
brokers = ["localhost:9092"]
transactional = true
acks = "leader"
[sinks.archive.tls]
cert = "c.pem"
[sinks.archive.sasl]
mechanism = "PLAIN"`), `sinks.archive.acks: "leader" cannot be used with transactional = true, which needs acks = "all"
sinks.archive.transactional_id: missing: transactional = true needs an id unique to this sink in the Kafka cluster, e.g. "pgfeed-archive"
sinks.archive.tls.key: missing: a client certificate needs its key
sinks.archive.sasl.user: missing`},
		{"kafka transactional ids", sink(`type = "kafka"
brokers = ["localhost:9092"]
transactional = true
transactional_id = "x"`) + `
[sinks.k2]
type = "kafka"
sources = ["main"]
brokers = ["localhost:9092"]
transactional_id = "x"
[sinks.k3]
type = "kafka"
sources = ["main"]
brokers = ["localhost:9092"]
transactional = true
transactional_id = "x"`, `sinks.k2.transactional_id: set, but transactional is not true
sinks.k3.transactional_id: "x" is also the id of sinks.archive: two producers of one id fence each other`},
		{"kafka without brokers", sink(`type = "kafka"
brokers = []`), `sinks.archive.brokers: empty`},
		{"kafka source topic", `
[sources.k]
type = "kafka"
brokers = ["h:9092"]
topics = ["bad topic"]
dsn = "x"
[sinks.out]
type = "stdout"
sources = ["k"]`, `sources.k.topics[0]: invalid topic "bad topic" (Kafka allows 1 to 249 letters, digits, ".", "_" and "-")
sources.k.dsn: unknown key (known here: brokers, format, group, instance_id, session_timeout, tls, topics, type)`},
		{"kafka source format", `
[sources.k]
type = "kafka"
brokers = ["h:9092"]
topics = ["t"]
format = "avro"
[sinks.out]
type = "stdout"
sources = ["k"]`, `sources.k.format: unknown format "avro" (have: auto, json, debezium)`},
		{"redis stream and channel", sink(`type = "redis"
addr = "localhost:6379"
stream = "s"
channel = "c"`), `sinks.archive.channel: conflicts with stream: a redis sink writes to streams or to channels, not both`},
		{"redis negative db", sink(`type = "redis"
addr = "localhost:6379"
db = -1`), `sinks.archive.db: must not be negative`},
		{"nats url", sink(`type = "nats"
url = "nats://a:4222,localhost:4222"`), `sinks.archive.url: invalid URL "localhost:4222" (want nats://host:port, several separated by commas)`},
		{"webhook url", sink(`type = "webhook"
url = "ftp://example.com"`), `sinks.archive.url: invalid URL "ftp://example.com" (want http:// or https://)`},
		{"webhook header", sink(`type = "webhook"
url = "https://example.com"
[sinks.archive.headers]
"X Token" = "a"
Good = 1`), `sinks.archive.headers.Good: expected a string, got integer
sinks.archive.headers."X Token": invalid header name`},
		{"webhook zero timeout", sink(`type = "webhook"
url = "https://example.com"
timeout = "0s"`), `sinks.archive.timeout: must be positive: a request without a deadline can stall the pipeline`},
		{"log level", "[log]\nlevel = \"verbose\"\n" + minimal, `log.level: unknown level "verbose" (have: debug, info, warn, error)`},
		{"log format", "[log]\nformat = \"yaml\"\n" + minimal, `log.format: unknown format "yaml" (have: text, json)`},
		{"http listen", "[http]\nlisten = \"localhost\"\n" + minimal, `http.listen: invalid address "localhost" (want host:port)`},
		{"http listen of the wrong type", "[http]\nlisten = 8080\n" + minimal, `http.listen: expected a string, got integer`},
		{"invalid name", minimal + `
[sinks."my sink"]
type = "stdout"
sources = ["main"]`, `sinks."my sink": invalid name (use letters, digits, "_" and "-")`},
		{"empty file", ``, "sources: no source defined: add one, e.g. [sources.main] with a dsn\nsinks: no sink defined: add one, e.g. [sinks.out] with type = \"stdout\""},
		{"checkpoint empty", "checkpoint = \"\"\n" + minimal, `checkpoint: empty`},
		{"several problems, in file order", `
[sources.main]
dsn = "x"
create = 1
[sinks.b]
type = "file"
sources = ["main"]
rotate_every = "soon"
[sinks.a]
type = "stdout"
sources = ["main"]
format = "xml"
colour = true`, `sources.main.create: expected a boolean, got integer
sinks.b.path: missing
sinks.b.rotate_every: invalid duration "soon" (want e.g. "30s", "5m", "1h30m"): time: invalid duration "soon"
sinks.a.format: unknown format "xml" (have: json, wal2json, wal2json2, debezium, cloudevents, avro)
sinks.a.colour: unknown key (known here: columns, dead_letter, format, route, sources, tables, type)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.toml), nil)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			if c != nil {
				t.Errorf("config returned with an error")
			}
			if err.Error() != tt.want {
				t.Errorf("got\n%v\nwant\n%s", err, tt.want)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != strings.Count(tt.want, "\n")+1 {
				t.Errorf("not an *Error with one problem per line: %#v", err)
			}
		})
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse([]byte("[sources.main]\ndsn = \n"), nil)
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("%v: no toml.ParseError inside", err)
	}
	if !strings.HasPrefix(err.Error(), "line 2: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("syntax error = %q, want one line starting with the line number", err)
	}
	// A key defined twice is refused by the TOML parser itself.
	_, err = Parse([]byte(minimal+"\n[sources.main]\ndsn = \"y\"\n"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "line 9: ") {
		t.Errorf("duplicate table: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	bad := filepath.Join(dir, "bad.toml")
	broken := filepath.Join(dir, "broken.toml")
	must(t, os.WriteFile(good, []byte(minimal), 0o600))
	must(t, os.WriteFile(bad, []byte(strings.Replace(minimal, "stdout", "stdot", 1)+"\n[x]\n"), 0o600))
	must(t, os.WriteFile(broken, []byte("a = 1\nb = \n"), 0o600))

	if _, err := Load(good); err != nil {
		t.Errorf("Load(good): %v", err)
	}
	_, err := Load(bad)
	want := bad + `: sinks.out.type: unknown sink type "stdot" (have: discard, file, kafka, nats, redis, stdout, webhook, websocket)` + "\n" +
		bad + `: x: unknown key (known here: checkpoint, checkpoint_dsn, ha, http, log, sinks, sources)`
	if err == nil || err.Error() != want {
		t.Errorf("Load(bad) =\n%v\nwant\n%s", err, want)
	}
	_, err = Load(broken)
	if err == nil || !strings.HasPrefix(err.Error(), broken+":2: ") {
		t.Errorf("Load(broken) = %v, want %s:2: ...", err, broken)
	}
	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestEnvInValues(t *testing.T) {
	data := `
checkpoint = "${STATE:-/var/lib/pgfeed}/pgfeed.db"
[sources.main]
dsn = "postgres://app:${PGPASS}@db/app"
retain = "${RETAIN:-1h}"
tables = ["${SCHEMA}.*"]
[sinks.hook]
type = "webhook"
sources = ["main"]
url = "https://h.example/${HOOK}"
timeout = "${HOOK_TIMEOUT:-3s}"
[sinks.hook.headers]
Authorization = "Bearer ${TOKEN}"
X-Literal = "pa$word and $${NOT_A_VAR} and ${DOLLARS}"
`
	c, err := Parse([]byte(data), env("PGPASS", "p@ss", "SCHEMA", "sales", "HOOK", "in", "TOKEN", "t0k", "DOLLARS", "${TOKEN}", "RETAIN", "1GiB"))
	if err != nil {
		t.Fatal(err)
	}
	pg := c.Sources[0].Settings.(*PostgresSource)
	hook := c.Sinks[0].Settings.(*WebhookSink)
	got := []string{c.Checkpoint, pg.DSN, pg.Tables[0], hook.URL, hook.Headers["Authorization"], hook.Headers["X-Literal"]}
	want := []string{"/var/lib/pgfeed/pgfeed.db", "postgres://app:p@ss@db/app", "sales.*", "https://h.example/in", "Bearer t0k",
		// a lone $ is itself, $${ is a literal ${, and a value is not expanded again
		"pa$word and ${NOT_A_VAR} and ${TOKEN}"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if pg.Retain != (Retain{Bytes: 1 << 30}) || hook.Timeout != 3*time.Second {
		t.Errorf("retain %+v timeout %v", pg.Retain, hook.Timeout)
	}
	// Keys are names, not values: a "${" in a key is left alone (and here
	// is an unknown key).
	_, err = Parse([]byte(minimal+"\n[log]\n\"${X}\" = 1\n"), nil)
	if want := `log."${X}": unknown key (known here: format, level)`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestRouteOptionsCompile(t *testing.T) {
	c, err := Parse([]byte(sink(`type = "stdout"
[sinks.archive.tables]
include = ["public.*"]
[sinks.archive.columns]
drop = ["*.*.password"]
mask = ["users.email"]
[sinks.archive.route]
default = "cdc.{table}"
[sinks.archive.route.tables]
users = "people"`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	o := c.Sink("archive").RouteOptions()
	if !reflect.DeepEqual(pairs(o.Tables), []string{"public.users=people"}) {
		t.Errorf("route tables are not normalised: %v", o.Tables)
	}
	if _, err := route.New(o); err != nil {
		t.Errorf("route.New: %v", err)
	}
}

func pairs(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// [http] token takes ${ENV} like every secret.
func TestHTTPToken(t *testing.T) {
	c, err := Parse([]byte(minimal+"[http]\nlisten = \"127.0.0.1:8080\"\ntoken = \"${ADMIN_TOKEN}\"\n"), env("ADMIN_TOKEN", "t0k"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Token != "t0k" {
		t.Errorf("http.token = %q, want t0k", c.HTTP.Token)
	}
}
