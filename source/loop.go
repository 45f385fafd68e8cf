package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/internal/pgoutput"
)

// Delivery is batched: the loop hands the consumer slices of events. The
// queue holds at most queueBatches batches of at most maxBatchEvents events
// or maxBatchBytes bytes, which bounds the memory between the socket and a
// slow consumer; beyond it the loop stops reading and TCP pushes back on
// the server.
const (
	queueBatches   = 8
	maxBatchEvents = 1024
	maxBatchBytes  = 1 << 20
)

// loop is the one goroutine that owns the replication connection (and the
// catalog connection used to resolve types while streaming).
type loop struct {
	s     *Stream
	repl  *pgconn.PgConn
	meta  *pgx.Conn
	types *catalog.Types
	dec   *decoder

	batch      []*event.Event
	batchBytes int
	nextStatus time.Time

	streaming bool // START_REPLICATION done: status updates may be sent
	inStream  bool
	streamXID uint32
	spools    map[uint32]*spool
	// keyed holds the relations whose key was looked up in the transaction
	// being decoded.
	keyed map[uint32]bool
}

// run streams until ctx is cancelled, the end position is reached
// (io.EOF) or the connection fails. The caller closes the connections.
func (l *loop) run(ctx context.Context) (err error) {
	l.streaming = true
	conn := l.repl.Conn()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()

	l.nextStatus = time.Now().Add(l.s.cfg.StatusInterval)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !time.Now().Before(l.nextStatus) {
			if err := l.sendStatus(false); err != nil {
				return err
			}
		}
		// Wait for the server no longer than the next status is due; with
		// events waiting for the consumer, only briefly, then hand them over.
		deadline := l.nextStatus
		if len(l.batch) > 0 {
			deadline = time.Now().Add(time.Millisecond)
		}
		_ = conn.SetReadDeadline(deadline)
		if ctx.Err() != nil { // cancelled between the check above and SetReadDeadline
			return ctx.Err()
		}
		msg, err := l.repl.ReceiveMessage(context.Background())
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() || pgconn.Timeout(err) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := l.flush(ctx, true); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("replication connection lost: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := l.handleCopyData(ctx, m.Data); err != nil {
				return err
			}
		case *pgproto3.ErrorResponse:
			return l.streamingError(pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return fmt.Errorf("the server ended replication")
		default:
			// Notices and parameter changes need no action.
		}
	}
}

// linger keeps the connection alive once the end position was reached,
// until ctx is cancelled (Close): it answers keepalives and reports the
// consumer's acks, and drops what the server still sends (it is past the
// end and not confirmed, so it comes again on the next stream).
func (l *loop) linger(ctx context.Context) {
	conn := l.repl.Conn()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	for ctx.Err() == nil {
		if !time.Now().Before(l.nextStatus) {
			if l.sendStatus(false) != nil {
				return
			}
		}
		_ = conn.SetReadDeadline(l.nextStatus)
		if ctx.Err() != nil {
			return
		}
		msg, err := l.repl.ReceiveMessage(context.Background())
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() || pgconn.Timeout(err) {
				continue
			}
			return
		}
		if cd, ok := msg.(*pgproto3.CopyData); ok && len(cd.Data) > 0 && cd.Data[0] == pglogrepl.PrimaryKeepaliveMessageByteID {
			if ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:]); err == nil && ka.ReplyRequested {
				if l.sendStatus(false) != nil {
					return
				}
			}
		}
	}
}

// streamingError explains an error the walsender sent while streaming.
// A publication dropped under the slot is one no retry cures: decoding
// looks the publication up as of each change, so even one created again
// under the same name is not there for the changes in between.
func (l *loop) streamingError(pgErr *pgconn.PgError) error {
	if pgErr.Code == "42704" && strings.Contains(pgErr.Message, "publication") {
		slot := l.s.cfg.Slot
		return &UserError{Msg: fmt.Sprintf("publication %q was dropped while slot %q used it: the slot cannot decode past that point, even if the publication is created again; drop the slot and start over (pgfeed slot drop %s, then --create, with --snapshot to read every row; pgfeed run: --resnapshot)", l.s.cfg.Publication, slot, slot), Err: errors.Join(ErrGap, pgErr)}
	}
	return explainSQL(pgErr, "streaming")
}

