package cli

import (
	"bufio"
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
	conn        connFlags
	slot, pub   string
	tables      []string
	create      bool
	snapshot    bool
	endpos      string
	startpos    string
	withTx      bool
	withSchema  bool
	format      string
	protocol    int
	flushPeriod time.Duration
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
	fl.StringVar(&f.format, "format", "json", "output format: json, wal2json, debezium or cloudevents")
	fl.IntVar(&f.protocol, "protocol", 0, "pgoutput protocol version 1 or 2 (default: 2 on PostgreSQL 14+)")
	fl.DurationVar(&f.flushPeriod, "flush-interval", time.Second, "longest time output stays buffered (and unacked) under load")
	return c
}

func runStream(ctx context.Context, e *env, f *streamFlags) error {
	enc, err := lineEncoder(f.format)
	if err != nil {
		return err
	}
	cfg := source.Config{
		DSN: f.conn.resolve(e), Slot: f.slot, Publication: f.pub, Tables: f.tables, Create: f.create,
		Transactions: true, Schemas: f.withSchema, ProtocolVersion: f.protocol, InitialSnapshot: f.snapshot,
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
	s, err := source.Open(ctx, cfg)
	if err != nil {
		return err
	}
	out := &ackingWriter{w: bufio.NewWriterSize(e.stdout, 256<<10), s: s, period: f.flushPeriod, last: time.Now()}
	err = pump(ctx, s, out, enc, f.withTx)
	if ferr := out.flushAndAck(); err == nil && ferr != nil {
		err = ferr
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// pump copies events to the writer until the stream ends or ctx is cancelled.
func pump(ctx context.Context, s *source.Stream, out *ackingWriter, enc encode.Encoder, withTx bool) error {
	var buf []byte
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if (ev.Op != event.OpBegin && ev.Op != event.OpCommit) || withTx {
			if buf, err = enc.Encode(buf[:0], ev); err != nil {
				return fmt.Errorf("encoding %s event at %s: %w", ev.Op, ev.LSN, err)
			}
			buf = append(buf, '\n')
			if _, err := out.w.Write(buf); err != nil {
				return fmt.Errorf("writing output: %w", err)
			}
		}
		// A transaction is complete at its commit; a non-transactional
		// message is complete by itself.
		if ev.Op == event.OpCommit || (ev.Op == event.OpMessage && !ev.Message.Transactional) {
			out.complete = ev.CommitLSN
			if s.Buffered() == 0 || time.Since(out.last) >= out.period {
				if err := out.flushAndAck(); err != nil {
					return err
				}
			}
		}
	}
}

// ackingWriter acks a position only after the output holding it was flushed.
type ackingWriter struct {
	w        *bufio.Writer
	s        *source.Stream
	complete event.LSN // commit position of the last complete transaction written
	acked    event.LSN
	period   time.Duration
	last     time.Time
}

func (a *ackingWriter) flushAndAck() error {
	if err := a.w.Flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	a.last = time.Now()
	if a.complete > a.acked {
		if err := a.s.Ack(a.complete); err != nil {
			return err
		}
		a.acked = a.complete
	}
	return nil
}

// newLineWriter buffers output that is flushed at every transaction anyway.
func newLineWriter(w io.Writer) *bufio.Writer { return bufio.NewWriterSize(w, 64<<10) }

// lineEncoder returns the encoder of a text format, one event per line.
func lineEncoder(format string) (encode.Encoder, error) {
	if format == encode.FormatAvro {
		return nil, fmt.Errorf("invalid --format avro: Avro is binary and has no line form; use it in a pipeline sink (pgfeed run)")
	}
	enc, err := encode.New(format, encode.Options{})
	if err != nil {
		return nil, fmt.Errorf("invalid --format %q: want json, wal2json, debezium or cloudevents", format)
	}
	return enc, nil
}
