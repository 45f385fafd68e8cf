package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/kafka"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// cluster starts an in-process Kafka cluster, closed when the test ends.
func cluster(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func open(t *testing.T, opts kafka.Options) *kafka.Sink {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := kafka.Open(ctx, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// consume reads every record of topic up to its current end, as a
// read_committed consumer when committed is set, else read_uncommitted.
func consume(t *testing.T, addrs []string, topic string, committed bool, extra ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	var ends kadm.ListedOffsets
	if committed {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(addrs...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
	}, extra...)
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: still waiting for partitions %v", topic, want)
		}
		fs.EachError(func(_ string, p int32, err error) { t.Fatalf("consuming %s/%d: %v", topic, p, err) })
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

func values(recs []*kgo.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
		addrs := c.ListenAddrs()
		return sinktest.Target{
			Sink: open(t, kafka.Options{Brokers: addrs}),
			Read: func(t *testing.T) [][]byte { return values(consume(t, addrs, sinktest.Topic, false)) },
		}
	})
}

func TestConformanceTransactional(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		c := cluster(t, kfake.SeedTopics(3, sinktest.Topic))
		addrs := c.ListenAddrs()
		return sinktest.Target{
			Sink: open(t, kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "pgfeed-test", Compression: "zstd"}),
			Read: func(t *testing.T) [][]byte { return values(consume(t, addrs, sinktest.Topic, true)) },
		}
	})
}

// TestRecordLayout checks topic, key, headers, and that one key's records
// stay in one partition in order while other keys spread.
func TestRecordLayout(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(8, "public.users"))
	s := open(t, kafka.Options{Brokers: c.ListenAddrs(), Compression: "lz4"})
	defer s.Close()
	var batch []sink.Record
	for i := range 200 {
		ev := &event.Event{Op: event.OpUpdate, Schema: "public", Table: "users", LSN: event.LSN(0x1000 + i), CommitLSN: event.LSN(0x2000 + i), Seq: 1 + i%3}
		key := fmt.Sprintf(`{"id":%d}`, i%10)
		batch = append(batch, sink.Record{Event: ev, Topic: "public.users", Key: []byte(key), Value: fmt.Appendf(nil, `{"n":%d,"key":%s}`, i, key)})
	}
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c.ListenAddrs(), "public.users", false)
	if len(recs) != len(batch) {
		t.Fatalf("read %d records, want %d", len(recs), len(batch))
	}
	partitionOf := map[string]int32{}
	lastN := map[string]int{}
	partitions := map[int32]bool{}
	for _, r := range recs {
		var n int
		var key string
		if _, err := fmt.Sscanf(string(r.Value), `{"n":%d,"key":`, &n); err != nil {
			t.Fatalf("value %s: %v", r.Value, err)
		}
		key = string(r.Key)
		if p, ok := partitionOf[key]; ok && p != r.Partition {
			t.Fatalf("key %s in partitions %d and %d", key, p, r.Partition)
		}
		partitionOf[key] = r.Partition
		partitions[r.Partition] = true
		if last, ok := lastN[key]; ok && n < last {
			t.Fatalf("key %s: record %d after %d", key, n, last)
		}
		lastN[key] = n
		want := batch[n]
		if string(r.Key) != string(want.Key) {
			t.Fatalf("record %d: key %s, want %s", n, r.Key, want.Key)
		}
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		wantH := map[string]string{
			"op": "update", "schema": "public", "table": "users",
			"lsn": want.Event.LSN.String(), "commit_lsn": want.Event.CommitLSN.String(), "seq": fmt.Sprint(want.Event.Seq),
		}
		if fmt.Sprint(h) != fmt.Sprint(wantH) {
			t.Fatalf("record %d: headers %v, want %v", n, h, wantH)
		}
	}
	if len(partitions) < 2 {
		t.Fatalf("10 keys all went to partition(s) %v; want them spread", partitions)
	}
}