// close releases the connections. Once streaming, it first reports the
// final acked position, so that a clean stop resumes exactly.
func (l *loop) close() {
	for _, sp := range l.spools {
		sp.close()
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !l.repl.IsClosed() {
		if l.streaming && l.sendStatus(false) == nil {
			l.endCopy(time.Now().Add(5 * time.Second))
		}
		walsender := l.repl.PID()
		l.repl.Close(cctx)
		l.awaitSlotReleased(cctx, walsender)
	}
	l.meta.Close(cctx)
}

// endCopy ends the replication stream the way the protocol means it to
// end (CopyDone, then the server's own end of the copy) instead of just
// closing the socket. That matters: closing a socket that still holds
// unread data (the server kept sending) makes the kernel reset the
// connection, and a reset discards what the server had not read yet,
// the final status update with the last acks among it.
func (l *loop) endCopy(deadline time.Time) {
	conn := l.repl.Conn()
	_ = conn.SetDeadline(deadline)
	fe := l.repl.Frontend()
	fe.Send(&pgproto3.CopyDone{})
	if fe.Flush() != nil {
		return
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.ReadyForQuery, *pgproto3.ErrorResponse:
			return
		}
	}
}

// awaitSlotReleased waits until the server's walsender has let go of the
// slot: it exits a moment after the connection closes, and until then a
// new stream on the slot (a restart right after Close) would find it
// active.
func (l *loop) awaitSlotReleased(ctx context.Context, walsender uint32) {
	for ctx.Err() == nil && !l.meta.IsClosed() {
		var active bool
		err := l.meta.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active_pid = $2)",
			l.s.cfg.Slot, int64(walsender)).Scan(&active)
		if err != nil || !active {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *loop) handleCopyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parsing keepalive: %w", err)
		}
		end := event.LSN(ka.ServerWALEnd)
		l.s.stats.serverEnd.Store(uint64(end))
		if !l.dec.inTxn && !l.inStream {
			l.s.tracker.serverEnd(end)
		}
		if l.pastEnd(end) && !l.dec.inTxn && len(l.spools) == 0 {
			if err := l.flush(ctx, true); err != nil {
				return err
			}
			return io.EOF
		}
		if ka.ReplyRequested {
			return l.sendStatus(false)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parsing XLogData: %w", err)
		}
		l.s.stats.bytes.Add(uint64(len(xld.WALData)))
		// The connection reuses its read buffer; events keep slices of this copy.
		wal := make([]byte, len(xld.WALData))
		copy(wal, xld.WALData)
		return l.handleWAL(ctx, event.LSN(xld.WALStart), wal)
	}
	return nil
}

// handleWAL decodes one pgoutput message. Messages of a streamed
// in-progress transaction go to its spool; the rest become events.
func (l *loop) handleWAL(ctx context.Context, walStart event.LSN, wal []byte) error {
	msg, err := pgoutput.Parse(wal, l.inStream)
	if err != nil {
		return fmt.Errorf("decoding pgoutput message at %s: %w", walStart, err)
	}
	switch m := msg.(type) {
	case *pgoutput.StreamStart:
		l.inStream, l.streamXID = true, m.XID
		if l.spools == nil {
			l.spools = map[uint32]*spool{}
		}
		if _, ok := l.spools[m.XID]; !ok {
			sp, err := newSpool(l.s.cfg.SpoolDir, m.XID)
			if err != nil {
				return err
			}
			l.spools[m.XID] = sp
			l.s.tracker.streamOpened()
		}
		return nil
	case *pgoutput.StreamStop:
		l.inStream = false
		return nil
	case *pgoutput.StreamAbort:
		sp := l.spools[m.XID]
		if sp == nil {
			return nil
		}
		if m.SubXID != m.XID {
			sp.abortSub(m.SubXID)
			return nil
		}
		sp.close()
		delete(l.spools, m.XID)
		l.s.tracker.streamClosed()
		return nil
	case *pgoutput.StreamCommit:
		return l.replaySpool(ctx, m)
	}
	if l.inStream {
		sp := l.spools[l.streamXID]
		if sp == nil {
			return fmt.Errorf("streamed message for transaction %d outside its stream", l.streamXID)
		}
		if lm, ok := msg.(*pgoutput.LogicalMessage); ok && !lm.Transactional {
			return l.decode(ctx, walStart, msg) // not part of the transaction
		}
		if err := sp.add(spoolXID(msg), uint64(walStart), wal); err != nil {
			return err
		}
		l.s.stats.spooled.Add(uint64(len(wal) + spoolRecordHeader))
		return nil
	}
	return l.decode(ctx, walStart, msg)
}

