package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/internal/catalog"
	"github.com/pgfeed/pgfeed/snapshot"
	"github.com/pgfeed/pgfeed/source"
)

// Defaults of Options.
const (
	DefaultSlotPrefix      = "pgfeed_v1_"
	DefaultStreamPrefix    = "pgfeed_v2_"
	DefaultSnapshotHold    = 10 * time.Minute
	DefaultMaxSlots        = 32
	DefaultMaxRows         = 10000
	DefaultMaxStreams      = 64
	DefaultWriteTimeout    = 30 * time.Second
	DefaultPingInterval    = 30 * time.Second
	DefaultMaxFrameBytes   = 4 << 20
	DefaultMaxMessageBytes = 4 << 10
	DefaultMaxUnacked      = 1 << 16
	DefaultSnapshotConns   = 8
)

// Options configure a Server. Every field but DSN has a sensible zero value.
type Options struct {
	// DSN is the database the slots belong to (empty: the PG* variables).
	DSN string
	// Tables are the globs ("schema.table") each new slot's publication
	// covers, now and later (default "*.*", every table, FOR ALL TABLES).
	Tables []string
	// SlotPrefix starts the name of every slot /v1/init creates (default
	// "pgfeed_v1_"). The API serves only slots with this prefix: a client
	// can never stream (and ack away) the slot of another consumer.
	SlotPrefix string
	// StreamPrefix starts the slot name of every v2 stream (default
	// "pgfeed_v2_"); the stream's name follows it.
	StreamPrefix string
	// SnapshotHold is how long a new slot's exported snapshot stays
	// readable by /v1/snapshot/data, unless the slot's stream starts
	// first (default 10m). A held snapshot keeps VACUUM from removing
	// rows deleted since, so it is bounded.
	SnapshotHold time.Duration
	// MaxSlots is how many slots with SlotPrefix may exist at once; /v1/init
	// refuses more (default 32). Each slot retains WAL until it is acked
	// or dropped.
	MaxSlots int
	// MaxRows is the largest limit of one snapshot page (default 10000).
	MaxRows int
	// SnapshotConns bounds the connections reading snapshot pages at once
	// (default 8).
	SnapshotConns int
	// MaxStreams is how many WebSocket streams run at once (default 64).
	MaxStreams int
	// WriteTimeout drops a client that takes longer to take one frame
	// (default 30s). Until then a slow client holds its slot back.
	WriteTimeout time.Duration
	// PingInterval is how often an idle client is pinged; one that does
	// not answer within WriteTimeout is dropped (default 30s).
	PingInterval time.Duration
	// MaxFrameBytes is the size beyond which a wal2json transaction frame
	// is split into several, only the last carrying nextlsn (default 4 MiB).
	MaxFrameBytes int
	// MaxMessageBytes is the largest message a client may send (default
	// 4 KiB; an ack is some 30 bytes).
	MaxMessageBytes int
	// MaxAckDelay drops a client that leaves a frame unacked longer than
	// this (it resumes after its last ack when it reconnects). Zero: never;
	// pgdeltastream clients that never ack keep streaming, bounded by
	// MaxUnacked.
	MaxAckDelay time.Duration
	// MaxUnacked is how many transactions a client may hold sent but not
	// acked; beyond it sending waits for acks (default 65536).
	MaxUnacked int
	// MaxUnackedBytes bounds the bytes of frames a client holds sent and
	// not acked: beyond it sending waits for acks (the slot waits too),
	// and a client that acks nothing for WriteTimeout then is dropped
	// with an error frame (it resumes after its last ack when it
	// reconnects). The transaction being sent is never held back by
	// itself. Zero: no bound but MaxUnacked.
	MaxUnackedBytes int64
	// Encode configures the json, debezium and cloudevents frames.
	Encode encode.Options
	// Tokens, when set, are required of every request (see Token). Without
	// tokens anyone who reaches the listener is served: bind it to
	// loopback.
	Tokens []Token
	// Origins are the host patterns ("app.example.com", "*.example.com",
	// "localhost:3000") of the browser pages that may call the API from
	// another origin: CORS for the HTTP endpoints, the Origin check of the
	// WebSocket. Empty: same origin only.
	Origins []string
	// Logger receives operational messages (default: discarded).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if len(o.Tables) == 0 {
		o.Tables = []string{"*.*"}
	}
	if o.SlotPrefix == "" {
		o.SlotPrefix = DefaultSlotPrefix
	}
	if o.StreamPrefix == "" {
		o.StreamPrefix = DefaultStreamPrefix
	}
	defDur(&o.SnapshotHold, DefaultSnapshotHold)
	def(&o.MaxSlots, DefaultMaxSlots)
	def(&o.MaxRows, DefaultMaxRows)
	def(&o.SnapshotConns, DefaultSnapshotConns)
	def(&o.MaxStreams, DefaultMaxStreams)
	defDur(&o.WriteTimeout, DefaultWriteTimeout)
	defDur(&o.PingInterval, DefaultPingInterval)
	def(&o.MaxFrameBytes, DefaultMaxFrameBytes)
	def(&o.MaxMessageBytes, DefaultMaxMessageBytes)
	def(&o.MaxUnacked, DefaultMaxUnacked)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server serves the v1 API. It is an http.Handler; Close stops its streams
