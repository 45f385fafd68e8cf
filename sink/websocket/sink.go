package websocket

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/wsproto"
	"github.com/pgfeed/pgfeed/sink"
)

// Defaults of Options.
const (
	DefaultMaxLagRecords = 10000
	DefaultMaxLagBytes   = 16 << 20
	DefaultAckTimeout    = 30 * time.Second
	DefaultWriteTimeout  = 10 * time.Second
	DefaultPingInterval  = 30 * time.Second
)

// maxAckBytes bounds a client's message: an ack is some 30 bytes.
const maxAckBytes = 4 << 10

// Options configure a Sink. The zero value serves loopback clients with
// the defaults above.
type Options struct {
	// Token is the bearer token clients present; empty: only loopback
	// clients are served.
	Token string
	// Binary sends frames as binary messages (a binary format, Avro).
	Binary bool
	// MaxLagRecords and MaxLagBytes bound what one client holds sent and
	// unacked (a single record larger than MaxLagBytes is still sent).
	MaxLagRecords int
	MaxLagBytes   int64
	// AckTimeout drops a client that acks nothing this long while it holds
	// frames unacked.
	AckTimeout time.Duration
	// WriteTimeout drops a client that takes longer to take one frame.
	WriteTimeout time.Duration
	// PingInterval is how often an idle client is pinged.
	PingInterval time.Duration
	Logger       *slog.Logger
}

// Sink serves records to WebSocket clients; its Handler is the endpoint.
type Sink struct {
	opts     Options
	log      *slog.Logger
	tokenSum [32]byte

	writeMu sync.Mutex // one batch in flight: Writes of several sources take turns

	mu      sync.Mutex
	clients map[*client]struct{}
	batch   *pending      // the batch in flight, nil between Writes
	seq     uint64        // of the newest batch
	changed chan struct{} // closed (and replaced) when anything above changes
	closed  bool
	srv     *http.Server // when the sink listens on its own
}

// pending is a batch in flight.
type pending struct {
	seq     uint64
	records []sink.Record
	pos     []event.LSN // each record's position: its commit LSN
}

// New returns a sink with no client yet.
func New(opts Options) *Sink {
	if opts.MaxLagRecords <= 0 {
		opts.MaxLagRecords = DefaultMaxLagRecords
	}
	if opts.MaxLagBytes <= 0 {
		opts.MaxLagBytes = DefaultMaxLagBytes
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = DefaultPingInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{opts: opts, log: log, clients: map[*client]struct{}{}, changed: make(chan struct{})}
	s.tokenSum = sha256.Sum256([]byte(opts.Token))
	return s
}

// Listen serves the sink's Handler at path on a listener of its own, until
// Close.
func (s *Sink) Listen(addr, path string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(path, s)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("websocket sink: serving", "addr", addr, "err", err)
		}
	}()
	s.log.Info("websocket sink listening", "addr", ln.Addr().String(), "path", path)
	return nil
}

// notifyLocked wakes every waiter on s.changed. s.mu is held.
func (s *Sink) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Write sends the batch to every client and returns once each acked it
// (and at least one did); see the package doc.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("websocket sink closed")
	}
	if len(batch) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	p := &pending{records: batch, pos: make([]event.LSN, len(batch))}
	for i := range batch {
		p.pos[i] = position(batch[i].Event)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("websocket sink closed")
	}
	s.seq++
	p.seq = s.seq
	s.batch = p
	s.notifyLocked()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.batch == p {
			s.batch = nil
		}
		s.mu.Unlock()
	}()
	waiting := false
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return errors.New("websocket sink closed")
		}
		done := len(s.clients) > 0
		for c := range s.clients {
			if !c.holdsAll(p.seq) {
				done = false
				break
			}
		}
		ch, n := s.changed, len(s.clients)
		s.mu.Unlock()
		if done {
			return nil
		}
		if n == 0 && !waiting {
			s.log.Warn("websocket sink: no client connected; the pipeline waits until one connects and acks (nothing is lost)")
		}
		waiting = n == 0
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// position is what a client acks of e: its commit LSN, or for an event
// outside a transaction (a snapshot read, a logical message) its own.
func position(e *event.Event) event.LSN {
	if e == nil {
		return 0
	}
	if e.CommitLSN != 0 {
		return e.CommitLSN
	}
	return e.LSN
}

// Close drops every client and ends a pending Write.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.srv
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.notifyLocked()
	s.mu.Unlock()
	for _, c := range clients {
		c.drop(websocket.StatusGoingAway, "pgfeed is stopping: reconnect to receive again what you did not ack")
	}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	return nil
}

// Clients is how many clients are connected.
func (s *Sink) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// ServeHTTP is the endpoint: a WebSocket of the records.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"this endpoint is a WebSocket: connect with a WebSocket client"}` + "\n"))
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxAckBytes)
	// Refusals come as error frames: a browser sees those, not a 401.
	if msg := s.refusal(r); msg != "" {
		wsproto.Fail(conn, s.opts.WriteTimeout, websocket.StatusPolicyViolation, msg)
		return
	}
	c := newClient(s, conn, r.RemoteAddr)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		wsproto.Fail(conn, s.opts.WriteTimeout, websocket.StatusGoingAway, "pgfeed is stopping: reconnect later")
		return
	}
	s.clients[c] = struct{}{}
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("websocket sink: client connected", "remote", r.RemoteAddr)
	err = c.run()
	s.mu.Lock()
	delete(s.clients, c)
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info("websocket sink: client gone", "remote", r.RemoteAddr, "reason", err)
}

// refusal says why r may not connect ("" when it may).
func (s *Sink) refusal(r *http.Request) string {
	if s.opts.Token == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return "this endpoint serves only loopback clients without a token: set http.token and connect with Authorization: Bearer TOKEN"
		}
		return ""
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		secret, ok = r.URL.Query().Get("access_token"), r.URL.Query().Has("access_token")
	}
	if !ok || secret == "" {
		return "missing bearer token: send Authorization: Bearer TOKEN (the http.token of the config)"
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) != 1 {
		return "invalid bearer token: check the http.token of the config"
	}
	return ""
}