func TestTopics(t *testing.T) {
	c := cluster(t)
	addrs := c.ListenAddrs()
	rec := sinktest.Records(0, 1)

	// A topic named at Open is checked there.
	ctx := context.Background()
	_, err := kafka.Open(ctx, kafka.Options{Brokers: addrs, Topics: []string{"orders"}})
	if err == nil || !strings.Contains(err.Error(), `topic "orders" does not exist`) || !strings.Contains(err.Error(), "create_topics") {
		t.Fatalf("Open with a missing topic = %v; want an error naming it and create_topics", err)
	}
	// A topic met in a batch is checked before anything is produced.
	s := open(t, kafka.Options{Brokers: addrs})
	err = s.Write(ctx, rec)
	if err == nil || !strings.Contains(err.Error(), `topic "sinktest" does not exist`) {
		t.Fatalf("Write to a missing topic = %v; want an error naming it", err)
	}
	s.Close()

	// With create_topics, topics are created with the partitions asked for.
	s = open(t, kafka.Options{Brokers: addrs, CreateTopics: true, Partitions: 5, Replication: 1, Topics: []string{"orders"}, FallbackTopic: "pgfeed.other"})
	defer s.Close()
	noTopic := sinktest.Records(1, 1)
	noTopic[0].Topic = ""
	if err := s.Write(ctx, append(rec, noTopic...)); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(mustClient(t, addrs))
	td, err := adm.ListTopics(ctx, "orders", "sinktest", "pgfeed.other")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"orders", "sinktest", "pgfeed.other"} {
		if d := td[name]; d.Err != nil || len(d.Partitions) != 5 {
			t.Fatalf("topic %s: err %v, %d partitions; want 5", name, d.Err, len(d.Partitions))
		}
	}
	if got := values(consume(t, addrs, "pgfeed.other", false)); len(got) != 1 || string(got[0]) != string(noTopic[0].Value) {
		t.Fatalf("fallback topic holds %q; want the record without a topic", got)
	}
}

func mustClient(t *testing.T, addrs []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestRecordTooLarge(t *testing.T) {
	for _, txn := range []bool{false, true} {
		t.Run(fmt.Sprintf("transactional=%v", txn), func(t *testing.T) {
			c := cluster(t, kfake.SeedTopics(1, sinktest.Topic), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "50000"}))
			s := open(t, kafka.Options{Brokers: c.ListenAddrs(), Transactional: txn, TransactionalID: "big", Compression: "none"})
			defer s.Close()
			batch := sinktest.Records(90, 10) // record 96 is over 64 KiB
			err := s.Write(context.Background(), batch)
			if err == nil {
				t.Fatal("Write of a record over the broker's limit succeeded")
			}
			for _, want := range []string{"too large", "max.message.bytes", "record 6 of the batch", "commit_lsn " + batch[6].Event.CommitLSN.String()} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
			// The sink goes on with records that fit.
			if err := s.Write(context.Background(), sinktest.Records(0, 3)); err != nil {
				t.Fatalf("Write after a refused record: %v", err)
			}
			if txn {
				got := values(consume(t, c.ListenAddrs(), sinktest.Topic, true))
				if len(got) != 3 {
					t.Fatalf("read_committed consumer sees %d records; want only the 3 of the committed batch", len(got))
				}
			}
		})
	}
}

