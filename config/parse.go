package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pgfeed/pgfeed/route"
)

// Defaults of settings that a file may leave out.
const (
	DefaultCheckpoint     = "pgfeed.db"
	DefaultWebhookTimeout = 10 * time.Second
	DefaultWebhookBatch   = 500
	DefaultWebhookRetries = 8
	DefaultWebhookBackoff = 200 * time.Millisecond
	DefaultWebhookMaxWait = 30 * time.Second
	DefaultWebSocketPath  = "/changes"
)

var (
	formats     = []string{"json", "wal2json", "wal2json2", "debezium", "cloudevents", "avro"}
	sourceTypes = []string{SourceKafka, SourcePostgres}
	sinkTypes   = []string{SinkDiscard, SinkFile, SinkKafka, SinkNATS, SinkRedis, SinkStdout, SinkWebhook, SinkWebSocket}
)

// Load reads and parses a configuration file, with ${NAME} taken from the
// process's environment. An invalid file gives an *Error whose File is path.
func Load(path string) (*Config, error) {
	data, err := readLimited(path)
	if _, ok := errors.AsType[*Error](err); ok {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(data, os.LookupEnv)
	if perr, ok := errors.AsType[*Error](err); ok {
		perr.File = path
	}
	return c, err
}

// Parse parses and validates a configuration. getenv looks up the
// environment variables that values name (os.LookupEnv reads the process's);
// nil means that no variable is set. The error, if any, is an *Error that
// lists every problem found.
//
// Every setting is checked here, so that `pgfeed run` fails before it
// connects anywhere: types, required settings, unknown keys, names of
// formats and types, table and column patterns, templates, row filters,
// sizes, durations and addresses, and across tables: that each sink reads
// defined sources, that each source feeds at least one sink, that no two
// sources share a slot and no two sinks write the same file or endpoint,
// that TLS files load, and that each dead_letter names a sink that reads
// no source (the only sinks allowed to have none).
//
// A source that feeds no sink is an error, not a warning: started, it
// would either hold its slot's WAL on the server without bound or confirm
// changes nobody received. A sink of type "discard" consumes a source on
// purpose.
func Parse(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	// The parser's time and memory grow faster than the text: a file too
	// large or nested too deep is refused before it runs.
	if p := checkLimits(data); p != nil {
		return nil, &Error{Problems: []Problem{*p}}
	}
	var tree map[string]any
	md, err := toml.Decode(string(data), &tree)
	if err != nil {
		p := Problem{Message: err.Error(), Err: err}
		if pe, ok := errors.AsType[toml.ParseError](err); ok {
			p.Line, p.Message = pe.Position.Line, pe.Message
		}
		// The parser quotes the text at fault, which may hold a line
		// break: the problem must stay one line.
		p.Message = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(p.Message)
		return nil, &Error{Problems: []Problem{p}}
	}
	r := &reader{getenv: getenv, order: make(map[string]int)}
	for i, k := range md.Keys() {
		r.order[k.String()] = i
	}
	c := r.config(&table{r: r, m: tree})
	if len(r.problems) > 0 {
		return nil, &Error{Problems: r.problems}
	}
	return c, nil
}

func (r *reader) config(top *table) *Config {
	c := &Config{Checkpoint: top.strDefault("checkpoint", DefaultCheckpoint)}
	r.checkpointStore(top, c)

	lt := top.sub("log")
	switch level := lt.strDefault("level", "info"); strings.ToLower(level) {
	case "debug":
		c.Log.Level = slog.LevelDebug
	case "info":
		c.Log.Level = slog.LevelInfo
	case "warn":
		c.Log.Level = slog.LevelWarn
	case "error":
		c.Log.Level = slog.LevelError
	case "":
	default:
		r.add(lt.path("level"), "unknown level %q (have: debug, info, warn, error)", level)
	}
	c.Log.Format = lt.strDefault("format", "text")
	if f := c.Log.Format; f != "" && f != "text" && f != "json" {
		r.add(lt.path("format"), "unknown format %q (have: text, json)", f)
	}
	lt.done()

	ht := top.sub("http")
	listen, ok := ht.strOK("listen")
	if c.HTTP.Listen = listen; ok {
		r.checkAddr(ht.path("listen"), listen, false)
	}
	c.HTTP.Token, _ = ht.strOK("token")
	ht.done()

	for _, t := range top.subs("sources") {
		c.Sources = append(c.Sources, r.source(t))
	}
	for _, t := range top.subs("sinks") {
		c.Sinks = append(c.Sinks, r.sink(t))
	}
	top.done()
	r.crossCheck(c)
	r.checkCheckpointDSN(c)
	return c
}

func (r *reader) checkName(t *table) {
	ok := t.name != ""
	for _, c := range t.name {
		ok = ok && (c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
	}
	if !ok {
		r.add(t.key.String(), "invalid name (use letters, digits, \"_\" and \"-\")")
	}
}

func (r *reader) source(t *table) *Source {
	r.checkName(t)
	s := &Source{Name: t.name, Type: t.strDefault("type", SourcePostgres)}
	switch s.Type {
	case SourcePostgres:
		s.Settings = r.postgres(t)
	case SourceKafka:
		s.Settings = r.kafkaSource(t)
	default:
		if s.Type != "" {
			r.add(t.path("type"), "unknown source type %q (have: %s)", s.Type, strings.Join(sourceTypes, ", "))
		}
		t.skipRest() // the keys of an unknown type cannot be checked
	}
	t.done()
	return s
}

func (r *reader) postgres(t *table) *PostgresSource {
	p := &PostgresSource{DSN: t.mustStr("dsn")}
	if t.has("slot") {
		p.Slot = t.mustStr("slot")
		if p.Slot != "" && !validSlot(p.Slot) {
			r.add(t.path("slot"), "invalid slot name %q (PostgreSQL allows 1 to 63 lowercase letters, digits and \"_\")", p.Slot)
		}
	} else {
		t.get("slot")
		p.Slot = "pgfeed_" + strings.ReplaceAll(strings.ToLower(t.name), "-", "_")
		// A valid source name maps to valid slot characters; only its
		// length can make the default unusable.
		if len(p.Slot) > 63 {
			r.add(t.path("slot"), "missing, and the default %q is longer than 63 bytes: set one", p.Slot)
		}
	}
	p.Publication = t.strDefault("publication", p.Slot)
	if t.has("publication") && p.Publication != "" && !validPublication(p.Publication) {
		r.add(t.path("publication"), "invalid publication name %q (use 1 to 63 lower-case letters, digits and \"_\": pgfeed never quotes it, so PostgreSQL would fold upper case)", p.Publication)
	}
	p.Create = t.boolean("create")
	if t.has("failover") {
		v := t.boolean("failover")
		p.Failover = &v
	}
	p.Tables = t.each("tables", r.checkTablePattern)
	p.Exclude = t.each("exclude", r.checkTablePattern)
	p.Snapshot = t.boolean("snapshot")
	p.Retain = t.retain("retain")
	// Absent: the stream's default; "0s": never (the stream's negative).
	p.Heartbeat = t.duration("heartbeat")
	if t.has("heartbeat") && p.Heartbeat == 0 {
		p.Heartbeat = -1
	}

	for _, ft := range t.subs("filter") {
		where := ft.mustStr("where")
		ft.done()
		schema, table, err := route.ParseTableName(ft.name)
		if err != nil {
			r.addErr(ft.key.String(), err)
			continue
		}
		if where == "" {
			continue
		}
		norm, err := route.NormalizeWhere(where)
		if err != nil {
			r.addErr(ft.path("where"), err)
			continue
		}
		name := schema + "." + table
		if _, dup := p.Filters[name]; dup {
			r.add(ft.key.String(), "second filter for table %s", name)
			continue
		}
		if !r.captures(p, schema, table) {
			r.add(ft.key.String(), "table %s is not among this source's tables (see tables and exclude), so the filter would never apply", name)
		}
		if p.Filters == nil {
			p.Filters = make(map[string]string)
		}
		p.Filters[name] = norm
	}
	return p
}

// captures reports whether the source's table patterns select the table.
// Invalid patterns, already reported, select nothing.
func (r *reader) captures(p *PostgresSource, schema, table string) bool {
	match := func(patterns []string) bool {
		for _, s := range patterns {
			if tp, err := route.ParseTablePattern(s); err == nil && tp.Match(schema, table) {
				return true
			}
		}
		return false
	}
	return (len(p.Tables) == 0 || match(p.Tables)) && !match(p.Exclude)
}

func (r *reader) kafkaSource(t *table) *KafkaSource {
	k := &KafkaSource{
		Brokers: t.mustEach("brokers", r.checkBroker),
		Topics: t.mustEach("topics", func(field, s string) {
			if !validKafkaTopic(s) {
				r.add(field, "invalid topic %q (Kafka allows 1 to 249 letters, digits, \".\", \"_\" and \"-\")", s)
			}
		}),
		Group:          t.strDefault("group", "pgfeed-"+t.name),
		InstanceID:     t.str("instance_id"),
		SessionTimeout: t.duration("session_timeout"),
		Format:         t.str("format"),
	}
	switch k.Format {
	case "", "auto":
		k.Format = ""
	case "json", "debezium":
	default:
		r.add(t.path("format"), "unknown format %q (have: auto, json, debezium)", k.Format)
	}
	k.TLS, k.SASL = r.kafkaAuth(t)
	return k
}

var (
	kafkaCompressions = []string{"none", "gzip", "snappy", "lz4", "zstd"}
	saslMechanisms    = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
)

func (r *reader) kafkaSink(t *table) *KafkaSink {
	k := &KafkaSink{
		Brokers:         t.mustEach("brokers", r.checkBroker),
		Compression:     t.str("compression"),
		Acks:            t.str("acks"),
		FallbackTopic:   t.str("fallback_topic"),
		CreateTopics:    t.boolean("create_topics"),
		MaxMessageBytes: t.size("max_message_bytes"),
		Transactional:   t.boolean("transactional"),
		TransactionalID: t.str("transactional_id"),
		OffsetsTopic:    t.str("offsets_topic"),
	}
	if c := k.Compression; t.has("compression") && !slices.Contains(kafkaCompressions, c) {
		r.add(t.path("compression"), "unknown compression %q (have: %s)", c, strings.Join(kafkaCompressions, ", "))
	}
	switch k.Acks {
	case "", "all":
	case "leader":
		if k.Transactional {
			r.add(t.path("acks"), `"leader" cannot be used with transactional = true, which needs acks = "all"`)
		}
	default:
		r.add(t.path("acks"), "unknown acks %q (have: all, leader)", k.Acks)
	}
	for _, f := range []struct {
		key   string
		value string
	}{{"fallback_topic", k.FallbackTopic}, {"offsets_topic", k.OffsetsTopic}} {
		if t.has(f.key) && !validKafkaTopic(f.value) {
			r.add(t.path(f.key), "invalid topic %q (Kafka allows 1 to 249 letters, digits, \".\", \"_\" and \"-\")", f.value)
		}
	}
	if n := t.integer("partitions"); n < 0 || n > 1<<31-1 {
		r.add(t.path("partitions"), "must be from 1 to 2147483647 (or left out for the broker's default)")
	} else {
		k.Partitions = int32(n)
	}
	if n := t.integer("replication"); n < 0 || n > 1<<15-1 {
		r.add(t.path("replication"), "must be from 1 to 32767 (or left out for the broker's default)")
	} else {
		k.Replication = int16(n)
	}
	if (t.has("partitions") || t.has("replication")) && !k.CreateTopics {
		r.add(t.path("create_topics"), "partitions and replication apply to topics pgfeed creates: set create_topics = true, or leave them out")
	}
	if k.MaxMessageBytes < 0 || k.MaxMessageBytes > 1<<30 {
		r.add(t.path("max_message_bytes"), "must be from 1 to 1GiB")
	}
	if k.Transactional && k.TransactionalID == "" {
		r.add(t.path("transactional_id"), "missing: transactional = true needs an id unique to this sink in the Kafka cluster, e.g. \"pgfeed-%s\"", t.name)
	}
	if !k.Transactional && t.has("transactional_id") {
		r.add(t.path("transactional_id"), "set, but transactional is not true")
	}

	k.TLS, k.SASL = r.kafkaAuth(t)
	return k
}

// kafkaAuth reads the [tls] and [sasl] tables of a Kafka source or sink.
func (r *reader) kafkaAuth(t *table) (*TLS, SASL) {
	tc := r.tls(t)
	var sasl SASL
	if t.has("sasl") {
		st := t.sub("sasl")
		sasl = SASL{Mechanism: strings.ToUpper(st.str("mechanism")), User: st.str("user"), Password: st.str("password")}
		switch {
		case !slices.Contains(saslMechanisms, sasl.Mechanism):
			r.add(st.path("mechanism"), "unknown mechanism %q (have: %s)", sasl.Mechanism, strings.Join(saslMechanisms, ", "))
		case sasl.User == "":
			r.add(st.path("user"), "missing")
		}
		st.done()
	}
	return tc, sasl
}

func (r *reader) sink(t *table) *Sink {
	r.checkName(t)
	s := &Sink{Name: t.name, Type: t.mustStr("type")}
	s.Sources = t.each("sources", func(field, name string) {
		if name == "" {
			r.add(field, "empty")
		}
	})
	// A sink without sources is a dead-letter sink, or a mistake:
	// crossCheck tells which, once it knows every sink's dead_letter.
	if !t.has("sources") {
		r.noSources = append(r.noSources, t.name)
	} else if a, ok := t.m["sources"].([]any); ok && len(a) == 0 {
		r.add(t.path("sources"), `empty: name the sources this sink reads, e.g. sources = ["main"]`)
	}
	if dl, ok := t.strOK("dead_letter"); ok {
		if s.DeadLetter = dl; dl == "" {
			r.add(t.path("dead_letter"), "empty: name the sink that receives this sink's poison records, or leave it out")
		}
	}
	s.Format = t.strDefault("format", "json")
	if s.Format != "" && !slices.Contains(formats, s.Format) {
		r.add(t.path("format"), "unknown format %q (have: %s)", s.Format, strings.Join(formats, ", "))
	}
	s.Avro = r.avro(t, s)

	tt := t.sub("tables")
	s.Tables.Include = tt.each("include", r.checkTablePattern)
	s.Tables.Exclude = tt.each("exclude", r.checkTablePattern)
	tt.done()

	ct := t.sub("columns")
	s.Columns.Drop = ct.each("drop", r.checkColumnPattern)
	s.Columns.Mask = ct.each("mask", r.checkColumnPattern)
	ct.done()

	rt := t.sub("route")
	s.Route.Default = r.template(rt, "default")
	s.Route.Other = r.template(rt, "other")
	if m := rt.strMap("tables"); len(m) > 0 {
		s.Route.Tables = make(map[string]string, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			field := append(slices.Clone(rt.key), "tables", name).String()
			schema, table, err := route.ParseTableName(name)
			if err != nil {
				r.addErr(field, err)
				continue
			}
			if _, err := route.ParseTemplate(m[name]); err != nil {
				r.addErr(field, err)
			}
			if _, dup := s.Route.Tables[schema+"."+table]; dup {
				r.add(field, "second route for table %s.%s", schema, table)
			}
			s.Route.Tables[schema+"."+table] = m[name]
		}
	}
	rt.done()

	switch s.Type {
	case SinkStdout:
		s.Settings = &StdoutSink{}
	case SinkDiscard:
		s.Settings = &DiscardSink{}
	case SinkFile:
		s.Settings = &FileSink{
			Path:        t.mustStr("path"),
			RotateBytes: t.size("rotate_bytes"),
			RotateEvery: t.duration("rotate_every"),
		}
	case SinkKafka:
		s.Settings = r.kafkaSink(t)
		r.destination(t, rt, s, "topic")
	case SinkNATS:
		s.Settings = r.natsSink(t, rt, s)
	case SinkRedis:
		s.Settings = r.redisSink(t, rt, s)
	case SinkWebhook:
		s.Settings = r.webhook(t, s)
	case SinkWebSocket:
		listen, ok := t.strOK("listen")
		ws := &WebSocketSink{Listen: listen, Path: t.strDefault("path", DefaultWebSocketPath),
			MaxLagRecords: int(t.integer("max_lag_records")), MaxLagBytes: t.size("max_lag_bytes"), AckTimeout: t.duration("ack_timeout")}
		if ws.MaxLagRecords < 0 {
			r.add(t.path("max_lag_records"), "must be positive, or 0 for the default")
		}
		if ok {
			r.checkAddr(t.path("listen"), listen, false)
		}
		if ws.Path != "" && !strings.HasPrefix(ws.Path, "/") {
			r.add(t.path("path"), "invalid path %q: must start with \"/\"", ws.Path)
		}
		s.Settings = ws
	default:
		if s.Type != "" {
			r.add(t.path("type"), "unknown sink type %q (have: %s)", s.Type, strings.Join(sinkTypes, ", "))
		}
		t.skipRest() // the keys of an unknown type cannot be checked
	}
	if s.Route.Default == "" {
		s.Route.Default = route.DefaultTemplate
	}
	if s.Route.Other == "" {
		s.Route.Other = route.DefaultOtherTemplate
	}
	t.done()
	return s
}

func (r *reader) webhook(t *table, s *Sink) *WebhookSink {
	w := &WebhookSink{URL: t.mustStr("url"), Headers: t.strMap("headers"), Timeout: t.duration("timeout")}
	if w.URL != "" && !validURL(w.URL, "http", "https") {
		r.add(t.path("url"), "invalid URL %q (want http:// or https://)", w.URL)
	}
	for _, name := range slices.Sorted(maps.Keys(w.Headers)) {
		if !validHeaderName(name) {
			r.add(append(slices.Clone(t.key), "headers", name).String(), "invalid header name")
		}
	}
	if !t.has("timeout") {
		w.Timeout = DefaultWebhookTimeout
	} else if w.Timeout == 0 && !r.failed(t.path("timeout")) {
		r.add(t.path("timeout"), "must be positive: a request without a deadline can stall the pipeline")
	}
	if t.has("secret") {
		// Present but empty (an unset ${SECRET:-}) must not quietly turn
		// signing off.
		w.Secret = t.mustStr("secret")
	}
	w.Mode = t.strDefault("mode", WebhookBatch)
	switch w.Mode {
	case "", WebhookBatch, WebhookSingle:
	case WebhookBinary:
		if s.Format != "cloudevents" {
			r.add(t.path("mode"), `binary is the CloudEvents HTTP binding's mode: set format = "cloudevents", or use mode = "single"`)
		}
	default:
		r.add(t.path("mode"), "unknown mode %q (have: batch, single, binary)", w.Mode)
	}
	if s.Format == "avro" && w.Mode == WebhookBatch {
		r.add(t.path("format"), `avro is binary and cannot be batched in a JSON array: set mode = "single", or use another format`)
	}
	positive := func(k string, def int) int {
		if !t.has(k) {
			t.get(k)
			return def
		}
		n := t.integer(k)
		if n < 1 && !r.failed(t.path(k)) {
			r.add(t.path(k), "must be at least 1")
		}
		return int(n)
	}
	w.MaxBatch = positive("max_batch", DefaultWebhookBatch)
	w.MaxInFlight = positive("max_in_flight", 1)
	if (w.Mode == WebhookSingle || w.Mode == WebhookBinary) && t.has("max_batch") {
		r.add(t.path("max_batch"), `has no effect with mode = %q: remove it`, w.Mode)
	}
	w.Retries = DefaultWebhookRetries
	if t.has("retries") {
		if w.Retries = int(t.integer("retries")); w.Retries < 0 {
			r.add(t.path("retries"), "must not be negative (0: no retries)")
		}
	} else {
		t.get("retries")
	}
	w.MinBackoff, w.MaxBackoff = DefaultWebhookBackoff, DefaultWebhookMaxWait
	if t.has("retry_backoff") {
		if w.MinBackoff = t.duration("retry_backoff"); w.MinBackoff == 0 && !r.failed(t.path("retry_backoff")) {
			r.add(t.path("retry_backoff"), "must be positive")
		}
	} else {
		t.get("retry_backoff")
	}
	if t.has("retry_max_backoff") {
		w.MaxBackoff = t.duration("retry_max_backoff")
		if !r.failed(t.path("retry_max_backoff")) && w.MaxBackoff < w.MinBackoff {
			r.add(t.path("retry_max_backoff"), "%s is less than retry_backoff (%s)", w.MaxBackoff, w.MinBackoff)
		}
	} else {
		t.get("retry_max_backoff")
	}
	w.TLS = r.tls(t)
	if w.TLS != nil && strings.HasPrefix(w.URL, "http://") {
		r.add(t.path("tls"), "set, but url is http://: use https://, or remove the tls settings")
	}
	return w
}

// template reads an optional destination template.
func (r *reader) template(t *table, k string) string {
	s, ok := t.strOK(k)
	if ok {
		if _, err := route.ParseTemplate(s); err != nil {
			r.addErr(t.path(k), err)
		}
	}
	return s
}

// destination reads a type's own name for the default destination (topic,
// subject, stream, channel), which is route.default under another name, and
// reports whether the key was set.
func (r *reader) destination(t, rt *table, s *Sink, k string) bool {
	v := r.template(t, k)
	if !t.has(k) {
		return false
	}
	if rt.has("default") {
		r.add(t.path(k), "conflicts with %s: set one of them", rt.path("default"))
		return true
	}
	s.Route.Default = v
	return true
}

func (r *reader) crossCheck(c *Config) {
	if len(c.Sources) == 0 && !r.failed("sources") {
		r.add("sources", "no source defined: add one, e.g. [sources.main] with a dsn")
	}
	if len(c.Sinks) == 0 && !r.failed("sinks") {
		r.add("sinks", `no sink defined: add one, e.g. [sinks.out] with type = "stdout"`)
	}
	names := make([]string, len(c.Sources))
	for i, s := range c.Sources {
		names[i] = s.Name
	}
	badRef := false
	for _, s := range c.Sinks {
		field := toml.Key{"sinks", s.Name, "sources"}.String()
		for i, name := range s.Sources {
			switch {
			case name == "":
				badRef = true // reported when read
			case c.Source(name) == nil:
				badRef = true
				if hint := suggest(name, names); hint != "" {
					r.add(fmt.Sprintf("%s[%d]", field, i), "unknown source %q (did you mean %s? have: %s)", name, hint, strings.Join(names, ", "))
				} else {
					r.add(fmt.Sprintf("%s[%d]", field, i), "unknown source %q (have: %s)", name, strings.Join(names, ", "))
				}
			case slices.Index(s.Sources, name) < i:
				r.add(fmt.Sprintf("%s[%d]", field, i), "source %q is listed twice", name)
			}
		}
	}
	r.checkDeadLetters(c)
	slots := make(map[string]string)
	for _, s := range c.Sources {
		// A misspelt source name in a sink already explains why a source
		// would feed no sink; one message per mistake is enough.
		if !badRef && len(c.Sinks) > 0 && len(c.SinksOf(s.Name)) == 0 {
			r.add(toml.Key{"sources", s.Name}.String(), `feeds no sink: list it in a sink's sources (a sink of type "discard" consumes it without writing), or remove it`)
		}
		if p, ok := s.Settings.(*PostgresSource); ok && p.Slot != "" {
			if other, dup := slots[p.Slot]; dup {
				r.add(toml.Key{"sources", s.Name, "slot"}.String(), "slot %q is also used by %s: each source needs a slot of its own", p.Slot, toml.Key{"sources", other})
			} else {
				slots[p.Slot] = s.Name
			}
		}
	}
	files := make(map[string]string)
	endpoints := make(map[string]string)
	txnIDs := make(map[string]string)
	for _, s := range c.Sinks {
		switch st := s.Settings.(type) {
		case *FileSink:
			if st.Path == "" {
				continue
			}
			p := filepath.Clean(st.Path)
			if other, dup := files[p]; dup {
				r.add(toml.Key{"sinks", s.Name, "path"}.String(), "%q is also written by %s", st.Path, toml.Key{"sinks", other})
			} else {
				files[p] = s.Name
			}
		case *KafkaSink:
			if !st.Transactional || st.TransactionalID == "" {
				continue
			}
			if other, dup := txnIDs[st.TransactionalID]; dup {
				r.add(toml.Key{"sinks", s.Name, "transactional_id"}.String(), "%q is also the id of %s: two producers of one id fence each other", st.TransactionalID, toml.Key{"sinks", other})
			} else {
				txnIDs[st.TransactionalID] = s.Name
			}
		case *WebSocketSink:
			listen := st.Listen
			field := toml.Key{"sinks", s.Name, "listen"}.String()
			switch {
			case listen == "" && c.HTTP.Listen == "":
				r.add(field, "missing: set it, or set http.listen to serve this sink on the admin server")
				continue
			case listen == "":
				listen = c.HTTP.Listen
			case listen == c.HTTP.Listen:
				r.add(field, "same address as http.listen: leave listen out to serve this sink on the admin server")
				continue
			}
			ep := listen + st.Path
			if other, dup := endpoints[ep]; dup {
				r.add(toml.Key{"sinks", s.Name, "path"}.String(), "%q on %s is also served by %s", st.Path, listen, toml.Key{"sinks", other})
			} else {
				endpoints[ep] = s.Name
			}
		}
	}
}

// checkDeadLetters checks each dead_letter and the sinks without sources,
// which must be dead-letter sinks.
func (r *reader) checkDeadLetters(c *Config) {
	names := make([]string, len(c.Sinks))
	for i, s := range c.Sinks {
		names[i] = s.Name
	}
	usedBy := map[string]string{} // dead-letter sink → the first sink naming it
	named := map[string]bool{}    // sinks named by a dead_letter, rightly or not
	for _, s := range c.Sinks {
		if s.DeadLetter == "" {
			continue
		}
		named[s.DeadLetter] = true
		field := toml.Key{"sinks", s.Name, "dead_letter"}.String()
		dl := c.Sink(s.DeadLetter)
		switch {
		case s.DeadLetter == s.Name:
			r.add(field, "names this sink itself: name another sink, e.g. a file sink without sources")
		case dl == nil:
			if hint := suggest(s.DeadLetter, names); hint != "" {
				r.add(field, "unknown sink %q (did you mean %s?)", s.DeadLetter, hint)
			} else {
				r.add(field, "unknown sink %q (have: %s)", s.DeadLetter, strings.Join(names, ", "))
			}
		case dl.DeadLetter != "":
			r.add(field, "sink %q has a dead_letter of its own: a dead-letter sink must be the end of the line", s.DeadLetter)
		case len(dl.Sources) > 0:
			r.add(field, "sink %q reads sources: a dead-letter sink gets only poison records, so remove its sources", s.DeadLetter)
		default:
			if _, ok := usedBy[dl.Name]; !ok {
				usedBy[dl.Name] = s.Name
			}
		}
	}
	for _, name := range r.noSources {
		s := c.Sink(name)
		by, ok := usedBy[name]
		if !ok {
			if !named[name] { // else reported with the dead_letter naming it
				r.add(toml.Key{"sinks", name, "sources"}.String(), `missing: name the sources this sink reads, e.g. sources = ["main"]`)
			}
			continue
		}
		prefix := fmt.Sprintf("dead-letter sink of %s", toml.Key{"sinks", by})
		if s.Format != "json" {
			r.add(toml.Key{"sinks", name, "format"}.String(), "%s: it writes JSON envelopes, so remove format", prefix)
		}
		if len(s.Tables.Include)+len(s.Tables.Exclude)+len(s.Columns.Drop)+len(s.Columns.Mask) > 0 {
			r.add(toml.Key{"sinks", name}.String(), "%s: it takes every poison record whole, so remove its tables and columns (filter in %s)", prefix, toml.Key{"sinks", by})
		}
	}
}

// failed reports whether a problem was already found at field.
func (r *reader) failed(field string) bool {
	return slices.ContainsFunc(r.problems, func(p Problem) bool { return p.Field == field })
}

func (r *reader) checkTablePattern(field, s string) {
	if _, err := route.ParseTablePattern(s); err != nil {
		r.addErr(field, err)
	}
}

func (r *reader) checkColumnPattern(field, s string) {
	if _, err := route.ParseColumnPattern(s); err != nil {
		r.addErr(field, err)
	}
}

func (r *reader) checkBroker(field, s string) { r.checkAddr(field, s, true) }

// checkAddr checks a host:port; a listen address may leave the host out.
func (r *reader) checkAddr(field, s string, needHost bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		r.add(field, "invalid address %q (want host:port)", s)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		r.add(field, "invalid address %q: port %q is not a number from 0 to 65535", s, port)
	}
	if needHost && host == "" {
		r.add(field, "invalid address %q: missing host", s)
	}
}

func validSlot(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range []byte(s) {
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// validPublication holds publications to the rule of slot names, as the
// source does: pgfeed never quotes either.
func validPublication(s string) bool { return validSlot(s) }

func validKafkaTopic(s string) bool {
	if s == "" || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for _, c := range []byte(s) {
		if c != '.' && c != '_' && c != '-' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validURL(s string, schemes ...string) bool {
	u, err := url.Parse(strings.TrimSpace(s))
	return err == nil && slices.Contains(schemes, u.Scheme) && u.Host != ""
}

// validHeaderName reports whether s is an HTTP token (RFC 9110, 5.1).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
