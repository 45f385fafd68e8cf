package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/pgfeed/pgfeed/config"
	"github.com/pgfeed/pgfeed/server"
	"github.com/pgfeed/pgfeed/server/stream"
	"github.com/spf13/cobra"
)

type serveFlags struct {
	conn            connFlags
	configPath      string
	listen          string
	tables          []string
	slotPrefix      string
	snapshotHold    time.Duration
	maxSlots        int
	maxRows         int
	maxStreams      int
	maxConns        int
	writeTimeout    time.Duration
	headerTimeout   time.Duration
	idleTimeout     time.Duration
	maxFrame        string
	maxUnackedBytes string
	maxUnacked      int
	tokens          []string
	tlsCert         string
	tlsKey          string
	origins         []string
	streamPrefix    string
	maxAckDelay     time.Duration
}

func newServeCmd(e *env) *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve pgdeltastream's WebSocket change stream and snapshot API",
		Long: `Serve the change stream and snapshot API of pgdeltastream (/v1), for many
clients at once, each with a slot of its own:

  POST /v1/init              a new slot and its exported snapshot: {"slotName": ...}
  POST /v1/snapshot/data     a page of a table's rows in that snapshot
                             {"slotName","table","offset","limit","order_by":{"column","order"},"after":{KEY}}
  GET  /v1/lr/stream?slotName=NAME[&format=wal2json|json|debezium|cloudevents]
                             WebSocket of the slot's changes; ack with {"lsn":"X/Y"}

and the native v2 API of named streams:

  GET /v2/streams, POST /v2/streams {"name","tables":[...],"snapshot":true},
  DELETE /v2/streams/NAME, GET /v2/streams/NAME/ws (json frames by default),
  POST /v2/streams/NAME/backfill {"tables":[...]}

Only acked positions are confirmed to PostgreSQL: a client that reconnects
resumes after its last ack. Without --token the listener must be a loopback
address; with tokens every request needs "Authorization: Bearer TOKEN".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), e, cmd, &f)
		},
	}
	f.conn.register(c)
	fl := c.Flags()
	fl.StringVar(&f.configPath, "config", "", "TOML file whose [serve] section sets these flags (flags on the command line win)")
	fl.StringVar(&f.listen, "listen", "127.0.0.1:12312", "host:port to serve on")
	fl.StringSliceVar(&f.tables, "tables", nil, `tables of each new slot, as globs on schema.table (default "*.*", every table)`)
	fl.StringVar(&f.slotPrefix, "slot-prefix", stream.DefaultSlotPrefix, "prefix of the slots /v1/init creates; only such slots are served")
	fl.DurationVar(&f.snapshotHold, "snapshot-hold", stream.DefaultSnapshotHold, "how long a new slot's snapshot stays readable, unless its stream starts first")
	fl.IntVar(&f.maxSlots, "max-slots", stream.DefaultMaxSlots, "most slots with the prefix at once; /v1/init refuses more")
	fl.IntVar(&f.maxRows, "max-rows", stream.DefaultMaxRows, "largest limit of a snapshot page")
	fl.IntVar(&f.maxStreams, "max-streams", stream.DefaultMaxStreams, "most WebSocket streams at once")
	fl.IntVar(&f.maxConns, "max-conns", 256, "most client connections at once")
	fl.DurationVar(&f.writeTimeout, "write-timeout", stream.DefaultWriteTimeout, "drop a client that takes longer to take one frame")
	fl.DurationVar(&f.headerTimeout, "header-timeout", server.DefaultReadHeaderTimeout, "longest time a client may take to send a request header")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "longest time a keep-alive connection may stay idle between requests")
	fl.StringVar(&f.maxFrame, "max-frame", "4MiB", "size beyond which a transaction's wal2json frame is split")
	fl.IntVar(&f.maxUnacked, "max-unacked", stream.DefaultMaxUnacked, "transactions a client may hold unacked before sending waits")
	fl.StringVar(&f.maxUnackedBytes, "max-unacked-bytes", "0", "bytes of frames a client may hold unacked before sending waits; one that then acks nothing for --write-timeout is dropped (e.g. 64MiB; 0: no bound)")
	fl.StringArrayVar(&f.tokens, "token", nil, `bearer token clients must send, "SECRET" or "SECRET;tables=GLOB,..."; ${NAME} takes it from the environment (repeatable)`)
	fl.StringVar(&f.tlsCert, "tls-cert", "", "certificate file (PEM) to serve HTTPS and WSS")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key file (PEM) of --tls-cert")
	fl.StringVar(&f.streamPrefix, "stream-prefix", stream.DefaultStreamPrefix, "prefix of the slots of /v2/streams (the stream's name follows it)")
	fl.DurationVar(&f.maxAckDelay, "max-ack-delay", 0, "drop a client that leaves a frame unacked longer than this (0: never)")
	fl.StringSliceVar(&f.origins, "origin", nil, `host patterns of browser pages of other origins that may call the API ("app.example.com", "*.example.com")`)
	return c
}

// serveFile is what pgfeed serve reads of a config file: the [serve]
// section, whose keys are the flags' names, and [http] listen, the address
// when [serve] has none. The rest of the file (a pipeline's) is ignored.
type serveFile struct {
	Serve map[string]any `toml:"serve"`
	HTTP  struct {
		Listen string `toml:"listen"`
	} `toml:"http"`
}

// applyServeConfig sets every flag the command line left alone from the
// [serve] section of the file.
func applyServeConfig(cmd *cobra.Command, path string, getenv func(string) string) error {
	var file serveFile
	if _, err := toml.DecodeFile(path, &file); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	if _, ok := file.Serve["listen"]; !ok && file.HTTP.Listen != "" {
		if file.Serve == nil {
			file.Serve = map[string]any{}
		}
		file.Serve["listen"] = file.HTTP.Listen
	}
	for key, v := range file.Serve {
		fl := cmd.Flags().Lookup(key)
		if fl == nil || key == "config" {
			return fmt.Errorf("--config %s: [serve] %s: unknown setting (use the names of pgfeed serve's flags)", path, key)
		}
		if fl.Changed {
			continue
		}
		var vals []string
		switch x := v.(type) {
		case []any:
			for _, item := range x {
				vals = append(vals, fmt.Sprint(item))
			}
		default:
			vals = []string{fmt.Sprint(x)}
		}
		for _, s := range vals {
			var err error
			if key != "token" { // tokens expand later, with their flag's rules
				if s, err = expandEnv(s, getenv); err != nil {
					return fmt.Errorf("--config %s: [serve] %s: %w", path, key, err)
				}
			}
			if err := fl.Value.Set(s); err != nil {
				return fmt.Errorf("--config %s: [serve] %s: %w", path, key, err)
			}
		}
	}
	return nil
}

// expandEnv replaces ${NAME} with the variable's value; an unset variable
// is an error, so that a token never silently becomes empty.
func expandEnv(s string, getenv func(string) string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed \"${\" in %q", s)
		}
		name := s[i+2 : i+end]
		v := getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

// parseToken reads "SECRET" or "SECRET;tables=GLOB,...".
func parseToken(s string, getenv func(string) string) (stream.Token, error) {
	var tok stream.Token
	secret, tables, scoped := strings.Cut(s, ";tables=")
	secret, err := expandEnv(secret, getenv)
	if err != nil {
		return tok, err
	}
	tok.Secret = secret
	if scoped {
		for _, g := range strings.Split(tables, ",") {
			if g = strings.TrimSpace(g); g != "" {
				tok.Tables = append(tok.Tables, g)
			}
		}
		if len(tok.Tables) == 0 {
			return tok, errors.New(`";tables=" names no table: list globs such as public.orders,app.*`)
		}
	}
	return tok, nil
}

// isLoopback reports whether a listen address accepts only local clients.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func runServe(ctx context.Context, e *env, cmd *cobra.Command, f *serveFlags) error {
	if f.configPath != "" {
		if err := applyServeConfig(cmd, f.configPath, e.getenv); err != nil {
			return err
		}
	}
	maxFrame, err := config.ParseSize(f.maxFrame)
	if err != nil || maxFrame <= 0 || maxFrame > 1<<30 {
		return fmt.Errorf("--max-frame %q: give a size from 1KiB to 1GiB (4MiB, 512KiB)", f.maxFrame)
	}
	var tokens []stream.Token
	for i, s := range f.tokens {
		tok, err := parseToken(s, e.getenv)
		if err != nil {
			return fmt.Errorf("--token %d: %w", i+1, err)
		}
		tokens = append(tokens, tok)
	}
	if len(tokens) == 0 && !isLoopback(f.listen) {
		return fmt.Errorf("--listen %s is not a loopback address, and without --token anyone who reaches it could read the database: add --token, or listen on 127.0.0.1", f.listen)
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together: give both, or neither")
	}
	maxUnackedBytes, err := config.ParseSize(f.maxUnackedBytes)
	if err != nil || maxUnackedBytes < 0 {
		return fmt.Errorf("--max-unacked-bytes %q: give a size (64MiB, 512KiB), or 0 for no bound", f.maxUnackedBytes)
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"--max-slots", f.maxSlots}, {"--max-rows", f.maxRows}, {"--max-streams", f.maxStreams}, {"--max-conns", f.maxConns}, {"--max-unacked", f.maxUnacked}} {
		if v.n <= 0 {
			return fmt.Errorf("%s %d: give a positive number", v.name, v.n)
		}
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"--snapshot-hold", f.snapshotHold}, {"--write-timeout", f.writeTimeout}, {"--header-timeout", f.headerTimeout}, {"--idle-timeout", f.idleTimeout}} {
		if v.d <= 0 {
			return fmt.Errorf("%s %s: give a positive duration (30s, 5m)", v.name, v.d)
		}
	}
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := stream.New(stream.Options{
		DSN: f.conn.resolve(e), Tables: f.tables, SlotPrefix: f.slotPrefix, SnapshotHold: f.snapshotHold,
		MaxSlots: f.maxSlots, MaxRows: f.maxRows, MaxStreams: f.maxStreams, WriteTimeout: f.writeTimeout,
		MaxFrameBytes: int(maxFrame), MaxUnacked: f.maxUnacked, Tokens: tokens, Origins: f.origins, Logger: log,
		StreamPrefix: f.streamPrefix, MaxAckDelay: f.maxAckDelay, MaxUnackedBytes: maxUnackedBytes,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	var tlsCfg *tls.Config
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", f.listen, err)
	}
	scheme := "http"
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	// Snapshot pages can be large: the write timeout covers a whole
	// response, and WebSocket sessions clear it for themselves.
	hs := server.NewHTTPServer(srv, server.ServeOptions{
		MaxConns: f.maxConns, ReadHeaderTimeout: f.headerTimeout, ReadTimeout: time.Minute,
		WriteTimeout: 10 * time.Minute, IdleTimeout: f.idleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	})
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	fmt.Fprintf(e.stderr, "pgfeed serve: listening on %s://%s (POST /v1/init, POST /v1/snapshot/data, GET /v1/lr/stream, /v2/streams)\n", scheme, ln.Addr())
	select {
	case err := <-done:
		return fmt.Errorf("serving on %s: %w", f.listen, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	<-done
	if err := srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
