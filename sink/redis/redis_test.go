package redis

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// reader connects an independent client to read what the sink wrote.
func reader(t *testing.T, addr string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func readStream(t *testing.T, c *goredis.Client, stream string) []goredis.XMessage {
	t.Helper()
	msgs, err := c.XRange(context.Background(), stream, "-", "+").Result()
	if err != nil {
		t.Fatalf("XRANGE %s: %v", stream, err)
	}
	return msgs
}

func values(msgs []goredis.XMessage) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = []byte(m.Values[FieldValue].(string))
	}
	return out
}

var streamN atomic.Int64

// retopic moves records to another stream, so that each subtest starts on
// an empty one.
func retopic(batch []sink.Record, topic string) []sink.Record {
	for i := range batch {
		batch[i].Topic = topic
	}
	return batch
}

// topicSink writes every record to one stream of its own, whatever Topic
// the suite sets.
type topicSink struct {
	*Sink
	topic string
}

func (t topicSink) Write(ctx context.Context, batch []sink.Record) error {
	return t.Sink.Write(ctx, retopic(append([]sink.Record(nil), batch...), t.topic))
}

func open(t *testing.T, addr string, mod ...func(*Options)) *Sink {
	t.Helper()
	opts := Options{Addr: addr}
	for _, m := range mod {
		m(&opts)
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"Idempotent", func(*Options) {}},
		{"Plain", func(o *Options) { o.NotIdempotent = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Target {
				stream := fmt.Sprintf("sinktest:%d", streamN.Add(1))
				return sinktest.Target{
					Sink: topicSink{open(t, srv.Addr, tc.mod), stream},
					Read: func(t *testing.T) [][]byte { return values(readStream(t, rc, stream)) },
				}
			})
		})
	}
}

// TestConformanceChannel runs the suite on pub/sub, read by a subscriber
// that was there before the sink published.
func TestConformanceChannel(t *testing.T) {
	srv := brokertest.StartRedis(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		channel := fmt.Sprintf("sinktest:%d", streamN.Add(1))
		rc := reader(t, srv.Addr)
		ps := rc.Subscribe(context.Background(), channel)
		t.Cleanup(func() { ps.Close() })
		if _, err := ps.Receive(context.Background()); err != nil { // the subscription's confirmation
			t.Fatal(err)
		}
		s := open(t, srv.Addr, func(o *Options) { o.Mode = Channel })
		var got [][]byte
		return sinktest.Target{
			Sink: topicSink{s, channel},
			Read: func(t *testing.T) [][]byte {
				// Redis sends a published message to its subscribers before
				// it answers PUBLISH: once Write returned, each is on its
				// way. Receive what was published, and then a PING's
				// answer, which comes after them on this connection.
				if err := ps.Ping(context.Background()); err != nil {
					t.Fatal(err)
				}
				for {
					m, err := ps.Receive(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if msg, ok := m.(*goredis.Message); ok {
						got = append(got, []byte(msg.Payload))
						continue
					}
					if _, ok := m.(*goredis.Pong); ok {
						return got
					}
				}
			},
		}
	})
}

