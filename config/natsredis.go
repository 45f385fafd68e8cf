package config

import (
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pgfeed/pgfeed/route"
)

// Defaults of the nats and redis sinks.
const (
	DefaultNATSSubject         = "pgfeed.{schema}.{table}"
	DefaultNATSDuplicateWindow = 2 * time.Minute
	DefaultNATSAckTimeout      = 30 * time.Second
	DefaultRedisTimeout        = 10 * time.Second
)

func (r *reader) natsSink(t, rt *table, s *Sink) *NATSSink {
	n := &NATSSink{URL: t.mustStr("url"), JetStream: true}
	for u := range strings.SplitSeq(n.URL, ",") {
		if n.URL != "" && !validURL(u, "nats", "tls", "ws", "wss") {
			r.add(t.path("url"), "invalid URL %q (want nats://host:port, several separated by commas)", u)
		}
	}
	if !r.destination(t, rt, s, "subject") && !rt.has("default") {
		s.Route.Default = DefaultNATSSubject
	}
	if t.has("jetstream") {
		n.JetStream = t.boolean("jetstream")
	} else {
		t.get("jetstream")
	}

	n.User, n.Password = t.str("user"), t.str("password")
	n.Token, n.Creds, n.NKey = t.str("token"), t.str("creds"), t.str("nkey")
	if n.Password != "" && n.User == "" {
		r.add(t.path("password"), "set without user")
	}
	var creds []string
	for _, k := range []string{"user", "token", "creds", "nkey"} {
		if t.has(k) {
			creds = append(creds, k)
		}
	}
	if len(creds) > 1 {
		r.add(t.path(creds[1]), "conflicts with %s: use one way to authenticate", t.path(creds[0]))
	}
	for _, f := range []struct{ key, path string }{{"creds", n.Creds}, {"nkey", n.NKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			r.addErr(t.path(f.key), err)
		}
	}
	n.TLS = r.tls(t)
	n.AckTimeout = t.duration("ack_timeout")
	if !t.has("ack_timeout") {
		n.AckTimeout = DefaultNATSAckTimeout
	} else if n.AckTimeout == 0 && !r.failed(t.path("ack_timeout")) {
		r.add(t.path("ack_timeout"), "must be positive")
	}

	n.Stream = t.str("stream")
	if t.has("stream") && !validStreamName(n.Stream) {
		r.add(t.path("stream"), "invalid stream name %q (no spaces, \".\", \"*\", \">\", \"/\" or \"\\\\\")", n.Stream)
	}
	n.CreateStream = t.boolean("create_stream")
	n.StreamSubjects = t.each("stream_subjects", func(field, subj string) {
		if !validSubjectFilter(subj) {
			r.add(field, "invalid subject filter %q (tokens separated by \".\", \"*\" for one token, \">\" only last)", subj)
		}
	})
	n.DuplicateWindow = t.duration("duplicate_window")
	if !t.has("duplicate_window") {
		n.DuplicateWindow = DefaultNATSDuplicateWindow
	} else if n.DuplicateWindow == 0 && !r.failed(t.path("duplicate_window")) {
		r.add(t.path("duplicate_window"), "must be positive: without a window the stream drops no redelivery")
	}
	n.Storage = t.strDefault("storage", "file")
	if n.Storage != "" && n.Storage != "file" && n.Storage != "memory" {
		r.add(t.path("storage"), "unknown storage %q (have: file, memory)", n.Storage)
	}
	n.Replicas = int(t.integer("replicas"))
	if t.has("replicas") && (n.Replicas < 1 || n.Replicas > 5) {
		r.add(t.path("replicas"), "must be 1 to 5")
	}
	n.MaxAge = t.duration("max_age")
	n.MaxBytes = t.size("max_bytes")

	streamKeys := []string{"stream", "create_stream", "stream_subjects", "duplicate_window", "storage", "replicas", "max_age", "max_bytes"}
	if !n.JetStream {
		for _, k := range streamKeys {
			if t.has(k) {
				r.add(t.path(k), "applies to JetStream only, and jetstream = false")
			}
		}
		return n
	}
	if n.CreateStream && n.Stream == "" && !t.has("stream") {
		r.add(t.path("stream"), "missing: create_stream needs the stream's name")
	}
	if !n.CreateStream {
		for _, k := range streamKeys[3:] {
			if t.has(k) {
				r.add(t.path(k), "applies to a stream pgfeed creates: set create_stream = true, or leave it out")
			}
		}
	}
	if !t.has("stream_subjects") {
		n.StreamSubjects = r.deriveSubjects(t, s)
	}
	return n
}

