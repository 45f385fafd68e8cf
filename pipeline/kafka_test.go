package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/pgtest"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/file"
	"github.com/pgfeed/pgfeed/sink/kafka"
	"github.com/pgfeed/pgfeed/source"
	kafkasource "github.com/pgfeed/pgfeed/source/kafka"
)

// crashingSink is a transactional Kafka sink that "crashes" the pipeline
// right after Kafka committed the first batch that ends inside a
// transaction: the checkpoint store never hears of that batch, as after a
// kill -9 between Kafka's commit and the checkpoint.
type crashingSink struct {
	*kafka.Sink
	crash   func()
	crashed atomic.Bool
}

func (c *crashingSink) WriteAt(ctx context.Context, batch []sink.Record, commit event.LSN) error {
	if c.crashed.Load() {
		return errors.New("crashed")
	}
	if err := c.Sink.WriteAt(ctx, batch, commit); err != nil {
		return err
	}
	if last := batch[len(batch)-1].Event; last.CommitLSN > commit && last.Seq > 1 {
		c.crashed.Store(true)
		c.crash()
		return errors.New("crashed after the commit")
	}
	return nil
}

// After a crash between Kafka's commit and the checkpoint, in the middle
// of a transaction split over batches, the pipeline resumes from the
// position committed in Kafka: a read_committed consumer sees every change
// once.
func TestResumeFromKafkaPosition(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close) // after the pipelines' cleanups, which stop them
	brokers := kc.ListenAddrs()
	dsn := pgtest.CreateDB(t, pg, "kafkaresume")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)")
	store := openStore(t)
	opts := kafka.Options{Brokers: brokers, CreateTopics: true, Partitions: 3, Transactional: true, TransactionalID: "resume"}
	openKafka := func() *kafka.Sink {
		ks, err := kafka.Open(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	newPipeline := func(s sink.Sink) *Pipeline {
		k := newSink(t, "exact", "main", s)
		k.MaxBatch = 7
		return &Pipeline{
			Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "kafkaresume", Create: true}}},
			Sinks:   []Sink{k},
			Store:   store,
		}
	}
	exec := func(sql string) {
		if _, err := db.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	// The slot first, then the writes: small transactions and a big one.
	ctx, cancel := context.WithCancel(context.Background())
	cs := &crashingSink{Sink: openKafka(), crash: cancel}
	p := newPipeline(cs)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kafkaresume' AND active").Scan(&n)
		return n == 1
	})
	for i := range 5 {
		exec(fmt.Sprintf("INSERT INTO items VALUES (%d, 0)", i))
	}
	exec("INSERT INTO items SELECT g, g FROM generate_series(100, 159) g")
	exec("UPDATE items SET val = val + 1 WHERE id < 3")
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the sink never crashed")
	}
	if !cs.crashed.Load() {
		t.Fatal("the pipeline stopped, but not by the crash")
	}
	kpos, _, _ := cs.Position(context.Background())
	ckpt, _, _ := store.Position("main", "exact")
	if kpos.LastCommit <= ckpt || kpos.Commit < ckpt {
		t.Fatalf("Kafka's position %+v is not in a split transaction ahead of the checkpoint %s", kpos, ckpt)
	}
	_ = cs.Sink.Close()

	// Restart: a new sink reads Kafka's position; more writes come.
	exec("DELETE FROM items WHERE id = 4")
	p = newPipeline(openKafka())
	stop := run(t, p)
	exec("INSERT INTO items VALUES (999, 1)")
	wantChanges := 5 + 60 + 3 + 1 + 1
	waitFor(t, "every change in Kafka", func() bool { return len(readCommitted(t, brokers, "public.items")) >= wantChanges })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if p.Stats("exact").SkippedReplayed.Load() == 0 {
		t.Fatal("the restarted pipeline skipped nothing: it did not resume from Kafka's position")
	}
	recs := readCommitted(t, brokers, "public.items")
	seen := map[string]bool{}
	for _, r := range recs {
		var commit, seq string
		for _, h := range r.Headers {
			switch h.Key {
			case "commit_lsn":
				commit = string(h.Value)
			case "seq":
				seq = string(h.Value)
			}
		}
		id := commit + "/" + seq
		if seen[id] {
			t.Fatalf("read_committed consumer sees event %s twice", id)
		}
		seen[id] = true
	}
	if len(recs) != wantChanges {
		t.Fatalf("read_committed consumer sees %d changes; want %d", len(recs), wantChanges)
	}
}

// readCommitted reads a topic up to its last stable offset, without
// control records and schema events.
func readCommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	return readTopic(t, brokers, topic, true)
}

// readUncommitted reads a topic up to its end, without schema events.
func readUncommitted(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	return readTopic(t, brokers, topic, false)
}

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
	ends, err := adm.ListEndOffsets(ctx, topic)
	if committed {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	}
	if err != nil {
		return nil
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
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	rd, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(want) > 0 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			for _, h := range r.Headers {
				if h.Key == "seq" {
					if n, _ := strconv.Atoi(string(h.Value)); n < 1 {
						return // a schema event
					}
				}
			}
			out = append(out, r)
		})
	}
	return out
}

