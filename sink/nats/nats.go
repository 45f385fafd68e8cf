package nats

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgfeed/pgfeed/sink"
)

// Headers set on every message, beside Nats-Msg-Id.
const (
	HeaderOp     = "Pgfeed-Op"     // insert, update, delete, truncate, message, read, schema
	HeaderSchema = "Pgfeed-Schema" // the event's table, absent for events of no table
	HeaderTable  = "Pgfeed-Table"
	HeaderLSN    = "Pgfeed-Lsn"        // the event's own position
	HeaderCommit = "Pgfeed-Commit-Lsn" // its transaction's commit position
	HeaderKey    = "Pgfeed-Key"        // the encoded primary key, when the table has one
)

// Defaults of Options left zero.
const (
	DefaultConnectTimeout  = 5 * time.Second
	DefaultAckTimeout      = 30 * time.Second
	DefaultDuplicateWindow = 2 * time.Minute
	defaultMaxPending      = 1 << 14
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("nats sink is closed")

// ErrDisconnected fails a Write while the connection to the server is down;
// the client reconnects in the background.
var ErrDisconnected = errors.New("not connected to the server (reconnecting)")

// Options configure a Sink. Only URL is required; the zero value of the
// rest publishes to JetStream and checks at Open that a stream captures
// every subject of Subjects.
type Options struct {
	// URL is the server, nats://host:port (tls:// for TLS), or several
	// separated by commas. User and password may be in the URL.
	URL string
	// Name is the connection's name on the server (monitoring); "pgfeed"
	// when empty.
	Name string

	// Credentials: at most one of User/Password, Token, CredsFile,
	// NKeySeedFile.
	User, Password string
	Token          string
	CredsFile      string // a .creds file (JWT and NKey seed) of an operator-mode account
	NKeySeedFile   string // a file holding an NKey user seed ("SU..."), for a server's nkey users
	// TLS, when not nil, makes the connection TLS with this configuration
	// (CAs, client certificate for mutual TLS, server name).
	TLS *tls.Config

	// Core publishes with core NATS instead of JetStream: Write returns once
	// the server has received the messages (a round trip), which only means
	// they reached the subscribers connected at that moment. Nothing is
	// stored and nothing is deduplicated: at-most-once delivery.
	Core bool

	// Subjects are NATS subject filters (wildcards allowed) that cover
	// every subject the sink publishes to. At Open, each must be captured
	// by a stream (a core sink ignores them); they are the subjects of the
	// stream CreateStream creates.
	Subjects []string
	// Stream names the JetStream stream the sink writes to. Open fails when
	// it does not exist, unless CreateStream is set. When empty, Open only
	// checks that some stream captures each of Subjects.
	Stream string
	// CreateStream creates Stream when it is missing, with the settings
	// below. An existing stream is used as it is, never altered.
	CreateStream bool
	// DuplicateWindow is how long the created stream remembers message ids
	// to drop redeliveries (DefaultDuplicateWindow when zero). An event
	// redelivered later than this after its first write (pgfeed down for
	// longer) is stored twice, with the same Nats-Msg-Id for consumers to
	// dedupe on.
	DuplicateWindow time.Duration
	Storage         jetstream.StorageType // file (the default) or memory
	Replicas        int                   // 1 when zero
	MaxAge          time.Duration         // keep messages this long; 0: no limit
	MaxBytes        int64                 // keep this many bytes at most; 0: no limit

	// ConnectTimeout bounds connecting (DefaultConnectTimeout when zero).
	ConnectTimeout time.Duration
	// AckTimeout bounds the wait for each acknowledgement (DefaultAckTimeout
	// when zero); an unacknowledged message fails the Write.
	AckTimeout time.Duration
	// Logger gets disconnects and reconnects; nil discards them.
	Logger *slog.Logger
}

// Sink publishes records to NATS. It is safe for concurrent use; writes are
// serialized, so that each Write's messages are published in batch order.
type Sink struct {
	opts Options
	nc   *natsgo.Conn
	js   jetstream.JetStream

	mu      sync.Mutex
	closed  bool
	futures []jetstream.PubAckFuture
}

var _ sink.Sink = (*Sink)(nil)

// Open connects to the server and, for JetStream, checks (or creates) the
// stream. Its errors are one line that names the cause: the server is
// unreachable, the credentials were refused, JetStream is off, the stream
// is missing.
func Open(ctx context.Context, opts Options) (*Sink, error) {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.DuplicateWindow <= 0 {
		opts.DuplicateWindow = DefaultDuplicateWindow
	}
	if opts.Name == "" {
		opts.Name = "pgfeed"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	no := []natsgo.Option{
		natsgo.Name(opts.Name),
		natsgo.Timeout(opts.ConnectTimeout),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		// No buffering while reconnecting: a publish then fails at once.
		// Buffered messages would be sent after the reconnect while the
		// ones lost with the old connection are not, which leaves a hole
		// that the redelivery of the failed batch fills out of order.
		natsgo.ReconnectBufSize(-1),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("nats: disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(c *natsgo.Conn) { log.Info("nats: reconnected", "server", c.ConnectedUrlRedacted()) }),
	}
	switch {
	case opts.User != "":
		no = append(no, natsgo.UserInfo(opts.User, opts.Password))
	case opts.Token != "":
		no = append(no, natsgo.Token(opts.Token))
	case opts.CredsFile != "":
		no = append(no, natsgo.UserCredentials(opts.CredsFile))
	case opts.NKeySeedFile != "":
		// Read here, not at connect, so that a bad file is its own error
		// rather than an authentication failure.
		o, err := natsgo.NkeyOptionFromSeed(opts.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("reading the NKey seed file %s: %w", opts.NKeySeedFile, oneLine(err))
		}
		no = append(no, o)
	}
	if opts.TLS != nil {
		no = append(no, natsgo.Secure(opts.TLS))
	}
	nc, err := natsgo.Connect(opts.URL, no...)
	if err != nil {
		return nil, connectError(opts.URL, err)
	}
	s := &Sink{opts: opts, nc: nc}
	if !opts.Core {
		if err := s.openJetStream(ctx); err != nil {
			nc.Close()
			return nil, err
		}
	}
	return s, nil
}

func connectError(url string, err error) error {
	where := redact(url)
	switch {
	case errors.Is(err, natsgo.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"):
		return fmt.Errorf("connecting to NATS at %s: authentication failed (check user and password, token, creds or nkey): %w", where, err)
	case errors.Is(err, natsgo.ErrNoServers):
		return fmt.Errorf("connecting to NATS at %s: no server reachable (is nats-server running there?): %w", where, err)
	}
	return fmt.Errorf("connecting to NATS at %s: %w", where, err)
}

// oneLine keeps the first line of an error: the NKey parser quotes the
// file it could not read.
func oneLine(err error) error {
	if msg, _, cut := strings.Cut(err.Error(), "\n"); cut {
		return errors.New(msg)
	}
	return err
}

// redact drops passwords from URLs for messages.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				parts[i] = u[:scheme+3] + "***@" + u[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

func (s *Sink) openJetStream(ctx context.Context) error {
	js, err := jetstream.New(s.nc,
		jetstream.WithPublishAsyncMaxPending(defaultMaxPending),
		jetstream.WithPublishAsyncTimeout(s.opts.AckTimeout))
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	s.js = js
	ctx, cancel := context.WithTimeout(ctx, s.opts.ConnectTimeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			return fmt.Errorf("NATS at %s: JetStream is not enabled (start nats-server with -js, or publish with core NATS: jetstream = false): %w", redact(s.opts.URL), err)
		}
		return fmt.Errorf("reading JetStream account of NATS at %s: %w", redact(s.opts.URL), err)
	}
	if s.opts.Stream == "" {
		for _, subj := range s.opts.Subjects {
			if _, err := js.StreamNameBySubject(ctx, subj); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("no JetStream stream captures subject %q: create one, or set stream and create_stream = true", subj)
				}
				return fmt.Errorf("looking up the stream of subject %q: %w", subj, err)
			}
		}
		return nil
	}
	_, err = js.Stream(ctx, s.opts.Stream)
	switch {
	case err == nil:
		return s.checkCaptured(ctx)
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("reading JetStream stream %q: %w", s.opts.Stream, err)
	case !s.opts.CreateStream:
		return fmt.Errorf("JetStream stream %q does not exist: create it, or set create_stream = true", s.opts.Stream)
	}
	cfg := jetstream.StreamConfig{
		Name:       s.opts.Stream,
		Subjects:   s.opts.Subjects,
		Duplicates: s.opts.DuplicateWindow,
		Storage:    s.opts.Storage,
		Replicas:   max(s.opts.Replicas, 1),
		MaxAge:     s.opts.MaxAge,
		MaxBytes:   s.opts.MaxBytes,
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating JetStream stream %q for subjects %s: %w", s.opts.Stream, strings.Join(s.opts.Subjects, ", "), err)
	}
	return nil
}

// checkCaptured checks that the named stream is the one that captures each
// subject filter: a stream made by hand for other subjects would make every
// Write fail with no responders, or store the events in another stream.
func (s *Sink) checkCaptured(ctx context.Context) error {
	for _, subj := range s.opts.Subjects {
		name, err := s.js.StreamNameBySubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("JetStream stream %q does not capture subject %q: add it to the stream's subjects, or set stream_subjects", s.opts.Stream, subj)
		case err != nil:
			return fmt.Errorf("looking up the stream of subject %q: %w", subj, err)
		case name != s.opts.Stream:
			return fmt.Errorf("subject %q goes to JetStream stream %q, not to stream %q", subj, name, s.opts.Stream)
		}
	}
	return nil
}