// and releases the snapshots it holds.
type Server struct {
	opts   Options
	log    *slog.Logger
	pool   *pgxpool.Pool // snapshot reads
	types  *catalog.Types
	mux    *http.ServeMux
	tokens []*Token

	ctx    context.Context // cancelled by Close: every session ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // holders and sessions

	mu      sync.Mutex
	slots   map[string]*slot
	named   map[string]*namedStream // v2 streams by name
	defs    *streamStore            // their definitions, kept in the database
	streams int                     // sessions running
	closed  bool

	closeOnce sync.Once
}

// New checks the options and returns a Server. It connects lazily: a
// database that is down makes requests fail, not New.
func New(opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if err := source.CheckSlotName(opts.SlotPrefix + "x"); err != nil {
		return nil, fmt.Errorf("slot prefix %q: use lower-case letters, digits and underscores", opts.SlotPrefix)
	}
	if len(opts.SlotPrefix) > 40 {
		return nil, fmt.Errorf("slot prefix %q is too long: at most 40 characters, so that names fit Postgres's 63", opts.SlotPrefix)
	}
	if err := source.CheckSlotName(opts.StreamPrefix + "x"); err != nil || len(opts.StreamPrefix) > 20 {
		return nil, fmt.Errorf("stream prefix %q: use at most 20 lower-case letters, digits and underscores", opts.StreamPrefix)
	}
	if strings.HasPrefix(opts.StreamPrefix, opts.SlotPrefix) || strings.HasPrefix(opts.SlotPrefix, opts.StreamPrefix) {
		return nil, fmt.Errorf("slot prefix %q and stream prefix %q overlap: v1 slots and v2 streams need prefixes of their own", opts.SlotPrefix, opts.StreamPrefix)
	}
	if err := (&source.Config{DSN: opts.DSN, Tables: opts.Tables}).Validate(); err != nil {
		return nil, err
	}
	connCfg, err := source.ConnConfig(opts.DSN)
	if err != nil {
		return nil, err
	}
	poolCfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("parsing DSN: %w", err)
	}
	poolCfg.ConnConfig = connCfg
	for k, v := range snapshot.SessionSettings {
		poolCfg.ConnConfig.RuntimeParams[k] = v
	}
	poolCfg.ConnConfig.RuntimeParams["application_name"] = "pgfeed serve"
	poolCfg.MaxConns = int32(opts.SnapshotConns)
	poolCfg.MinConns = 0
	poolCfg.MaxConnIdleTime = time.Minute
	pool, err := pgxpool.NewWithConfig(context.Background(), poolCfg)
	if err != nil {
		return nil, fmt.Errorf("creating the snapshot connection pool: %w", err)
	}
	tokens, err := prepareTokens(opts.Tokens)
	if err != nil {
		pool.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		tokens: tokens,
		opts:   opts, log: opts.Logger, pool: pool, types: catalog.NewTypes(),
		ctx: ctx, cancel: cancel, slots: map[string]*slot{}, named: map[string]*namedStream{},
		defs: &streamStore{pool: pool},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/v1/init", s.handleInit)
	s.mux.HandleFunc("/v1/snapshot/data", s.handleSnapshotData)
	s.mux.HandleFunc("/v1/lr/stream", s.handleStream)
	s.mux.HandleFunc("/health", s.handleHealth)
	s.mux.HandleFunc("/v2/streams", s.handleStreams)
	s.mux.HandleFunc("/v2/streams/", s.handleStream2)
	return s, nil
}

// ServeHTTP routes the v1 endpoints. Unknown paths get a JSON 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.cors(w, r) {
		return // a preflight, which carries no token
	}
	r, err := s.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgfeed"`)
		writeError(w, err)
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		writeError(w, errorf(http.StatusNotFound, fmt.Sprintf("no such endpoint %q: use POST /v1/init, POST /v1/snapshot/data, GET /v1/lr/stream or /v2/streams", r.URL.Path)))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Close ends every stream (each confirms its client's last ack to
// PostgreSQL) and releases the held snapshots. Slots stay: their clients
// resume after their last ack when a server serves them again.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.mu.Lock()
		named := make([]*namedStream, 0, len(s.named))
		for _, ns := range s.named {
			named = append(named, ns)
		}
		s.mu.Unlock()
		for _, ns := range named {
			if st := ns.takePending(); st != nil {
				st.Close()
			}
		}
		s.pool.Close()
	})
	return nil
}

// handleHealth answers 200 while the server serves, with the number of
// streams running and snapshots held.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if !method(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	s.mu.Lock()
	streams, slots := s.streams, make([]*slot, 0, len(s.slots))
	for _, sl := range s.slots {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	held := 0
	for _, sl := range slots {
		sl.snapMu.RLock()
		if sl.snap != nil {
			held++
		}
		sl.snapMu.RUnlock()
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "streams": streams, "snapshots_held": held})
}

// newSlotName returns the prefix and 16 random hex digits.
func (s *Server) newSlotName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return s.opts.SlotPrefix + hex.EncodeToString(b[:])
}

// method answers 405 unless r uses one of the methods.
func method(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, errorf(http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, methods[0])))
	return false
}
