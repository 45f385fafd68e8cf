package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/snapshot"
)

// Stream delivers the changes of one replication slot. Next and Ack may be
// called from different goroutines; Next itself is for one consumer.
type Stream struct {
	cfg     Config
	log     *slog.Logger
	tracker *tracker
	out     chan []*event.Event
	cancel  context.CancelFunc
	done    chan struct{}
	err     error // set by the loop before done closes

	batch []*event.Event
	cur   int
	// merged holds what the merger gave for the last raw event, not yet returned.
	merged    []*event.Event
	merger    *snapshot.Merger
	backfills *backfiller

	stopWatch context.CancelFunc // stops the table watcher, if one runs
	slotWatch *slotWatch         // checks the slot's health (health.go)
	heartbeat *heartbeat         // keeps an idle slot moving (heartbeat.go); nil: off
	stopBeat  context.CancelFunc

	// The initial snapshot read by this stream, until it is acked in full:
	// snapAt is its consistent point, snapEnded is set once Next handed out
	// its last row.
	snapMu    sync.Mutex
	snapAt    event.LSN
	snapEnded bool
	snapAcked event.LSN // the highest position the consumer acked

	closeOnce sync.Once
	stats     stats
}

// Stats are counters of a running stream.
type Stats struct {
	Events         uint64    // events delivered to the channel
	Bytes          uint64    // pgoutput bytes received
	Transactions   uint64    // transactions received
	StreamedTxns   uint64    // large transactions received through the spool
	SpooledBytes   uint64    // bytes written to spool files
	Confirmed      event.LSN // position confirmed to the server
	ServerWALEnd   event.LSN // latest WAL end the server reported
	StartLSN       event.LSN // where the stream started (the slot's confirmed position)
	ProtocolVerion int
	Heartbeats     int64 // heartbeats written because the slot did not advance
}

type stats struct {
	events, bytes, txns, streamed, spooled, serverEnd atomic.Uint64
	start                                             event.LSN
	proto                                             int
}

