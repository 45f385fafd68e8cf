package nats

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/brokertest"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

const testStream = "SINKTEST"

// client connects a second, independent client to read what the sink wrote.
func client(t *testing.T, url string, opts ...natsgo.Option) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := natsgo.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// readStream returns every message of the stream, in stream order.
func readStream(t *testing.T, js jetstream.JetStream, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("reading stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading message %d of %s: %v", seq, name, err)
		}
		out = append(out, m)
	}
	return out
}

func values(msgs []*jetstream.RawStreamMsg) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.Data
	}
	return out
}

// open opens a JetStream sink that creates the test stream.
func open(t *testing.T, url string, mod ...func(*Options)) *Sink {
	t.Helper()
	opts := Options{URL: url, Stream: testStream, CreateStream: true, Subjects: []string{sinktest.Topic, "pgfeed.>"}}
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
	srv := brokertest.StartNATS(t)
	_, js := client(t, srv.URL())
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		// A fresh destination: the stream (and its duplicate window) anew.
		if err := js.DeleteStream(context.Background(), testStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatal(err)
		}
		return sinktest.Target{
			Sink: open(t, srv.URL()),
			Read: func(t *testing.T) [][]byte { return values(readStream(t, js, testStream)) },
		}
	})
}

// TestConformanceCore runs the suite on core NATS publishing, read by a
// subscriber that was there before the sink wrote.
func TestConformanceCore(t *testing.T) {
	srv := brokertest.StartNATS(t)
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		nc, _ := client(t, srv.URL())
		sub, err := nc.SubscribeSync(sinktest.Topic)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		s, err := Open(context.Background(), Options{URL: srv.URL(), Core: true})
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		return sinktest.Target{
			Sink: s,
			Read: func(t *testing.T) [][]byte {
				// The server forwards a publisher's messages before it
				// answers this subscriber's ping, so after Flush they
				// are all queued on the subscription.
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				for {
					m, err := sub.NextMsg(0)
					if err != nil {
						break
					}
					got = append(got, m.Data)
				}
				return got
			},
		}
	})
}

// TestDuplicatesDropped writes the same batch twice (a redelivery after a
// crash): the stream keeps one copy, since every message carries the
// event's identity as Nats-Msg-Id.
func TestDuplicatesDropped(t *testing.T) {
	srv := brokertest.StartNATS(t)
	_, js := client(t, srv.URL())
	s := open(t, srv.URL())
	defer s.Close()
	batch := sinktest.Records(0, 50)
	for i := range batch {
		batch[i].Source = "main"
	}
	for range 2 {
		if err := s.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	// Part of it again, then the rest and more: a redelivery that overlaps.
	if err := s.Write(context.Background(), append(batch[25:], withSource(sinktest.Records(50, 10), "main")...)); err != nil {
		t.Fatal(err)
	}
	// The same positions from another source are other events.
	if err := s.Write(context.Background(), withSource(sinktest.Records(0, 5), "other")); err != nil {
		t.Fatal(err)
	}
	msgs := readStream(t, js, testStream)
	want := append(withSource(sinktest.Records(0, 60), "main"), withSource(sinktest.Records(0, 5), "other")...)
	if len(msgs) != len(want) {
		t.Fatalf("stream holds %d messages; want %d (one per event)", len(msgs), len(want))
	}
	for i, m := range msgs {
		if id := m.Header.Get(jetstream.MsgIDHeader); id != sink.Identity(want[i]) || !bytes.Equal(m.Data, want[i].Value) {
			t.Fatalf("message %d: id %q; want %q", i, id, sink.Identity(want[i]))
		}
	}
}

func withSource(recs []sink.Record, source string) []sink.Record {
	for i := range recs {
		recs[i].Source = source
	}
	return recs
}

// TestHeaders checks what a consumer gets beside the value.
func TestHeaders(t *testing.T) {
	srv := brokertest.StartNATS(t)
	_, js := client(t, srv.URL())
	s := open(t, srv.URL())
	defer s.Close()
	ev := &event.Event{Op: event.OpUpdate, Schema: "public", Table: "users", LSN: 0x16B3748, CommitLSN: 0x16B37A0, Seq: 2}
	rec := sink.Record{Event: ev, Source: "main", Topic: "pgfeed.public.users.update", Key: []byte(`{"id":2}`), Value: []byte(`{"op":"update"}`)}
	if err := s.Write(context.Background(), []sink.Record{rec}); err != nil {
		t.Fatal(err)
	}
	msgs := readStream(t, js, testStream)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	want := map[string]string{
		jetstream.MsgIDHeader: "main:0/16B37A0:2",
		HeaderOp:              "update",
		HeaderSchema:          "public",
		HeaderTable:           "users",
		HeaderLSN:             "0/16B3748",
		HeaderCommit:          "0/16B37A0",
		HeaderKey:             `{"id":2}`,
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q; want %q", k, got, v)
		}
	}
	if m.Subject != rec.Topic {
		t.Errorf("subject %q; want %q", m.Subject, rec.Topic)
	}
}

