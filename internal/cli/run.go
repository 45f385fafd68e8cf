package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/pgfeed/pgfeed/checkpoint"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/pipeline"
	"github.com/pgfeed/pgfeed/server"
	"github.com/pgfeed/pgfeed/source"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

func newRunCmd(e *env) *cobra.Command {
	var path, endpos string
	var check, resnapshot bool
	c := &cobra.Command{
		Use:   "run",
		Short: "Run the pipelines of a TOML file: sources to sinks, with durable checkpoints",
		Long: `Run the pipelines of a TOML file (see config/example.toml): PostgreSQL sources feed
sinks through routing and encoders. Each sink's durable position is kept in the
checkpoint store; a source confirms to PostgreSQL only what every sink made durable.
SIGTERM or Ctrl-C stops cleanly: queued events are written and acked, exit code 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// --check runs every check that run runs before it connects,
			// through the same functions, so that a file it passes is not
			// refused by run.
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			var end event.LSN
			if endpos != "" {
				if end, err = event.ParseLSN(endpos); err != nil {
					return fmt.Errorf("--endpos: %w", err)
				}
			}
			if err := pipeline.Check(cfg); err != nil {
				return err
			}
			if check {
				fmt.Fprintf(e.stdout, "%s: ok (%d sources, %d sinks)\n", path, len(cfg.Sources), len(cfg.Sinks))
				return nil
			}
			return runPipeline(cmd.Context(), e, cfg, runOptions{endpos: end, resnapshot: resnapshot})
		},
	}
	c.Flags().StringVar(&path, "config", "pgfeed.toml", "the pipeline's TOML file")
	c.Flags().BoolVar(&check, "check", false, "validate the file and exit")
	c.Flags().BoolVar(&resnapshot, "resnapshot", false, "start every source over: drop its slot and checkpoints, create the slot again and read every row (after a lost slot or a move to another server)")
	c.Flags().StringVar(&endpos, "endpos", "", "stop every source once this LSN is reached (for benchmarks and tests)")
	return c
}

func newReplayCmd(e *env) *cobra.Command {
	var path, from, sourceName string
	var sinks []string
	c := &cobra.Command{
		Use:   "replay --from LSN",
		Short: "Send again everything from a position still retained by the slot (see retain), then keep running",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lsn, err := event.ParseLSN(from)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			return runPipeline(cmd.Context(), e, cfg, runOptions{replay: &replay{from: lsn, source: sourceName, sinks: sinks}})
		},
	}
	c.Flags().StringVar(&path, "config", "pgfeed.toml", "the pipeline's TOML file")
	c.Flags().StringVar(&from, "from", "", "first commit position to send again (required)")
	c.Flags().StringVar(&sourceName, "source", "", "the source to replay (default: the only one)")
	c.Flags().StringSliceVar(&sinks, "sinks", nil, "sinks to replay to (default: every sink of the source)")
	_ = c.MarkFlagRequired("from")
	return c
}

type replay struct {
	from   event.LSN
	source string
	sinks  []string
}

func newLogger(e *env, l config.Log) *slog.Logger {
	e.logs.runLevel.Set(l.Level)
	opts := &slog.HandlerOptions{Level: &e.logs.runLevel}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.logs.writer(e.stderr), opts))
	}
	return slog.New(slog.NewTextHandler(e.logs.writer(e.stderr), opts))
}

// runOptions are what run and replay add to the config.
type runOptions struct {
	replay     *replay
	endpos     event.LSN
	resnapshot bool
}

func runPipeline(ctx context.Context, e *env, cfg *config.Config, opts runOptions) error {
	rp := opts.replay
	log := e.runLogger(cfg.Log)
	// The port is taken first: a second pgfeed started with the same file
	// fails here with one clear line, before it waits on the checkpoint
	// store's lock or touches a slot.
	var ln net.Listener
	if cfg.HTTP.Listen != "" {
		var err error
		if ln, err = listenHTTP(cfg.HTTP.Listen); err != nil {
			return err
		}
		defer ln.Close() // for the early returns; Shutdown closes it otherwise
	}
	// A standby waits here, before it opens anything that the leader
	// writes: the checkpoints, the slot, the sinks.
	held, err := takeLease(ctx, cfg, log)
	if err != nil || (held == nil && cfg.HA.Lease != "") {
		return err // nil: stopped while waiting as standby
	}
	if held != nil {
		defer held.Release()
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	if rp != nil {
		if err := rewind(ctx, cfg, store, rp); err != nil {
			return err
		}
	}
	p, err := pipeline.FromConfig(cfg, store, log)
	if err != nil {
		return err
	}
	for i := range p.Sources {
		p.Sources[i].Stream.EndLSN = opts.endpos
	}
	if opts.resnapshot {
		if err := startOver(ctx, p, store, log); err != nil {
			p.CloseSinks()
			return err
		}
	}
	log.Info("pgfeed run starting", "sources", len(p.Sources), "sinks", len(p.Sinks), "checkpoint", cfg.Checkpoint, "lease", cfg.HA.Lease != "")
	g, gctx := errgroup.WithContext(ctx)
	stopHTTP := func() {}
	if ln != nil {
		if stopHTTP, err = serveAdmin(g, ln, p.Status, log, &e.logs.runLevel, cfg.HTTP.Token, p.HTTPHandlers); err != nil {
			p.CloseSinks()
			return err
		}
	}
	runCtx, stopRun := context.WithCancel(gctx)
	defer stopRun()
	if held != nil {
		// A leader whose lock connection failed may no longer hold the
		// lock, and a standby may be streaming already: stop at once.
		go func() {
			select {
			case <-held.Lost():
				stopRun()
			case <-runCtx.Done():
			}
		}()
	}
	g.Go(func() error {
		// The admin API outlives the pipeline's drain, so /status shows the
		// sources stopping; it goes once the pipeline has stopped.
		defer stopHTTP()
		return p.Run(runCtx)
	})
	err = g.Wait()
	if held != nil && held.Err() != nil {
		return &source.UserError{Msg: fmt.Sprintf("%v; stopped streaming (start pgfeed again to wait as standby)", held.Err()), Err: held.Err()}
	}
	if err != nil {
		return err
	}
	log.Info("pgfeed run stopped cleanly")
	return nil
}

// httpShutdownTimeout bounds how long a stopping pgfeed waits for admin
// requests in flight (a slow scrape) before closing their connections.
const httpShutdownTimeout = 5 * time.Second

// listenHTTP takes the [http] listen address, turning the usual failures
// into one line that names the setting.
func listenHTTP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	// The innermost error is the system's own words ("address already in
	// use", "permission denied"); the layers above repeat the address.
	cause := err
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		cause = sysErr.Err
	}
	msg := fmt.Sprintf("http.listen %s: %v", addr, cause)
	if errors.Is(err, syscall.EADDRINUSE) {
		msg += " (another process serves that port: stop it or change [http] listen)"
	}
	return nil, &source.UserError{Msg: msg, Err: err}
}

// serveAdmin serves the admin API on ln in g and returns the function that
// shuts it down gracefully. A server that fails while the pipeline runs
// fails the run: monitoring that silently went away is worse than a
// restart.
func serveAdmin(g *errgroup.Group, ln net.Listener, status func() pipeline.Status, log *slog.Logger, level *slog.LevelVar, token string, sinks map[string]http.Handler) (stop func(), err error) {
	h, err := server.NewAdmin(status, server.AdminOptions{
		Logger: log, Level: level, Token: token, Loopback: server.IsLoopback(ln.Addr().String()),
	})
	if err != nil {
		return nil, err
	}
	if len(sinks) > 0 {
		// The endpoints of websocket sinks beside the admin API, which
		// answers every other path itself.
		mux := http.NewServeMux()
		for path, sh := range sinks {
			mux.Handle(path, sh)
		}
		mux.Handle("/", h)
		h = mux
	}
	// Bounded connections and the server package's timeouts: idle
	// keep-alive clients can neither exhaust file descriptors nor stall a
	// scraper that reconnects.
	srv := server.NewHTTPServer(h, server.ServeOptions{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	addr := ln.Addr().String()
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving http on %s: %w", addr, err)
		}
		return nil
	})
	log.Info("http admin API listening", "addr", addr, "endpoints", "/health /status /stats /metrics /debug/on /debug/off /debug/pprof/")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("http admin API: shutting down", "err", err)
			srv.Close()
		}
	}, nil
}

// startOver makes every source begin anew: its slot dropped (a lost or
// foreign one is no use), what the checkpoint holds for it forgotten, and
// an initial snapshot read from the new slot.
func startOver(ctx context.Context, p *pipeline.Pipeline, store checkpoint.Storage, log *slog.Logger) error {
	for i := range p.Sources {
		src := &p.Sources[i]
		db, err := source.Connect(ctx, src.Stream.DSN)
		if err != nil {
			return err
		}
		_, err = db.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", src.Stream.Slot)
		if err == nil {
			err = source.ForgetSnapshot(ctx, db, src.Stream.Slot)
		}
		db.Close(context.Background())
		if err != nil {
			return &source.UserError{Msg: fmt.Sprintf("--resnapshot: dropping slot %q of source %s: %v (stop whatever streams from it)", src.Stream.Slot, src.Name, err), Err: err}
		}
		if err := store.ForgetSource(src.Name); err != nil {
			return fmt.Errorf("--resnapshot: %w", err)
		}
		src.Snapshot = true
		src.Stream.Create = true
		log.Warn("starting over: slot and checkpoints dropped, every row is read again", "source", src.Name, "slot", src.Stream.Slot)
	}
	return nil
}

// rewind moves the checkpoints of the replayed sinks back before rp.from,
// after checking that the slot still retains that position.
func rewind(ctx context.Context, cfg *config.Config, store checkpoint.Storage, rp *replay) error {
	src := cfg.Source(rp.source)
	if rp.source == "" && len(cfg.Sources) == 1 {
		src = cfg.Sources[0]
	}
	if src == nil {
		return fmt.Errorf("--source: name one of the config's sources")
	}
	pgs, ok := src.Settings.(*config.PostgresSource)
	if !ok {
		return fmt.Errorf("--source %s: only postgres sources can replay", src.Name)
	}
	db, err := source.Connect(ctx, pgs.DSN)
	if err != nil {
		return err
	}
	defer db.Close(context.Background())
	var confirmed *string
	err = db.QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1", pgs.Slot).Scan(&confirmed)
	if err != nil || confirmed == nil {
		return &source.UserError{Msg: fmt.Sprintf("replay: slot %q of source %s does not exist", pgs.Slot, src.Name), Err: err}
	}
	start, _ := event.ParseLSN(*confirmed)
	if rp.from < start {
		return &source.UserError{Msg: fmt.Sprintf("replay: %s is no longer retained: slot %q starts at %s; set retain on the source to keep a longer window", rp.from, pgs.Slot, start)}
	}
	sinks := rp.sinks
	if len(sinks) == 0 {
		for _, k := range cfg.SinksOf(src.Name) {
			sinks = append(sinks, k.Name)
		}
	}
	// Every sink is checked before any is rewound.
	for _, name := range sinks {
		k := cfg.Sink(name)
		if k == nil {
			return fmt.Errorf("--sinks: unknown sink %q", name)
		}
		if ks, ok := k.Settings.(*config.KafkaSink); ok && ks.Transactional {
			// Its position is in Kafka and wins over the checkpoint: it
			// would skip everything it holds, which is the point of it.
			return &source.UserError{Msg: fmt.Sprintf("replay: sink %s is exactly-once (transactional): Kafka holds its position and it never writes a change twice; leave it out with --sinks, and let its consumers seek back instead", name)}
		}
		// Moving a checkpoint forward would skip what lies in between.
		durable, _, err := store.Position(src.Name, name)
		if err != nil {
			return fmt.Errorf("reading the checkpoint of sink %s: %w", name, err)
		}
		if rp.from-1 > durable {
			return &source.UserError{Msg: fmt.Sprintf("replay: --from %s is beyond what sink %s has received (everything up to %s): moving its checkpoint there would skip the changes in between; give a position at or before %s", rp.from, name, durable, durable)}
		}
	}
	for _, name := range sinks {
		if err := store.SetPosition(src.Name, name, rp.from-1); err != nil {
			return fmt.Errorf("rewinding sink %s: %w", name, err)
		}
	}
	return nil
}