// spoolXID is the (sub)transaction a streamed message belongs to, as
// pgoutput v2 sends it with each change and relation: a StreamAbort of a
// subtransaction discards exactly what was spooled under its xid
// (PostgreSQL sends one per aborted subtransaction, its released children
// included). A Relation sent under an aborted subtransaction goes with it,
// as it would in a transaction that was not streamed: pgoutput forgets what
// it described in the transaction on every StreamAbort and describes a
// relation again before its next change.
func spoolXID(msg pgoutput.Message) uint32 {
	switch m := msg.(type) {
	case *pgoutput.Insert:
		return m.XID
	case *pgoutput.Update:
		return m.XID
	case *pgoutput.Delete:
		return m.XID
	case *pgoutput.Truncate:
		return m.XID
	case *pgoutput.LogicalMessage:
		return m.XID
	case *pgoutput.Relation:
		return m.XID
	case *pgoutput.Type:
		return m.XID
	}
	return 0
}

// decode turns one message into events and queues them.
func (l *loop) decode(ctx context.Context, walStart event.LSN, msg pgoutput.Message) error {
	switch m := msg.(type) {
	case *pgoutput.Begin:
		if l.pastEnd(event.LSN(m.FinalLSN)) && event.LSN(m.FinalLSN) != l.s.cfg.EndLSN {
			// Like pg_recvlogical --endpos: stop before the first
			// transaction that commits after the end position.
			if err := l.flush(ctx, true); err != nil {
				return err
			}
			return io.EOF
		}
		l.s.tracker.begin(event.LSN(m.FinalLSN))
		l.s.stats.txns.Add(1)
		clear(l.keyed)
	case *pgoutput.Relation:
		if missing := l.types.Missing(relationTypes(m)); len(missing) > 0 {
			if err := l.types.Resolve(ctx, l.meta, missing); err != nil {
				return fmt.Errorf("resolving column types of %s.%s: %w", m.Namespace, m.Name, err)
			}
		}
		// Looked up again in every transaction that describes the table
		// (pgoutput does so after the table changed), so that a key added or
		// dropped counts from then on; but once per transaction only, since
		// a streamed one describes its tables anew after each rolled-back
		// savepoint.
		if !l.keyed[m.OID] {
			key, err := catalog.Key(ctx, l.meta, m.OID)
			if err != nil {
				return fmt.Errorf("resolving the key of %s.%s: %w", m.Namespace, m.Name, err)
			}
			l.dec.setKey(m.OID, key)
			if l.keyed == nil {
				l.keyed = map[uint32]bool{}
			}
			l.keyed[m.OID] = true
		}
	case *pgoutput.LogicalMessage:
		if !m.Transactional && m.Prefix == HeartbeatPrefix {
			// Never delivered nor registered: the next keepalive's WAL end
			// covers it, and that is the position it was written for.
			return nil
		}
		if !m.Transactional {
			l.s.tracker.single(event.LSN(m.LSN))
		}
	}
	var err error
	before := len(l.batch)
	l.batch, err = l.dec.handle(l.batch, walStart, msg)
	if err != nil {
		return err
	}
	for _, e := range l.batch[before:] {
		l.batchBytes += eventSize(e)
	}
	if c, ok := msg.(*pgoutput.Commit); ok {
		l.s.tracker.commit(event.LSN(c.CommitLSN), event.LSN(c.EndLSN))
		if l.pastEnd(event.LSN(c.EndLSN)) {
			if err := l.flush(ctx, true); err != nil {
				return err
			}
			return io.EOF
		}
	}
	return l.flush(ctx, false)
}