// TestOutage stops the server between batches: Write fails while it is
// down, succeeds once it is back, and the stream ends with every record
// once, in order.
func TestOutage(t *testing.T) {
	srv := brokertest.StartNATS(t)
	s := open(t, srv.URL(), func(o *Options) { o.AckTimeout = 2 * time.Second })
	defer s.Close()
	ctx := context.Background()
	next := 0
	write := func(n int) []sink.Record {
		b := sinktest.Records(next, n)
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
			t.Fatalf("Write %d with the server down returned nil", i)
		} else if i == 0 {
			t.Logf("Write with the server down: %v", err)
		}
	}
	srv.Restart()
	// The pipeline retries a failed batch until it succeeds; so do we, a
	// bounded number of times (the client reconnects in the background).
	var err error
	for range 200 {
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

	_, js := client(t, srv.URL())
	got := values(readStream(t, js, testStream))
	if len(got) != len(want) {
		t.Fatalf("stream holds %d records; want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i].Value) {
			t.Fatalf("record %d out of place: %.60s; want %.60s", i, got[i], want[i].Value)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	srv := brokertest.StartNATS(t)
	auth := brokertest.StartNATS(t, "--user", "pgfeed", "--pass", "secret")
	dead := fmt.Sprintf("nats://127.0.0.1:%d", brokertest.FreePort(t))
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"unreachable", Options{URL: dead, ConnectTimeout: time.Second}, "no server reachable"},
		{"wrong password", Options{URL: auth.URL(), User: "pgfeed", Password: "wrong"}, "authentication failed"},
		{"no credentials", Options{URL: auth.URL()}, "authentication failed"},
		{"stream missing", Options{URL: srv.URL(), Stream: "NOPE", Subjects: []string{"nope.>"}}, `stream "NOPE" does not exist`},
		{"no stream for subjects", Options{URL: srv.URL(), Subjects: []string{"nope.>"}}, `no JetStream stream captures subject "nope.>"`},
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
	t.Run("credentials", func(t *testing.T) {
		s := open(t, auth.URL(), func(o *Options) { o.User, o.Password = "pgfeed", "secret" })
		defer s.Close()
		if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stream of other subjects", func(t *testing.T) {
		_, js := client(t, srv.URL())
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
			t.Fatal(err)
		}
		for o, want := range map[*Options]string{
			{URL: srv.URL(), Stream: "OTHER", Subjects: []string{"mine.>"}}:                  `JetStream stream "OTHER" does not capture subject "mine.>"`,
			{URL: srv.URL(), Stream: "OTHER", Subjects: []string{"other.>", sinktest.Topic}}: `subject "sinktest" goes to JetStream stream "SINKTEST", not to stream "OTHER"`,
		} {
			open(t, srv.URL()).Close() // SINKTEST captures sinktest
			s, err := Open(context.Background(), *o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open: %v; want %q", err, want)
			}
		}
	})
	t.Run("existing stream", func(t *testing.T) {
		s := open(t, srv.URL())
		s.Close()
		// Now it exists: found by name, and by subject without a name.
		for _, o := range []Options{{URL: srv.URL(), Stream: testStream}, {URL: srv.URL(), Subjects: []string{"pgfeed.a.b"}}} {
			s, err := Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
		}
	})
}