// A record over the sink's max_message_bytes is rejected, for the
// pipeline's dead letter, and the batch's other records are written.
func TestOversizedRecordRejected(t *testing.T) {
	for _, txn := range []bool{false, true} {
		t.Run(fmt.Sprintf("transactional=%v", txn), func(t *testing.T) {
			c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
			s := open(t, kafka.Options{Brokers: c.ListenAddrs(), Transactional: txn, TransactionalID: "oversized", Compression: "none", MaxMessageBytes: 50_000})
			defer s.Close()
			batch := sinktest.Records(90, 10) // record 96 is over 64 KiB
			err := s.Write(context.Background(), batch)
			var rej *sink.RejectedError
			if !errors.As(err, &rej) || len(rej.Rejected) != 1 || rej.Rejected[0].Index != 6 || !strings.Contains(rej.Rejected[0].Err.Error(), "max_message_bytes") {
				t.Fatalf("want record 6 rejected for its size, got %v", err)
			}
			if got := values(consume(t, c.ListenAddrs(), sinktest.Topic, txn)); len(got) != 9 {
				t.Fatalf("the destination holds %d records; want the 9 that fit", len(got))
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = kafka.Open(ctx, kafka.Options{Brokers: []string{addr}})
	if err == nil || !strings.Contains(err.Error(), "connecting to kafka at "+addr) {
		t.Fatalf("Open of an unreachable broker = %v; want an error naming it", err)
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512} {
		t.Run(mech, func(t *testing.T) {
			c := cluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "pgfeed", "s3cret"), kfake.SeedTopics(1, sinktest.Topic))
			addrs := c.ListenAddrs()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := kafka.Open(ctx, kafka.Options{Brokers: addrs, SASL: kafka.SASL{Mechanism: mech, User: "pgfeed", Password: "wrong"}})
			if err == nil || !strings.Contains(err.Error(), `authenticating to kafka`) || !strings.Contains(err.Error(), `"pgfeed"`) {
				t.Fatalf("Open with a wrong password = %v; want an authentication error naming the user", err)
			}
			s := open(t, kafka.Options{Brokers: addrs, SASL: kafka.SASL{Mechanism: mech, User: "pgfeed", Password: "s3cret"}, Transactional: true, TransactionalID: "sasl"})
			defer s.Close()
			if err := s.Write(ctx, sinktest.Records(0, 5)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	c := cluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}}), kfake.SeedTopics(1, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := kafka.Open(ctx, kafka.Options{Brokers: addrs, TLS: &tls.Config{MinVersion: tls.VersionTLS12}})
	if err == nil {
		t.Fatal("Open trusted a certificate of an unknown authority")
	}
	s := open(t, kafka.Options{Brokers: addrs, TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	defer s.Close()
	if err := s.Write(ctx, sinktest.Records(0, 5)); err != nil {
		t.Fatal(err)
	}
	got := consume(t, addrs, sinktest.Topic, false, kgo.DialTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if len(got) != 5 {
		t.Fatalf("read %d records over TLS, want 5", len(got))
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsed)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestFencing opens a second sink with the same transactional id: the
// first is fenced and fails for good, without a record of its failed batch
// visible to read_committed consumers.
func TestFencing(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(2, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	opts := kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "orders-to-kafka"}
	a := open(t, opts)
	defer a.Close()
	if err := a.WriteAt(ctx, sinktest.Records(0, 3), 0x100); err != nil {
		t.Fatal(err)
	}
	b := open(t, opts)
	defer b.Close()
	if pos, ok, _ := b.Position(ctx); !ok || pos.Commit != 0x100 {
		t.Fatalf("second sink's position = %+v, %v; want commit 0/100 from the first", pos, ok)
	}
	err := a.WriteAt(ctx, sinktest.Records(3, 3), 0x200)
	if err == nil || !strings.Contains(err.Error(), "another producer with transactional id") {
		t.Fatalf("Write of the fenced sink = %v; want a fencing error", err)
	}
	if err2 := a.Write(ctx, sinktest.Records(3, 1)); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("fenced sink's next Write = %v; want the same fencing error", err2)
	}
	if err := b.WriteAt(ctx, sinktest.Records(3, 3), 0x200); err != nil {
		t.Fatalf("Write of the new sink: %v", err)
	}
	got := values(consume(t, addrs, sinktest.Topic, true))
	want := values(recordsOf(sinktest.Records(0, 6)))
	if fmt.Sprintf("%s", got) != fmt.Sprintf("%s", want) {
		t.Fatalf("read_committed consumer sees\n%s\nwant\n%s", got, want)
	}
}

func recordsOf(batch []sink.Record) []*kgo.Record {
	out := make([]*kgo.Record, len(batch))
	for i := range batch {
		out[i] = &kgo.Record{Value: batch[i].Value}
	}
	return out
}

// TestAbortedInvisible fails a transaction after some of its records were
// produced (the broker refuses one record): a read_committed consumer sees
// none of them, and the position does not move.
func TestAbortedInvisible(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, sinktest.Topic), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "50000"}))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	opts := kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "abort", Compression: "none"}
	s := open(t, opts)
	defer s.Close()
	if err := s.WriteAt(ctx, sinktest.Records(0, 50), 0x500); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteAt(ctx, sinktest.Records(50, 100), 0x900); err == nil {
		t.Fatal("Write with a record over the broker's limit succeeded")
	}
	if pos, _, _ := s.Position(ctx); pos.Commit != 0x500 {
		t.Fatalf("position after an aborted write = %+v; want commit 0/500", pos)
	}
	if err := s.WriteAt(ctx, sinktest.Records(50, 10), 0x600); err != nil {
		t.Fatal(err)
	}
	got := consume(t, addrs, sinktest.Topic, true)
	if want := values(recordsOf(sinktest.Records(0, 60))); fmt.Sprintf("%s", values(got)) != fmt.Sprintf("%s", want) {
		t.Fatalf("read_committed consumer sees %d records; want the 60 committed ones only", len(got))
	}
}

// TestPositionAfterReopen checks that the position committed with the
// records is read back by a new sink, with the partial transaction.
func TestPositionAfterReopen(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	opts := kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "reopen"}
	s := open(t, opts)
	if _, ok, err := s.Position(ctx); ok || err != nil {
		t.Fatalf("new sink has a position (%v, %v)", ok, err)
	}
	// Two complete transactions, then the first three events of a third.
	batch := sinktest.Records(0, 2)
	big := sinktest.Records(2, 3)
	for i := range big {
		big[i].Event.CommitLSN, big[i].Event.Seq = 0x2_0000_0000, i+1
	}
	if err := s.WriteAt(ctx, append(batch, big...), batch[1].Event.CommitLSN); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A second sink of another id in the same offsets topic.
	other := open(t, kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "other"})
	if err := other.WriteAt(ctx, sinktest.Records(10, 1), 0x7777); err != nil {
		t.Fatal(err)
	}
	other.Close()

	s = open(t, opts)
	defer s.Close()
	pos, ok, err := s.Position(ctx)
	want := sink.Position{Commit: batch[1].Event.CommitLSN, LastCommit: 0x2_0000_0000, LastSeq: 3}
	if err != nil || !ok || pos != want {
		t.Fatalf("Position after reopen = %+v, %v, %v; want %+v", pos, ok, err, want)
	}
	// The rest of the transaction completes it.
	rest := sinktest.Records(5, 1)
	rest[0].Event.CommitLSN, rest[0].Event.Seq = 0x2_0000_0000, 4
	if err := s.WriteAt(ctx, rest, 0x2_0000_0000); err != nil {
		t.Fatal(err)
	}
	if pos, _, _ := s.Position(ctx); pos != (sink.Position{Commit: 0x2_0000_0000}) {
		t.Fatalf("Position = %+v; want commit 2/0 and no partial transaction", pos)
	}
}