// pastEnd reports whether pos is at or past Config.EndLSN, with no
// backfill in progress: a backfill (one finishing an interrupted snapshot
// among them) is let finish, since its rows come with watermarks written
// after the end position.
func (l *loop) pastEnd(pos event.LSN) bool {
	return l.s.cfg.EndLSN != 0 && pos >= l.s.cfg.EndLSN && !l.s.backfills.busy()
}

// replaySpool delivers a committed streamed transaction from its spool, as
// if it had arrived between a Begin and a Commit.
func (l *loop) replaySpool(ctx context.Context, m *pgoutput.StreamCommit) error {
	sp := l.spools[m.XID]
	delete(l.spools, m.XID)
	if sp == nil {
		return fmt.Errorf("commit of streamed transaction %d that never started", m.XID)
	}
	defer sp.close()
	l.s.stats.streamed.Add(1)
	begin := &pgoutput.Begin{FinalLSN: m.CommitLSN, CommitTime: m.CommitTime, XID: m.XID}
	if err := l.decode(ctx, event.LSN(m.CommitLSN), begin); err != nil {
		return err
	}
	err := sp.replay(func(walStart uint64, wal []byte) error {
		msg, err := pgoutput.Parse(wal, true)
		if err != nil {
			return fmt.Errorf("decoding spooled message at %s: %w", event.LSN(walStart), err)
		}
		return l.decode(ctx, event.LSN(walStart), msg)
	})
	if err != nil {
		return err
	}
	commit := &pgoutput.Commit{Flags: m.Flags, CommitLSN: m.CommitLSN, EndLSN: m.EndLSN, CommitTime: m.CommitTime}
	err = l.decode(ctx, event.LSN(m.EndLSN), commit)
	l.s.tracker.streamClosed()
	return err
}

// flush hands the batch to the consumer. Without force it only does so when
// the consumer is waiting or the batch is full, so that events travel in
// batches under load and one by one when the consumer is idle. A full queue
// blocks here, which stops reading from the server: that is the backpressure.
func (l *loop) flush(ctx context.Context, force bool) error {
	if len(l.batch) == 0 {
		return nil
	}
	if !force && len(l.batch) < maxBatchEvents && l.batchBytes < maxBatchBytes {
		// The consumer can do nothing with part of a transaction before
		// its commit arrives (it acks, and pgfeed stream flushes, per
		// transaction): one hand-over per transaction, at its end, saves
		// the consumer a wake-up for each of its messages.
		if l.dec.inTxn {
			return nil
		}
		// An empty queue means the consumer has caught up: give it what we
		// have now rather than make it wait for a full batch.
		if len(l.s.out) == 0 {
			select {
			case l.s.out <- l.batch:
				l.handedOver()
			default:
			}
		}
		return nil
	}
	for {
		wait := time.Until(l.nextStatus)
		timer := time.NewTimer(max(wait, 0))
		select {
		case l.s.out <- l.batch:
			timer.Stop()
			l.handedOver()
			return nil
		case <-timer.C:
			// A slow consumer must not make the server think we are gone.
			if err := l.sendStatus(false); err != nil {
				return err
			}
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
}

func (l *loop) handedOver() {
	l.s.stats.events.Add(uint64(len(l.batch)))
	l.batch = make([]*event.Event, 0, min(2*len(l.batch), maxBatchEvents))
	l.batchBytes = 0
}

// eventSize estimates an event's memory, to bound batches by bytes.
func eventSize(e *event.Event) int {
	n := 200
	for _, v := range e.Before {
		n += len(v.Raw) + 24
	}
	for _, v := range e.After {
		n += len(v.Raw) + 24
	}
	if e.Message != nil {
		n += len(e.Message.Content)
	}
	return n
}

func (l *loop) sendStatus(reply bool) error {
	l.nextStatus = time.Now().Add(l.s.cfg.StatusInterval)
	// Written is reported as the confirmed position too: while it lags the
	// server's send position, the server pings us as soon as it has nothing
	// more to send, which is how an --endpos at the WAL end is noticed.
	confirmed := l.s.tracker.position()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), l.repl, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(confirmed),
		WALFlushPosition: pglogrepl.LSN(confirmed),
		WALApplyPosition: pglogrepl.LSN(confirmed),
		ReplyRequested:   reply,
	})
	if err != nil {
		return fmt.Errorf("sending standby status: %w", err)
	}
	return nil
}