// Open checks the server, the publication and the slot (creating them with
// Config.Create), and starts streaming. Failures a user can fix come back
// as *UserError.
func Open(ctx context.Context, c Config) (*Stream, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	meta, err := Connect(ctx, cfg.DSN)
	if err != nil {
		return nil, err
	}
	closeMeta := func(err error) (*Stream, error) {
		meta.Close(context.Background())
		return nil, err
	}
	version, err := checkServer(ctx, meta)
	if err != nil {
		return closeMeta(err)
	}
	if cfg.ProtocolVersion == 0 {
		cfg.ProtocolVersion = 1
		if version >= 140000 {
			cfg.ProtocolVersion = 2
		}
	}
	if cfg.ProtocolVersion == 2 && version < 140000 {
		return closeMeta(&UserError{Msg: fmt.Sprintf("pgoutput protocol version 2 needs PostgreSQL 14 or later (server is %d)", version)})
	}
	slot, err := readSlot(ctx, meta, cfg.Slot)
	if err != nil {
		return closeMeta(err)
	}
	if !slot.exists && cfg.Create {
		// Refused before the publication is made for a slot that cannot be.
		if _, err := failoverSlot(cfg.Failover, version); err != nil {
			return closeMeta(err)
		}
	}
	newTables, listed, err := ensurePublication(ctx, meta, &cfg, version)
	if err != nil {
		return closeMeta(err)
	}
	// A consumer that just died (kill -9, a lost network) leaves its
	// walsender holding the slot until the server notices: a restart right
	// away waits a moment for it rather than failing.
	for deadline := time.Now().Add(cfg.SlotWait); slot.exists && slot.active && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return closeMeta(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if slot, err = readSlot(ctx, meta, cfg.Slot); err != nil {
			return closeMeta(err)
		}
	}
	var health Health
	if slot.exists {
		if err := checkSlot(slot, cfg.Slot, meta.Config().Database); err != nil {
			return closeMeta(err)
		}
		// An invalidated slot stops here with the way out.
		if health, err = checkSlotHealth(ctx, meta, &cfg); err != nil {
			return closeMeta(err)
		}
	}
	// An initial snapshot of this slot that was cut short is finished by
	// whoever opens the slot next, asked for or not: the slot was made for
	// it, and streaming on would leave the rows it did not reach unread.
	pending, err := snapshotPending(ctx, meta, cfg.Slot)
	if err != nil {
		return closeMeta(err)
	}
	if pending {
		cfg.InitialSnapshot = true
	}
	// A slot dropped to read an interrupted snapshot again is not lost:
	// the new snapshot covers what it held.
	if !slot.exists && cfg.ExpectSlot && !pending {
		return closeMeta(&UserError{Msg: fmt.Sprintf("replication slot %q vanished (dropped, or invalidated and removed): the changes it held for this stream are lost to pgfeed, and it is not created again on its own", cfg.Slot), Err: ErrGap})
	}
	// A slot whose snapshot was cut short still holds every change since
	// its consistent point (nothing past it was confirmed): the snapshot is
	// finished by backfilling its tables, merged with those changes, so
	// that rows deleted meanwhile come as deletes instead of lingering from
	// the partial read.
	var finish []string
	if slot.exists && pending {
		if finish, err = snapshotTables(ctx, meta, &cfg); err != nil {
			return closeMeta(err)
		}
		cfg.Logger.Warn("the initial snapshot was interrupted; finishing it with a backfill of its tables", "slot", cfg.Slot, "tables", len(finish))
	}
	if !slot.exists && !cfg.Create {
		return closeMeta(&UserError{Msg: fmt.Sprintf("replication slot %q does not exist: pass --create, or run pgfeed slot create %s", cfg.Slot, cfg.Slot)})
	}

	repl, err := connectReplication(ctx, cfg.DSN)
	if err != nil {
		return closeMeta(err)
	}
	fail := func(err error) (*Stream, error) {
		repl.Close(context.Background())
		return closeMeta(err)
	}
	start := slot.confirmed
	var snap *initialSnapshot
	if !slot.exists && cfg.InitialSnapshot {
		// Pending before the slot exists: a crash right after its creation
		// must not leave a slot whose snapshot nobody knows was never read.
		if err := ensureOwnTables(ctx, meta); err != nil {
			return fail(err)
		}
		if err := markSnapshot(ctx, meta, cfg.Slot, 0, false); err != nil {
			return fail(err)
		}
	}
	if !slot.exists {
		failover, err := failoverSlot(cfg.Failover, version)
		if err != nil {
			return fail(err)
		}
		res, err := createSlot(ctx, repl, cfg.Slot, cfg.InitialSnapshot, failover)
		if err != nil {
			return fail(err)
		}
		exported := time.Now() // the snapshot's time, as near as the client can tell
		if start, err = event.ParseLSN(res.ConsistentPoint); err != nil {
			return fail(fmt.Errorf("reading consistent point of new slot: %w", err))
		}
		cfg.Logger.Info("created replication slot", "slot", cfg.Slot, "consistent_point", start, "failover", failover)
		if cfg.InitialSnapshot {
			tables, err := snapshotTables(ctx, meta, &cfg)
			if err != nil {
				return fail(err)
			}
			filters, err := publicationFilters(ctx, meta, cfg.Publication)
			if err != nil {
				return fail(err)
			}
			snap = &initialSnapshot{name: res.SnapshotName, at: start, time: exported, tables: tables, filters: filters}
		}
	}

	startAt := start
	if cfg.StartLSN > startAt {
		startAt = cfg.StartLSN
	}
	args := []string{
		fmt.Sprintf("proto_version '%d'", cfg.ProtocolVersion),
		fmt.Sprintf("publication_names '%s'", cfg.Publication), // validated: [a-z0-9_]
		"messages 'true'",
	}
	if cfg.ProtocolVersion >= 2 {
		args = append(args, "streaming 'true'")
	}
	startReplication := func(ctx context.Context) error {
		err := pglogrepl.StartReplication(ctx, repl, cfg.Slot, pglogrepl.LSN(startAt), pglogrepl.StartReplicationOptions{PluginArgs: args})
		if err != nil {
			return explainSQL(err, "starting replication from slot "+cfg.Slot)
		}
		return nil
	}
	if snap == nil {
		// Start here, so that Open reports a failure itself.
		if err := startReplication(ctx); err != nil {
			return fail(err)
		}
	}

	loopCtx, cancel := context.WithCancel(context.Background())
	s := &Stream{
		cfg:     cfg,
		log:     cfg.Logger,
		tracker: newTracker(start),
		out:     make(chan []*event.Event, queueBatches),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	s.stats.start, s.stats.proto = start, cfg.ProtocolVersion
	if snap != nil {
		s.snapAt = snap.at
	}
	s.merger = snapshot.NewMerger()
	s.backfills = newBackfiller(&s.cfg, s.merger)
	l := &loop{
		s:     s,
		repl:  repl,
		meta:  meta,
		types: catalog.NewTypes(),
	}
	l.dec = newDecoder(l.types, cfg.selection, cfg.Schemas, cfg.Transactions)
	// Backfills are queued before the loop starts, so that it never
	// reaches an end position before it knows of them.
	if err := s.backfills.resume(); err != nil {
		cfg.Logger.Warn("backfills of the last run not resumed", "err", err)
	}
	if finish != nil {
		s.backfills.finishSnapshot(finish)
	}
	if cfg.BackfillNewTables && len(newTables) > 0 && snap == nil {
		s.backfills.queueTables(newTables)
	}
	go func() {
		var err error
		if snap != nil {
			// The exported snapshot lives until the next command on the
			// replication connection: read it all, then start streaming.
			err = l.readSnapshot(loopCtx, snap)
			if err == nil {
				err = startReplication(loopCtx)
			}
		}
		if err == nil {
			err = l.run(loopCtx)
		}
		if errors.Is(err, io.EOF) {
			// The end position: the consumer drains what was handed over
			// and acks it; the connection stays up until Close, so that
			// the final status update carries those acks.
			close(s.out)
			l.linger(loopCtx)
			l.close()
			close(s.done)
			return
		}
		l.close()
		s.err = err
		close(s.out)
		close(s.done)
	}()
	s.slotWatch = startSlotWatch(&s.cfg, health)
	if s.cfg.Heartbeat > 0 {
		beatCtx, stopBeat := context.WithCancel(context.Background())
		s.heartbeat, s.stopBeat = &heartbeat{cfg: &s.cfg, tracker: s.tracker}, stopBeat
		s.heartbeat.done = make(chan struct{})
		go func() { defer close(s.heartbeat.done); s.heartbeat.run(beatCtx) }()
	}
	if cfg.Create && cfg.TableWatchInterval > 0 && listed {
		watchCtx, stopWatch := context.WithCancel(context.Background())
		s.stopWatch = stopWatch
		go s.watchTables(watchCtx)
	}
	return s, nil
}

// Next returns the next event, waiting for one. It returns io.EOF once the
// stream reached Config.EndLSN, and the stream's error if it failed.
// The event belongs to the caller.
//
// Backfills are merged in here: watermark messages are swallowed, chunk
// rows come out as read events at their high watermark, and backfill
// requests start the backfill of their tables.
func (s *Stream) Next(ctx context.Context) (*event.Event, error) {
	for len(s.merged) == 0 {
		e, err := s.nextRaw(ctx)
		if err != nil {
			return nil, err
		}
		if e.Op == event.OpCommit && e.XID == 0 && e.CommitLSN == s.stats.start && s.snapshotEnd() {
			s.snapshotDone(0) // in case the consumer acked it before Next got here
			if !s.cfg.Transactions {
				continue // the end of the initial snapshot, asked for only with transactions
			}
		}
		if id, ok := backfillRequest(e, s.cfg.Slot); ok {
			if id > 0 {
				s.backfills.requestFromWAL(ctx, id)
			}
			continue
		}
		s.merged = append(s.merged, s.merger.Observe(e)...)
	}
	e := s.merged[0]
	s.merged[0] = nil
	s.merged = s.merged[1:]
	return e, nil
}

// Backfill asks this stream to backfill tables from their beginning while
// it streams: their rows come as read events, merged so that none
// overwrites a newer change. Tables are SQL names as psql takes them
// ("public.orders", `"Orders"`). The request is queued at once; progress is
// stored in Config.BackfillProgress. A name that is no table is an error.
func (s *Stream) Backfill(tables ...string) error {
	return s.backfills.request(context.Background(), tables)
}

func (s *Stream) nextRaw(ctx context.Context) (*event.Event, error) {
	for s.cur >= len(s.batch) {
		select {
		case b, ok := <-s.out:
			if !ok {
				return nil, s.finalErr()
			}
			s.batch, s.cur = b, 0
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	e := s.batch[s.cur]
	s.batch[s.cur] = nil
	s.cur++
	return e, nil
}

// Buffered reports how many events Next can return without waiting on the
// server. Consumers use it to flush their output when it reaches zero.
func (s *Stream) Buffered() int { return len(s.batch) - s.cur + len(s.merged) }

func (s *Stream) finalErr() error {
	if s.err == nil || errors.Is(s.err, context.Canceled) {
		return io.EOF
	}
	return s.err
}

// Ack acknowledges every event whose CommitLSN is at or before lsn: they
// will not be delivered again, and Postgres may recycle their WAL. Acking a
// position that was never delivered is an error and changes nothing.
func (s *Stream) Ack(lsn event.LSN) error {
	if err := s.tracker.ack(lsn); err != nil {
		return err
	}
	// Backfill chunks whose rows are now acked complete, and their progress is stored.
	s.merger.Ack(lsn)
	s.snapshotDone(lsn)
	return nil
}

// Delivered reports that every event at or before lsn reached its
// destination, without confirming it to PostgreSQL: for consumers that
// hold acks back to keep WAL for a replay (pgfeed run's retain). It
// completes an initial snapshot as an Ack would.
func (s *Stream) Delivered(lsn event.LSN) { s.snapshotDone(lsn) }

// snapshotEnd notes that Next reached the end of the initial snapshot,
// and reports whether one is being read.
func (s *Stream) snapshotEnd() bool {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if s.snapAt == 0 {
		return false
	}
	s.snapEnded = true
	return true
}

// Confirmed returns the position confirmed (or about to be confirmed) to the server.
func (s *Stream) Confirmed() event.LSN { return s.tracker.position() }

// Stats returns the stream's counters.
func (s *Stream) Stats() Stats {
	var beats int64
	if s.heartbeat != nil {
		beats = s.heartbeat.written.Load()
	}
	return Stats{
		Heartbeats:     beats,
		Events:         s.stats.events.Load(),
		Bytes:          s.stats.bytes.Load(),
		Transactions:   s.stats.txns.Load(),
		StreamedTxns:   s.stats.streamed.Load(),
		SpooledBytes:   s.stats.spooled.Load(),
		Confirmed:      s.tracker.position(),
		ServerWALEnd:   event.LSN(s.stats.serverEnd.Load()),
		StartLSN:       s.stats.start,
		ProtocolVerion: s.stats.proto,
	}
}

// Close stops the stream: it reports the last acked position to the server
// and closes the connections. Unacked events come again on the next Open.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
		}
		s.slotWatch.stop()
		if s.stopBeat != nil {
			s.stopBeat()
			<-s.heartbeat.done
		}
		s.backfills.stop()
		s.cancel()
	})
	<-s.done
	if s.err == nil || errors.Is(s.err, context.Canceled) || errors.Is(s.err, io.EOF) {
		return nil
	}
	return s.err
}

// Done is closed when the stream stopped: after Close, or on an error. At
// EndLSN, Next returns io.EOF and the stream waits for Close, so that the
// acks of the last events still reach the server.
func (s *Stream) Done() <-chan struct{} { return s.done }