// TestOutage drops every connection to the broker while a Write waits, then
// lets the broker recover: the Write completes, with every record once and
// in order.
func TestOutage(t *testing.T) {
	for _, txn := range []bool{false, true} {
		t.Run(fmt.Sprintf("transactional=%v", txn), func(t *testing.T) {
			c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
			addrs := c.ListenAddrs()
			s := open(t, kafka.Options{Brokers: addrs, Transactional: txn, TransactionalID: "outage"})
			defer s.Close()
			ctx := context.Background()
			if err := s.Write(ctx, sinktest.Records(0, 10)); err != nil {
				t.Fatal(err)
			}
			var down atomic.Bool
			var refused atomic.Int64
			down.Store(true)
			c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
				if !down.Load() {
					c.DropControl()
					return nil, nil, false
				}
				c.KeepControl()
				refused.Add(1)
				return nil, errors.New("broker down"), true
			})
			done := make(chan error, 1)
			go func() { done <- s.Write(ctx, sinktest.Records(10, 300)) }()
			// Recover once the broker refused requests for a while, not
			// after a fixed time.
			for refused.Load() < 5 {
				select {
				case err := <-done:
					t.Fatalf("Write returned %v while the broker was down", err)
				case <-time.After(10 * time.Millisecond):
				}
			}
			down.Store(false)
			// The write may outlast the outage, or fail (a transaction's
			// control requests retry only so long); failed, it is written
			// again, as the pipeline does.
			err := <-done
			for tries := 0; err != nil; tries++ {
				if tries == 10 {
					t.Fatalf("Write after the outage: %v", err)
				}
				t.Logf("Write across the outage failed (%v); again", err)
				err = s.Write(ctx, sinktest.Records(10, 300))
			}
			got := values(consume(t, addrs, sinktest.Topic, txn))
			want := values(recordsOf(sinktest.Records(0, 310)))
			if !txn {
				// A failed write may have left part of its batch: what
				// counts is that nothing is missing and the order holds.
				got = firstOccurrences(got)
			}
			if fmt.Sprintf("%s", got) != fmt.Sprintf("%s", want) {
				t.Fatalf("after the outage the topic holds %d records; want the 310 written, once each, in order", len(got))
			}
		})
	}
}