// Write publishes the batch in order and returns once the server has
// acknowledged every message: stored by its stream (a duplicate that the
// stream dropped counts as stored), or, for a core sink, received. The
// first failure fails the Write; messages published before it may be in
// the stream, and their redelivery is dropped as duplicates.
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publishing to NATS: %w", err)
	}
	if len(batch) == 0 {
		return nil
	}
	if !s.nc.IsConnected() {
		return fmt.Errorf("publishing to NATS at %s: %w", redact(s.opts.URL), ErrDisconnected)
	}
	if s.opts.Core {
		return s.writeCore(ctx, batch)
	}
	futures := s.futures[:0]
	defer func() { clear(futures); s.futures = futures[:0] }()
	for i := range batch {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("publishing to NATS: %w", err)
		}
		msg, err := message(&batch[i])
		if err != nil {
			return fmt.Errorf("publishing record %d of the batch: %w", i, err)
		}
		// No retries on "no responders" inside the client: it resends a
		// message later, after the ones that follow it.
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(sink.Identity(batch[i])),
			jetstream.WithRetryAttempts(0), jetstream.WithStallWait(s.opts.AckTimeout))
		if err != nil {
			if errors.Is(err, natsgo.ErrReconnectBufExceeded) {
				err = ErrDisconnected // what the buffer that is off means here
			}
			return fmt.Errorf("publishing to subject %q: %w", msg.Subject, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				return fmt.Errorf("publishing to subject %q: no JetStream stream captures it (or the server is not ready): %w", batch[i].Topic, err)
			}
			return fmt.Errorf("publishing to subject %q: %w", batch[i].Topic, err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for JetStream acknowledgements: %w", ctx.Err())
		}
	}
	return nil
}

