package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
)

type streamFlags struct {
	conn         connFlags
	slot, pub    string
	tables       []string
	create       bool
	snapshot     bool
	endpos       string
	startpos     string
	withTx       bool
	withSchema   bool
	format       string
	wal2jsonOpts string
	protocol     int
	flushPeriod  time.Duration
	heartbeat    time.Duration
}

func newStreamCmd(e *env) *cobra.Command {
	var f streamFlags
	c := &cobra.Command{
		Use:   "stream",
		Short: "Stream changes as JSON lines on stdout, acking each transaction once it is flushed",
		Long: `Stream changes as JSON lines on stdout.

A transaction is acked to PostgreSQL only after its last line was flushed to
stdout, so a crash or kill never loses one: everything after the last ack is
delivered again on the next run (dedupe on commit_lsn + seq).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStream(cmd.Context(), e, &f)
		},
	}
	f.conn.register(c)
	fl := c.Flags()
	fl.StringVar(&f.slot, "slot", "pgfeed", "logical replication slot")
	fl.StringVar(&f.pub, "publication", "", "publication (default: the slot's own, named after it)")
	fl.StringSliceVar(&f.tables, "tables", nil, "tables to stream, as globs on schema.table (comma-separated or repeated)")
	fl.BoolVar(&f.create, "create", false, "create the slot and the publication if missing")
	fl.BoolVar(&f.snapshot, "snapshot", false, "with a new slot, first print every row of the tables as read events, from the slot's own snapshot")
	fl.StringVar(&f.endpos, "endpos", "", "stop once this LSN is reached, like pg_recvlogical --endpos")
	fl.StringVar(&f.startpos, "startpos", "", "start at this LSN instead of the slot's confirmed position (later positions only)")
	fl.BoolVar(&f.withTx, "tx", false, "also print begin and commit events")
	fl.BoolVar(&f.withSchema, "schema", false, "also print schema events when a table first appears or changes")
	fl.StringVar(&f.format, "format", "json", "output format: json, wal2json (one object per transaction), wal2json2 (one per change), debezium or cloudevents")
	fl.StringVar(&f.wal2jsonOpts, "wal2json-options", "include-xids,include-timestamp,include-lsn", "with --format wal2json or wal2json2: the plugin's options, as pg_recvlogical -o takes them, comma-separated")
	fl.IntVar(&f.protocol, "protocol", 0, "pgoutput protocol version 1 or 2 (default: 2 on PostgreSQL 14+)")
	fl.DurationVar(&f.heartbeat, "heartbeat", source.DefaultHeartbeat, "how often to check that the slot advances, writing a heartbeat message (never printed) when its tables are idle while the server writes WAL; 0: never")
	fl.DurationVar(&f.flushPeriod, "flush-interval", 10*time.Millisecond, "longest time output stays buffered (and unacked) under load; with nothing more at hand it is flushed at once")
	return c
}

func runStream(ctx context.Context, e *env, f *streamFlags) error {
	enc, err := lineEncoder(f.format, f.wal2jsonOpts)
	if err != nil {
		return err
	}
	cfg := source.Config{
		DSN: f.conn.resolve(e), Slot: f.slot, Publication: f.pub, Tables: f.tables, Create: f.create,
		Transactions: true, Schemas: f.withSchema, ProtocolVersion: f.protocol, InitialSnapshot: f.snapshot,
		Logger: e.logger(), Heartbeat: f.heartbeat,
	}
	if f.heartbeat <= 0 {
		cfg.Heartbeat = -1
	}
	if f.endpos != "" {
		if cfg.EndLSN, err = event.ParseLSN(f.endpos); err != nil {
			return fmt.Errorf("--endpos: %w", err)
		}
	}
	if f.startpos != "" {
		if cfg.StartLSN, err = event.ParseLSN(f.startpos); err != nil {
			return fmt.Errorf("--startpos: %w", err)
		}
	}
	// Writes to stdout give up shortly after a signal, so that a stalled
	// consumer (a full pipe) cannot keep pgfeed from stopping.
	out := &ackingWriter{out: &stoppableWriter{ctx: ctx, w: e.stdout}, period: f.flushPeriod, last: time.Now()}
	backoff := minReconnect
	for opened := false; ; {
		s, err := source.Open(ctx, cfg)
		if err != nil {
			if !opened || ctx.Err() != nil || errors.Is(err, source.ErrGap) {
				if ctx.Err() != nil && opened {
					return nil
				}
				return err
			}
			// Like pg_recvlogical: a server that restarts is waited for.
			e.warnf("%s; retrying in %v", oneLine(err), backoff)
			if !sleepCtx(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, maxReconnect)
			continue
		}
		if opened {
			e.warnf("reconnected to slot %s", cfg.Slot)
		}
		// The slot exists now: if it vanishes, that is a gap to report,
		// not a reason to create another (and an initial snapshot is the
		// stream's to finish, not to start again).
		opened, cfg.ExpectSlot, cfg.StartLSN = true, true, 0
		out.s, out.delivered = s, 0
		// wal2json2's begin and commit are actions of their own, printed
		// by default like the plugin prints them.
		err = pump(ctx, s, out, enc, f.withTx || f.format == encode.FormatWal2JSON2)
		if ferr := out.flushAndAck(); err == nil && ferr != nil {
			err = ferr
		}
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if ctx.Err() != nil {
			return nil // a signal: what was not written was not acked
		}
		if err == nil || errors.Is(err, source.ErrGap) || errors.Is(err, errOutput) {
			return err
		}
		e.warnf("%s; reconnecting in %v", oneLine(err), backoff)
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, maxReconnect)
	}
}

// Reconnects back off from minReconnect to maxReconnect.
const (
	minReconnect = 100 * time.Millisecond
	maxReconnect = 10 * time.Second
)

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errOutput marks failures to write the output: no reconnect cures them.
var errOutput = errors.New("writing output")

// stopGrace is how long a write may still take after a signal: enough to
// flush to a consumer that keeps reading, not to wait on one that stalled.
const stopGrace = time.Second

// stoppableWriter runs each write in a goroutine, so that a write blocked
// on a consumer that stopped reading does not block a clean stop: once ctx
// is done and stopGrace has passed, Write returns an error and the blocked
// write is left behind (the process is about to exit; what it held was not
// acked, so it comes again on the next run).
type stoppableWriter struct {
	ctx       context.Context
	w         io.Writer
	abandoned bool
}

func (s *stoppableWriter) Write(p []byte) (int, error) {
	if s.abandoned {
		return 0, fmt.Errorf("%w: stopped while the consumer was not reading", errOutput)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.w.Write(p)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return r.n, r.err
	case <-s.ctx.Done():
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.n, r.err
	case <-t.C:
		s.abandoned = true
		return 0, fmt.Errorf("%w: stopped while the consumer was not reading", errOutput)
	}
}

// pump copies events to the writer until the stream ends or ctx is cancelled.
func pump(ctx context.Context, s *source.Stream, out *ackingWriter, enc encode.Encoder, withTx bool) error {
	var buf []byte
	// After a reconnect the stream delivers again what was written but not
	// yet confirmed: written once is enough.
	seen := out.complete
	open := false // inside a transaction, after its begin
	next := ctx
	framer, _ := enc.(encode.TxFramer) // wal2json: one line per transaction
	if framer != nil {
		defer func() {
			if framer.InFrame() {
				// The stream ended inside a transaction (a reconnect, a
				// stop). It was not acked and comes again whole. Its line
				// is dropped if none of it was written out yet; else it is
				// ended, so that it stays valid JSON.
				end := append(framer.EndFrame(nil), '\n')
				if !out.torn {
					out.buf = out.buf[:out.mark]
					return
				}
				if out.write(end) == nil {
					_ = out.writeOut(len(out.buf))
				}
			}
		}()
	}
	for {
		ev, err := s.Next(next)
		if err != nil && ctx.Err() != nil && open && next == ctx {
			// A stop in the middle of a transaction: finish writing it
			// (its events are at hand), so that a clean stop leaves
			// nothing printed unacked. A transaction that takes longer
			// than stopGrace stays partial and unacked: it comes again.
			var cancel context.CancelFunc
			next, cancel = context.WithTimeout(context.WithoutCancel(ctx), stopGrace)
			defer cancel()
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		again := ev.CommitLSN <= seen && ev.Op != event.OpRead
		if !again && ((ev.Op != event.OpBegin && ev.Op != event.OpCommit) || withTx || framer != nil) {
			if buf, err = enc.Encode(buf[:0], ev); err != nil {
				return fmt.Errorf("encoding %s event at %s: %w", ev.Op, ev.LSN, err)
			}
			// A framing encoder's line is a whole transaction; an event
			// it writes nothing for (wal2json leaves some out) is no line.
			if len(buf) > 0 && (framer == nil || !framer.InFrame()) {
				buf = append(buf, '\n')
			}
			if err := out.write(buf); err != nil {
				return err
			}
		}
		// A transaction is complete at its commit; a non-transactional
		// message is complete by itself.
		open = ev.Op != event.OpCommit && (open || ev.Op == event.OpBegin)
		if ev.Op == event.OpCommit || (ev.Op == event.OpMessage && !ev.Message.Transactional) {
			out.complete = max(out.complete, ev.CommitLSN)
			out.delivered = ev.CommitLSN
			out.mark, out.torn = len(out.buf), false
			if next != ctx {
				return nil // the transaction open at the stop is written
			}
			if s.Buffered() == 0 || time.Since(out.last) >= out.period {
				if err := out.flushAndAck(); err != nil {
					return err
				}
			}
		}
	}
}

// ackingWriter acks a position only after the output holding it was
// flushed. It buffers the output itself and writes out whole transactions
// only (up to maxPending bytes; a bigger one is written as it comes), so
// that a stop in the middle of a transaction leaves none of it printed
// and unacked.
type ackingWriter struct {
	out  io.Writer
	buf  []byte
	mark int // end of the last complete transaction in buf
	// torn is set when part of an open transaction was written out (it
	// outgrew maxPending); its end is then written out whatever happens.
	torn     bool
	s        *source.Stream
	complete event.LSN // commit position of the last complete transaction written
	// delivered is the last complete transaction the current stream
	// delivered (after a reconnect it starts again below complete).
	delivered event.LSN
	acked     event.LSN
	period    time.Duration
	last      time.Time
}

// maxPending bounds the output buffered between two flushes.
const maxPending = 256 << 10

// write buffers one event's output.
func (a *ackingWriter) write(p []byte) error {
	a.buf = append(a.buf, p...)
	if len(a.buf) >= maxPending {
		a.torn = a.torn || len(a.buf) > a.mark
		return a.writeOut(len(a.buf))
	}
	return nil
}

// writeOut writes the first n buffered bytes.
func (a *ackingWriter) writeOut(n int) error {
	if n == 0 {
		return nil
	}
	if _, err := a.out.Write(a.buf[:n]); err != nil {
		return fmt.Errorf("%w: %w", errOutput, err)
	}
	a.buf = a.buf[:copy(a.buf, a.buf[n:])]
	a.mark = max(a.mark-n, 0)
	return nil
}

// flushAndAck writes out the complete transactions and acks them; the
// output of one still open stays buffered.
func (a *ackingWriter) flushAndAck() error {
	if err := a.writeOut(a.mark); err != nil {
		return err
	}
	a.last = time.Now()
	// Only what this stream delivered may be acked to it.
	if pos := min(a.complete, a.delivered); pos > a.acked {
		if err := a.s.Ack(pos); err != nil {
			return err
		}
		a.acked = pos
	}
	return nil
}

// lineEncoder returns the encoder of a text format, one event per line.
func lineEncoder(format, wal2jsonOpts string) (encode.Encoder, error) {
	if format == encode.FormatAvro {
		return nil, fmt.Errorf("invalid --format avro: Avro is binary and has no line form; use it in a pipeline sink (pgfeed run)")
	}
	var opts encode.Options
	if format == encode.FormatWal2JSON || format == encode.FormatWal2JSON2 {
		w, err := encode.ParseWal2JSONOptions(wal2jsonOpts)
		if err != nil {
			return nil, fmt.Errorf("invalid --wal2json-options: %w", err)
		}
		opts.Wal2JSON = &w
	}
	enc, err := encode.New(format, opts)
	if err != nil {
		return nil, fmt.Errorf("invalid --format %q: want json, wal2json, wal2json2, debezium or cloudevents", format)
	}
	return enc, nil
}