// deriveSubjects returns subject filters that cover every subject the
// sink's route can produce: each template up to its first token with a
// placeholder, followed by ">".
func (r *reader) deriveSubjects(t *table, s *Sink) []string {
	// The reader sets the defaults of the sink's route after its type's
	// settings: apply them here.
	other := s.Route.Other
	if other == "" {
		other = route.DefaultOtherTemplate
	}
	templates := []string{s.Route.Default, other}
	for _, name := range slices.Sorted(maps.Keys(s.Route.Tables)) {
		templates = append(templates, s.Route.Tables[name])
	}
	var out []string
	for _, tmpl := range templates {
		if tmpl == "" {
			continue
		}
		var lit []string
		whole := true
		for tok := range strings.SplitSeq(tmpl, ".") {
			if strings.ContainsAny(tok, "{}") {
				whole = false
				break
			}
			lit = append(lit, tok)
		}
		subj := strings.Join(lit, ".")
		if !whole {
			if len(lit) == 0 {
				r.add(t.path("stream_subjects"), "missing, and the subject template %q starts with a placeholder, so pgfeed cannot tell which subjects its stream needs: set stream_subjects, or start the template with a fixed token (e.g. \"pgfeed.\")", tmpl)
				return nil
			}
			subj += ".>"
		}
		out = append(out, subj)
	}
	// Leave out filters that another one covers.
	var kept []string
	for i, a := range out {
		covered := false
		for j, b := range out {
			if i != j && covers(b, a) && (a != b || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, a)
		}
	}
	return kept
}

// covers reports whether filter f matches everything filter g matches, for
// filters of literal tokens, optionally ended by ">".
func covers(f, g string) bool {
	if f == g {
		return true
	}
	prefix, ok := strings.CutSuffix(f, ">")
	return ok && strings.HasPrefix(g, prefix) && len(g) > len(prefix)
}

func validStreamName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsAny(s, " \t\r\n.*>/\\")
}

func validSubjectFilter(s string) bool {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return false
	}
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == "" || (tok == ">" && i != len(toks)-1) {
			return false
		}
	}
	return true
}

func (r *reader) redisSink(t, rt *table, s *Sink) *RedisSink {
	rs := &RedisSink{
		Addr: t.mustStr("addr"), Username: t.str("username"), Password: t.str("password"),
		DB: int(t.integer("db")), Mode: RedisStream, Idempotent: true,
	}
	if rs.Addr != "" {
		r.checkAddr(t.path("addr"), rs.Addr, true)
	}
	if rs.DB < 0 {
		r.add(t.path("db"), "must not be negative")
	}
	rs.TLS = r.tls(t)
	r.destination(t, rt, s, "stream")
	if t.has("channel") && t.has("stream") {
		t.get("channel")
		r.add(t.path("channel"), "conflicts with stream: a redis sink writes to streams or to channels, not both")
	} else if r.destination(t, rt, s, "channel") {
		rs.Mode = RedisChannel
	}
	rs.MaxLen = t.integer("max_len")
	if rs.MaxLen < 0 {
		r.add(t.path("max_len"), "must not be negative")
	}
	if t.has("idempotent") {
		rs.Idempotent = t.boolean("idempotent")
	} else {
		t.get("idempotent")
	}
	if rs.Mode == RedisChannel {
		rs.Idempotent = false
		for _, k := range []string{"max_len", "idempotent"} {
			if t.has(k) {
				r.add(t.path(k), "applies to streams only: channels keep nothing")
			}
		}
	}
	rs.Timeout = t.duration("timeout")
	if !t.has("timeout") {
		rs.Timeout = DefaultRedisTimeout
	} else if rs.Timeout == 0 && !r.failed(t.path("timeout")) {
		r.add(t.path("timeout"), "must be positive")
	}
	return rs
}