// TestDuplicatesSkipped writes the same batch twice, then an overlapping
// redelivery: the stream holds each event once, and a second source's
// events at the same positions are kept.
func TestDuplicatesSkipped(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	s := open(t, srv.Addr)
	defer s.Close()
	ctx := context.Background()
	main := func(first, n int) []sink.Record {
		return withSource(retopic(sinktest.Records(first, n), "dedup"), "main")
	}
	for range 2 {
		if err := s.Write(ctx, main(0, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Write(ctx, main(25, 35)); err != nil {
		t.Fatal(err)
	}
	other := withSource(retopic(sinktest.Records(0, 5), "dedup"), "other")
	if err := s.Write(ctx, other); err != nil {
		t.Fatal(err)
	}
	// A new sink (pgfeed restarted) sees the marks too.
	s2 := open(t, srv.Addr)
	defer s2.Close()
	if err := s2.Write(ctx, main(40, 30)); err != nil {
		t.Fatal(err)
	}
	want := append(main(0, 60), other...)
	want = append(want, main(60, 10)...)
	got := readStream(t, rc, "dedup")
	if len(got) != len(want) {
		t.Fatalf("stream holds %d entries; want %d (one per event)", len(got), len(want))
	}
	for i, m := range got {
		if m.Values[FieldID] != sink.Identity(want[i]) || m.Values[FieldValue] != string(want[i].Value) || m.Values[FieldKey] != string(want[i].Key) {
			t.Fatalf("entry %d: %v; want id %s", i, m.Values[FieldID], sink.Identity(want[i]))
		}
	}
}

func withSource(recs []sink.Record, source string) []sink.Record {
	for i := range recs {
		recs[i].Source = source
	}
	return recs
}

// TestSnapshotLanes: rows of an initial snapshot share one position and
// number seq per table, tables interleaved; none is taken for a
// redelivery of another table's row, and a redelivery is still skipped.
func TestSnapshotLanes(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	s := open(t, srv.Addr)
	defer s.Close()
	read := func(table string, seq int) sink.Record {
		e := &event.Event{Op: event.OpRead, Schema: "public", Table: table, LSN: 0x5000, CommitLSN: 0x5000, Seq: seq}
		return sink.Record{Event: e, Source: "main", Topic: "snap", Value: fmt.Appendf(nil, "%s/%d", table, seq)}
	}
	schema := func(table string, lsn event.LSN) sink.Record {
		e := &event.Event{Op: event.OpSchema, Schema: "public", Table: table, LSN: lsn, CommitLSN: 0x6000}
		return sink.Record{Event: e, Source: "main", Topic: "snap", Value: fmt.Appendf(nil, "schema %s", table)}
	}
	change := sink.Record{Event: &event.Event{Op: event.OpInsert, Schema: "public", Table: "a", LSN: 0x5f00, CommitLSN: 0x6000, Seq: 1}, Source: "main", Topic: "snap", Value: []byte("insert a")}
	batches := [][]sink.Record{
		{read("a", 1), read("b", 1), read("a", 2), read("b", 2), read("b", 3)},
		{read("a", 3), read("b", 4)},
		{schema("a", 0x5f00), schema("b", 0x5f80), change},
	}
	var want []string
	for _, b := range batches {
		for _, r := range b {
			want = append(want, string(r.Value))
		}
	}
	for _, b := range batches {
		if err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	// Redelivered after a restart, all of it.
	for _, b := range batches {
		if err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	got := values(readStream(t, rc, "snap"))
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("stream holds %q;\nwant %q", got, want)
	}
}

// TestDeletedStreamVoidsMarks: once a stream is deleted, its events are
// written again (a replay to rebuild it), not skipped for marks left.
func TestDeletedStreamVoidsMarks(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	s := open(t, srv.Addr)
	defer s.Close()
	batch := retopic(sinktest.Records(0, 10), "gone")
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if err := rc.Del(context.Background(), "gone").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if got := len(readStream(t, rc, "gone")); got != 10 {
		t.Fatalf("stream holds %d entries after the replay; want 10", got)
	}
}

// TestMaxLen trims streams to about MaxLen entries.
func TestMaxLen(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	for _, idempotent := range []bool{true, false} {
		stream := fmt.Sprintf("trim:%v", idempotent)
		s := open(t, srv.Addr, func(o *Options) { o.MaxLen, o.NotIdempotent = 100, !idempotent })
		for i := range 10 {
			if err := s.Write(context.Background(), retopic(sinktest.Records(i*100, 100), stream)); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		n := rc.XLen(context.Background(), stream).Val()
		// "~" trims whole nodes of the stream (100 entries by default).
		if n < 100 || n >= 300 {
			t.Errorf("idempotent=%v: stream holds %d entries after 1000 with MaxLen 100", idempotent, n)
		}
		msgs := readStream(t, rc, stream)
		if last := msgs[len(msgs)-1].Values[FieldValue].(string); last != string(sinktest.Records(999, 1)[0].Value) {
			t.Errorf("idempotent=%v: newest entry is %.40s", idempotent, last)
		}
	}
}

// TestOutage stops Redis between batches: Write fails while it is down,
// succeeds once it is back, and the stream holds every record once, in
// order (appendonly keeps what Redis acknowledged across the restart).
func TestOutage(t *testing.T) {
	srv := brokertest.StartRedis(t, "--appendonly", "yes", "--appendfsync", "always")
	s := open(t, srv.Addr, func(o *Options) { o.Timeout = 2 * time.Second })
	defer s.Close()
	ctx := context.Background()
	next := 0
	write := func(n int) []sink.Record {
		b := retopic(sinktest.Records(next, n), "outage")
		next += n
		return b
	}
	var want []sink.Record
	for range 3 {
		b := write(20)
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	srv.Stop()
	down := write(20)
	for i := range 3 {
		if err := s.Write(ctx, down); err == nil {
			t.Fatalf("Write %d with Redis down returned nil", i)
		} else if i == 0 {
			t.Logf("Write with Redis down: %v", err)
		}
	}
	srv.Restart()
	var err error
	for range 100 {
		if err = s.Write(ctx, down); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Write after the restart: %v", err)
	}
	want = append(want, down...)
	b := write(20)
	if err := s.Write(ctx, b); err != nil {
		t.Fatal(err)
	}
	want = append(want, b...)
	got := values(readStream(t, reader(t, srv.Addr), "outage"))
	if len(got) != len(want) {
		t.Fatalf("stream holds %d records; want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i].Value) {
			t.Fatalf("record %d out of place", i)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	auth := brokertest.StartRedis(t, "--requirepass", "secret")
	dead := fmt.Sprintf("127.0.0.1:%d", brokertest.FreePort(t))
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"unreachable", Options{Addr: dead, Timeout: time.Second}, "no server reachable"},
		{"wrong password", Options{Addr: auth.Addr, Password: "wrong"}, "authentication failed"},
		{"no password", Options{Addr: auth.Addr}, "authentication failed"},
		{"no such db", Options{Addr: auth.Addr, Password: "secret", DB: 99}, "db 99 does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(context.Background(), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Open: %v; want one line with %q", err, tc.want)
			}
		})
	}
	t.Run("ACL user", func(t *testing.T) {
		acl := brokertest.StartRedis(t, "--user", "pgfeed", "on", ">pw", "~*", "&*", "+@all")
		if _, err := Open(context.Background(), Options{Addr: acl.Addr, Username: "pgfeed", Password: "wrong"}); err == nil || !strings.Contains(err.Error(), "authentication failed") {
			t.Fatalf("Open with a wrong password: %v", err)
		}
		s := open(t, acl.Addr, func(o *Options) { o.Username, o.Password = "pgfeed", "pw" })
		defer s.Close()
		if err := s.Write(context.Background(), retopic(sinktest.Records(0, 3), "acl")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("password and db", func(t *testing.T) {
		s := open(t, auth.Addr, func(o *Options) { o.Password, o.DB = "secret", 3 })
		defer s.Close()
		if err := s.Write(context.Background(), retopic(sinktest.Records(0, 3), "db3")); err != nil {
			t.Fatal(err)
		}
		c := goredis.NewClient(&goredis.Options{Addr: auth.Addr, Password: "secret", DB: 3, DisableIdentity: true})
		defer c.Close()
		if n := c.XLen(context.Background(), "db3").Val(); n != 3 {
			t.Fatalf("db 3 holds %d entries", n)
		}
	})
}

// TestWrongType: a key that is not a stream fails the Write with its name.
func TestWrongType(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	if err := rc.Set(context.Background(), "taken", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []bool{false, true} {
		s := open(t, srv.Addr, func(o *Options) { o.NotIdempotent = plain })
		err := s.Write(context.Background(), retopic(sinktest.Records(0, 2), "taken"))
		s.Close()
		if err == nil || !strings.Contains(err.Error(), `"taken"`) || !strings.Contains(err.Error(), "WRONGTYPE") {
			t.Fatalf("Write to a string key: %v", err)
		}
	}
}

// TestScriptReloaded: after a restart Redis has forgotten the script; the
// sink loads it again within the same round trip.
func TestScriptReloaded(t *testing.T) {
	srv := brokertest.StartRedis(t)
	rc := reader(t, srv.Addr)
	s := open(t, srv.Addr)
	defer s.Close()
	if err := s.Write(context.Background(), retopic(sinktest.Records(0, 2), "flush")); err != nil {
		t.Fatal(err)
	}
	if err := rc.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(context.Background(), retopic(sinktest.Records(2, 2), "flush")); err != nil {
		t.Fatal(err)
	}
	if n := rc.XLen(context.Background(), "flush").Val(); n != 4 {
		t.Fatalf("stream holds %d entries", n)
	}
}

// TestTLS writes through a TLS connection to a server that accepts nothing
// else, trusting its CA.
func TestTLS(t *testing.T) {
	files := brokertest.NewTLSFiles(t)
	srv := brokertest.StartRedisTLS(t, files)
	if s, err := Open(context.Background(), Options{Addr: srv.Addr, Timeout: 2 * time.Second}); err == nil {
		s.Close()
		t.Fatal("Open without TLS succeeded on a TLS-only server")
	}
	if s, err := Open(context.Background(), Options{Addr: srv.Addr, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}); err == nil {
		s.Close()
		t.Fatal("Open succeeded without trusting the server's CA")
	}
	s := open(t, srv.Addr, func(o *Options) { o.TLS = files.ClientConfig(t) })
	defer s.Close()
	if err := s.Write(context.Background(), retopic(sinktest.Records(0, 5), "tls")); err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr, TLSConfig: files.ClientConfig(t), DisableIdentity: true})
	defer c.Close()
	if n := c.XLen(context.Background(), "tls").Val(); n != 5 {
		t.Fatalf("stream holds %d entries", n)
	}
}

// BenchmarkWrite appends batches of 1000 small records to a stream,
// idempotently and with plain XADDs, and publishes them to a channel.
func BenchmarkWrite(b *testing.B) {
	srv := brokertest.StartRedis(b)
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"Idempotent", Options{Addr: srv.Addr}},
		{"Plain", Options{Addr: srv.Addr, NotIdempotent: true}},
		{"Channel", Options{Addr: srv.Addr, Mode: Channel}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := Open(context.Background(), tc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			sinktest.Bench(b, s, 1000)
		})
	}
}