func TestToken(t *testing.T) {
	srv := brokertest.StartNATS(t, "--auth", "s3cret")
	s := open(t, srv.URL(), func(o *Options) { o.Token = "s3cret" })
	defer s.Close()
	if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{URL: srv.URL(), Token: "wrong", Core: true}); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("Open with a wrong token: %v", err)
	}
}

// TestBadSubject: a subject NATS cannot deliver fails the Write with its
// name, before anything of the batch is published.
func TestBadSubject(t *testing.T) {
	srv := brokertest.StartNATS(t)
	s := open(t, srv.URL())
	defer s.Close()
	for _, subj := range []string{"pgfeed.public.my table.insert", "pgfeed..x", "pgfeed.*", "pgfeed.>", ""} {
		batch := sinktest.Records(0, 2)
		batch[1].Topic = subj
		err := s.Write(context.Background(), batch)
		if err == nil || !strings.Contains(err.Error(), "subject") {
			t.Errorf("Write to %q: %v; want an error naming the subject", subj, err)
		}
	}
	for _, subj := range []string{"a", "pgfeed.public.users.insert", "a*b.c>d", "ü.x"} {
		if err := checkSubject(subj); err != nil {
			t.Errorf("checkSubject(%q) = %v", subj, err)
		}
	}
}

// TestNoStreamForSubject: a record whose subject no stream captures fails
// the Write (retried by the pipeline, never dropped).
func TestNoStreamForSubject(t *testing.T) {
	srv := brokertest.StartNATS(t)
	s := open(t, srv.URL())
	defer s.Close()
	batch := sinktest.Records(0, 2)
	batch[1].Topic = "elsewhere"
	if err := s.Write(context.Background(), batch); err == nil || !strings.Contains(err.Error(), `"elsewhere"`) {
		t.Fatalf("Write: %v; want an error naming the subject", err)
	}
}

func TestRedact(t *testing.T) {
	if got := redact("nats://u:p@h:4222,nats://h2:4222"); got != "nats://***@h:4222,nats://h2:4222" {
		t.Fatal(got)
	}
}

// TestTLS publishes through TLS to a server that requires it, trusting its
// CA; without TLS, or without the CA, Open fails.
func TestTLS(t *testing.T) {
	files := brokertest.NewTLSFiles(t)
	srv := brokertest.StartNATSTLS(t, files)
	for _, o := range []Options{
		{URL: srv.URL(), ConnectTimeout: 2 * time.Second},
		{URL: srv.URL(), ConnectTimeout: 2 * time.Second, TLS: &tls.Config{MinVersion: tls.VersionTLS12}},
	} {
		if s, err := Open(context.Background(), o); err == nil {
			s.Close()
			t.Fatalf("Open with TLS %v succeeded", o.TLS != nil)
		}
	}
	s := open(t, srv.URL(), func(o *Options) { o.TLS = files.ClientConfig(t) })
	defer s.Close()
	if err := s.Write(context.Background(), sinktest.Records(0, 5)); err != nil {
		t.Fatal(err)
	}
	_, js := client(t, srv.URL(), natsgo.Secure(files.ClientConfig(t)))
	if n := len(readStream(t, js, testStream)); n != 5 {
		t.Fatalf("stream holds %d messages", n)
	}
}

// BenchmarkWrite publishes batches of 1000 small records to JetStream
// (file storage) and to core NATS.
func BenchmarkWrite(b *testing.B) {
	srv := brokertest.StartNATS(b)
	b.Run("JetStream", func(b *testing.B) {
		s, err := Open(context.Background(), Options{URL: srv.URL(), Stream: testStream, CreateStream: true, Subjects: []string{sinktest.Topic}})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		sinktest.Bench(b, s, 1000)
	})
	b.Run("Core", func(b *testing.B) {
		s, err := Open(context.Background(), Options{URL: srv.URL(), Core: true})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		sinktest.Bench(b, s, 1000)
	})
}