// TestRedeliveryDropped writes a batch again to a reopened transactional
// sink, as a pipeline does after a crash between Kafka's commit and its
// checkpoint: the sink drops what its committed position covers, a split
// transaction included, so read_committed consumers see each record once.
func TestRedeliveryDropped(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	opts := kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "redeliver"}
	whole := sinktest.Records(0, 4)
	split := sinktest.Records(4, 6)
	for i := range split {
		split[i].Event.CommitLSN, split[i].Event.Seq = 0x2_0000_0000, i+1
	}
	s := open(t, opts)
	if err := s.WriteAt(ctx, append(whole, split[:3]...), whole[3].Event.CommitLSN); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, opts)
	defer s.Close()
	// The redelivery starts at the first transaction again.
	if err := s.WriteAt(ctx, append(slices.Clone(whole), split...), 0x2_0000_0000); err != nil {
		t.Fatal(err)
	}
	got := values(consume(t, addrs, sinktest.Topic, true))
	want := values(recordsOf(append(whole, split...)))
	if fmt.Sprintf("%s", got) != fmt.Sprintf("%s", want) {
		t.Fatalf("read_committed consumer sees %d records; want the %d written, once each", len(got), len(want))
	}
}

// BenchmarkWrite measures records/s through the sink into a kfake cluster
// in the same process (which takes its share of the CPU), in batches of the
// pipeline's default size.
func BenchmarkWrite(b *testing.B) {
	for _, tc := range []struct {
		txn  bool
		size int
	}{{false, 2000}, {true, 2000}, {false, 50}, {true, 50}} {
		txn, size := tc.txn, tc.size
		b.Run(fmt.Sprintf("transactional=%v/batch=%d", txn, size), func(b *testing.B) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, sinktest.Topic))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			s, err := kafka.Open(context.Background(), kafka.Options{Brokers: c.ListenAddrs(), Transactional: txn, TransactionalID: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			batch := sinktest.Records(0, size)
			for i := range batch {
				if len(batch[i].Value) > 4096 { // keep the rows small, like most tables'
					batch[i].Value = batch[i].Value[:300]
				}
				batch[i].Key = fmt.Appendf(nil, `{"id":%d}`, i)
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if err := s.WriteAt(context.Background(), batch, event.LSN(i+1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// firstOccurrences drops values seen before.
func firstOccurrences(vs [][]byte) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	for _, v := range vs {
		if !seen[string(v)] {
			seen[string(v)] = true
			out = append(out, v)
		}
	}
	return out
}

// TestPositionAfterCompaction compacts the offsets topic (only the newest
// position of each key stays) and reads the position back.
func TestPositionAfterCompaction(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	opts := kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "compact"}
	s := open(t, opts)
	for i := range 5 {
		if err := s.WriteAt(ctx, sinktest.Records(i, 1), event.LSN(0x1_0000_0000+0x100*uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	c.Compact()
	s = open(t, opts)
	defer s.Close()
	if pos, ok, err := s.Position(ctx); err != nil || !ok || pos.Commit != 0x1_0000_0400 {
		t.Fatalf("Position after compaction = %+v, %v, %v; want commit 1/400", pos, ok, err)
	}
}

// TestWriteKeepsPositionAlone: Write (for callers without one ordered
// stream, such as a Kafka source reading partitions) neither drops records
// that the position covers nor moves it.
func TestWriteKeepsPositionAlone(t *testing.T) {
	c := cluster(t, kfake.SeedTopics(1, sinktest.Topic))
	addrs := c.ListenAddrs()
	ctx := context.Background()
	s := open(t, kafka.Options{Brokers: addrs, Transactional: true, TransactionalID: "plain-write"})
	defer s.Close()
	first := sinktest.Records(0, 3)
	if err := s.WriteAt(ctx, first, first[2].Event.CommitLSN); err != nil {
		t.Fatal(err)
	}
	before, _, _ := s.Position(ctx)
	again := sinktest.Records(0, 3) // identities the position covers
	if err := s.Write(ctx, again); err != nil {
		t.Fatal(err)
	}
	if after, _, _ := s.Position(ctx); after != before {
		t.Fatalf("Write moved the position from %+v to %+v", before, after)
	}
	if got := consume(t, addrs, sinktest.Topic, true); len(got) != 6 {
		t.Fatalf("read_committed consumer sees %d records; want 6 (Write drops nothing)", len(got))
	}
}