func (s *Sink) writeCore(ctx context.Context, batch []sink.Record) error {
	for i := range batch {
		msg, err := message(&batch[i])
		if err != nil {
			return fmt.Errorf("publishing record %d of the batch: %w", i, err)
		}
		msg.Header.Set(jetstream.MsgIDHeader, sink.Identity(batch[i]))
		if err := s.nc.PublishMsg(msg); err != nil {
			if errors.Is(err, natsgo.ErrReconnectBufExceeded) {
				err = ErrDisconnected
			}
			return fmt.Errorf("publishing to subject %q: %w", msg.Subject, err)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.AckTimeout)
		defer cancel()
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flushing to NATS: %w", err)
	}
	return nil
}

// message builds the NATS message of a record. The data is the record's
// value as it is: the client copies it into its buffer when publishing.
func message(r *sink.Record) (*natsgo.Msg, error) {
	if err := checkSubject(r.Topic); err != nil {
		return nil, err
	}
	msg := &natsgo.Msg{Subject: r.Topic, Data: r.Value, Header: natsgo.Header{}}
	if e := r.Event; e != nil {
		msg.Header.Set(HeaderOp, e.Op.String())
		if e.Schema != "" || e.Table != "" {
			msg.Header.Set(HeaderSchema, e.Schema)
			msg.Header.Set(HeaderTable, e.Table)
		}
		msg.Header.Set(HeaderLSN, e.LSN.String())
		msg.Header.Set(HeaderCommit, e.CommitLSN.String())
	}
	if len(r.Key) > 0 {
		msg.Header.Set(HeaderKey, string(r.Key))
	}
	return msg, nil
}

// checkSubject refuses what NATS would not deliver as one subject: empty
// tokens, white space and wildcard tokens. Such a subject comes from a
// table name routed into it (spaces, dots, "*"): such a table needs a
// route of its own.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("empty subject")
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return fmt.Errorf("%q is not a NATS subject one can publish to (an empty or wildcard token): give its table a route of its own ([sinks.NAME.route.tables])", s)
		}
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%q is not a NATS subject (white space or a control character): give its table a route of its own ([sinks.NAME.route.tables])", s)
	}
	return nil
}

// Close closes the connection. Every Write that returned nil is already
// acknowledged, so nothing is lost; Close is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.nc.Close()
	return nil
}