// A slow Kafka broker (every produce request waits) under a fast writer:
// the events queued for the sink stay within the pipeline's bounds, the
// source reads no faster than the broker takes, and nothing is lost.
func TestSlowKafkaBrokerBackpressure(t *testing.T) {
	const rows = 20_000
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "public.items"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close) // after the pipelines' cleanups, which stop them
	var slowed atomic.Int64
	kc.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		slowed.Add(1)
		time.Sleep(20 * time.Millisecond)
		return nil, nil, false
	})
	dsn := pgtest.CreateDB(t, pg, "slowkafka")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int, pad text)")
	ks, err := kafka.Open(context.Background(), kafka.Options{Brokers: kc.ListenAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	k := newSink(t, "kafka", "main", ks)
	k.MaxBatch, k.MaxBatchBytes, k.QueueBatches = 500, 128<<10, 2
	p := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "slowkafka", Create: true}}},
		Sinks:   []Sink{k},
		Store:   openStore(t),
	}
	stop := run(t, p)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slowkafka' AND active").Scan(&n)
		return n == 1
	})
	for i := 0; i < rows; i += 1000 {
		if _, err := db.Exec(context.Background(), "INSERT INTO items SELECT g, g, repeat('x', 200) FROM generate_series($1::int, $1::int + 999) g", i); err != nil {
			t.Fatal(err)
		}
	}
	st := p.Stats("kafka")
	waitFor(t, fmt.Sprintf("%d rows in Kafka", rows), func() bool { return st.Events.Load() >= rows })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	bound := int64(k.QueueBatches+2) * int64(k.MaxBatchBytes+4096)
	if hw := st.MaxQueuedBytes.Load(); hw > bound {
		t.Fatalf("queued bytes peaked at %d, bound %d", hw, bound)
	}
	recs := readUncommitted(t, kc.ListenAddrs(), "public.items")
	ids := map[string]bool{}
	for _, r := range recs {
		ids[string(r.Key)] = true
	}
	if len(ids) != rows {
		t.Fatalf("Kafka holds %d distinct keys; want %d", len(ids), rows)
	}
	t.Logf("queued bytes high-water %d KiB (bound %d KiB); %d produce requests slowed", st.MaxQueuedBytes.Load()>>10, bound>>10, slowed.Load())
}

// flakySink fails every third Write before writing anything, so that the
// Kafka source retries batches.
type flakySink struct {
	sink.Sink
	n atomic.Int64
}

func (f *flakySink) Write(ctx context.Context, batch []sink.Record) error {
	if f.n.Add(1)%3 == 0 {
		return errors.New("flaky")
	}
	return f.Sink.Write(ctx, batch)
}

// PostgreSQL → Kafka sink → Kafka source → file sink, with concurrent
// writers, a flaky file sink and the downstream pipeline stopped and
// restarted mid-stream: the files hold exactly the table's state, so
// offsets were committed only for batches the sink had.
func TestKafkaSourceToFile(t *testing.T) {
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "public.items", "public.marker"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close) // after the pipelines' cleanups, which stop them
	brokers := kc.ListenAddrs()
	dsn := pgtest.CreateDB(t, pg, "kafkasource")
	db := pgtest.Connect(t, dsn)
	pgtest.Exec(t, db, "CREATE TABLE items(id int PRIMARY KEY, val int)", "CREATE TABLE marker(id int PRIMARY KEY)")
	ks, err := kafka.Open(context.Background(), kafka.Options{Brokers: brokers})
	if err != nil {
		t.Fatal(err)
	}
	up := &Pipeline{
		Sources: []Source{{Name: "main", Stream: source.Config{DSN: dsn, Slot: "kafkasource", Create: true}}},
		Sinks:   []Sink{newSink(t, "kafka", "main", ks)},
		Store:   openStore(t),
	}
	stopUp := run(t, up)
	waitFor(t, "the slot", func() bool {
		var n int
		_ = db.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'kafkasource' AND active").Scan(&n)
		return n == 1
	})

	dir := t.TempDir()
	down := func() (*Pipeline, func() error) {
		fs, err := file.Open(dir, file.Options{MaxBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		p := &Pipeline{
			Sources:    []Source{{Name: "k", Kafka: &kafkasource.Options{Brokers: brokers, Topics: []string{"public.items", "public.marker"}, Group: "downstream"}}},
			Sinks:      []Sink{newSink(t, "files", "k", &flakySink{Sink: fs})},
			Store:      openStore(t),
			MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		}
		return p, run(t, p)
	}
	first, stopFirst := down()

	ctx, stopWriters := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); writer(ctx, dsn, uint64(i)) }()
	}
	waitFor(t, "events downstream", func() bool { return first.Stats("files").Events.Load() > 300 })
	// A stop while the sink fails gives up on the batch (not committed).
	if err := stopFirst(); err != nil && !strings.Contains(err.Error(), "flaky") {
		t.Fatalf("downstream Run: %v", err)
	}
	second, stopSecond := down()
	time.Sleep(500 * time.Millisecond)
	stopWriters()
	wg.Wait()
	pgtest.Exec(t, db, "INSERT INTO marker VALUES (1)")
	waitFor(t, "the marker downstream", func() bool { _, m := readState(t, dir); return m })
	// The marker's partition says nothing of the others: wait until the
	// group committed every partition to its end.
	waitFor(t, "the downstream group at the end of the topics", func() bool { return caughtUp(t, brokers, "downstream", "public.items", "public.marker") })
	if err := stopSecond(); err != nil && !strings.Contains(err.Error(), "flaky") {
		t.Fatalf("downstream Run: %v", err)
	}
	if err := stopUp(); err != nil {
		t.Fatal(err)
	}
	got, _ := readState(t, dir)
	compareState(t, got, tableState(t, db))
	if second.Stats("files").WriteErrors.Load() == 0 {
		t.Fatal("the flaky sink never failed: the retry path was not exercised")
	}
	t.Logf("%d + %d events downstream", first.Stats("files").Events.Load(), second.Stats("files").Events.Load())
}

// caughtUp reports whether the group committed every partition of the
// topics up to its end.
func caughtUp(t *testing.T, brokers []string, group string, topics ...string) bool {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return false
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		c, found := committed.Lookup(o.Topic, o.Partition)
		if o.Offset > 0 && (!found || c.At < o.Offset) {
			ok = false
		}
	})
	return ok
}
