package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/wsproto"
	"github.com/pgfeed/pgfeed/source"
	"golang.org/x/sync/errgroup"
)

// handleStream is GET /v1/lr/stream?slotName=...[&format=...]: the
// WebSocket of a slot's changes. Problems after the handshake (an unknown
// slot, a slot in use, a stream that fails) come as an error frame,
// {"error":"..."}, followed by a close frame.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	if !method(w, r, http.MethodGet) {
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		writeError(w, errorf(http.StatusBadRequest, "this endpoint is a WebSocket: connect with a WebSocket client to ws://HOST/v1/lr/stream?slotName=NAME"))
		return
	}
	// A hijacked connection keeps the deadlines the HTTP server set for
	// reading the request; the session sets its own.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.opts.Origins})
	if err != nil {
		return // Accept answered the client
	}
	// Messages beyond MaxMessageBytes get an error frame; far beyond, the
	// library closes the connection (1009).
	conn.SetReadLimit(int64(max(s.opts.MaxMessageBytes*4, 64<<10)))
	s.session(conn, r, s.v1Target)
}

// target is what a session streams from: a v1 slot or a v2 stream.
type target struct {
	name   string        // for messages: "slot NAME", "stream NAME"
	busy   chan struct{} // holds a token while a client streams
	stop   chan struct{} // closed when the stream is deleted (nil: never)
	format string        // the default format
	hint   string        // what a second client can do instead
	open   func(ctx context.Context) (*source.Stream, error)
}

// v1Target resolves ?slotName= to one of the server's slots.
func (s *Server) v1Target(ctx context.Context, r *http.Request) (*target, *apiError) {
	sl, err := s.lookup(ctx, r.URL.Query().Get("slotName"))
	if err != nil {
		return nil, asAPIError(err)
	}
	return &target{
		name: "slot " + sl.name, busy: sl.busy, format: formatWal2JSON,
		hint: "call /v1/init for a slot of your own",
		open: func(ctx context.Context) (*source.Stream, error) {
			// The stream starts after the snapshot: its connection must
			// be idle no longer, and the slot must be free.
			sl.releaseSnapshot()
			return source.Open(ctx, source.Config{
				DSN: s.opts.DSN, Slot: sl.name, Tables: s.opts.Tables,
				Create: true, ExpectSlot: true, Transactions: true, Logger: s.log,
			})
		},
	}, nil
}

// session runs one client's stream until either side ends it.
func (s *Server) session(conn *websocket.Conn, r *http.Request, resolve func(context.Context, *http.Request) (*target, *apiError)) {
	defer conn.CloseNow()
	q := r.URL.Query()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.fail(conn, websocket.StatusGoingAway, "the server is shutting down: reconnect later")
		return
	}
	if s.streams >= s.opts.MaxStreams {
		s.mu.Unlock()
		s.fail(conn, websocket.StatusTryAgainLater, fmt.Sprintf("%d streams are running, the most allowed (--max-streams): reconnect later", s.opts.MaxStreams))
		return
	}
	s.streams++
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.streams--
		s.mu.Unlock()
		s.wg.Done()
	}()
	// Not derived from s.ctx: the library closes a connection whose read is
	// cancelled, and a shutdown first tells the client (see below).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	tg, aerr := resolve(ctx, r)
	if aerr != nil {
		s.fail(conn, websocket.StatusPolicyViolation, aerr.msg)
		return
	}
	format := q.Get("format")
	if format == "" {
		format = tg.format
	}
	if !slices.Contains(streamFormats, format) {
		s.fail(conn, websocket.StatusPolicyViolation, fmt.Sprintf("unknown format %q: use one of %s", format, strings.Join(streamFormats, ", ")))
		return
	}
	var enc encode.Encoder
	if format != formatWal2JSON {
		var err error
		if enc, err = encode.New(format, s.opts.Encode); err != nil {
			s.fail(conn, websocket.StatusInternalError, err.Error())
			return
		}
	}
	// One client per slot. A client that reconnects right after dropping
	// may find its old session still closing: wait a moment for it.
	select {
	case tg.busy <- struct{}{}:
	case <-time.After(2 * time.Second):
		s.fail(conn, websocket.StatusPolicyViolation, fmt.Sprintf("%s already has a client streaming from it: one client per slot; %s", tg.name, tg.hint))
		return
	case <-s.ctx.Done():
		s.fail(conn, websocket.StatusGoingAway, "the server is shutting down: reconnect later")
		return
	}
	defer func() { <-tg.busy }()
	st, err := tg.open(ctx)
	if err != nil {
		var ue *source.UserError
		msg := err.Error()
		if errors.As(err, &ue) {
			msg = ue.Msg
		}
		s.fail(conn, websocket.StatusInternalError, "opening the stream of "+tg.name+": "+msg)
		return
	}
	defer st.Close() // confirms the client's last ack
	s.log.Info("client streaming", "from", tg.name, "format", format, "remote", r.RemoteAddr, "start", st.Stats().StartLSN)

	sent := newSentLog(format == formatWal2JSON, s.opts.MaxUnacked)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.readAcks(gctx, conn, st, sent) })
	g.Go(func() error { return s.ping(gctx, conn) })
	if s.opts.MaxAckDelay > 0 {
		g.Go(func() error { return s.watchAcks(gctx, conn, sent) })
	}
	g.Go(func() error {
		select {
		case <-s.ctx.Done():
			s.fail(conn, websocket.StatusGoingAway, "the server is shutting down: reconnect to resume after your last ack")
			return errShutdown
		case <-tg.stop:
			s.fail(conn, websocket.StatusGoingAway, tg.name+" was deleted")
			return errShutdown
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error { return s.pump(gctx, conn, st, sent, enc, tokenOf(r.Context())) })
	err = g.Wait()
	switch {
	case errors.Is(err, errClientGone) || errors.Is(err, errShutdown) || err == nil:
	case errors.Is(err, errReported):
		s.log.Warn("stream ended", "from", tg.name, "err", err)
	default:
		s.log.Warn("stream ended", "from", tg.name, "err", err)
		s.fail(conn, websocket.StatusInternalError, "the stream stopped: "+err.Error())
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

// errClientGone ends a session whose client closed the connection,
// errShutdown one that Close ended.
var (
	errClientGone = errors.New("client closed the connection")
	errShutdown   = errors.New("server shutting down")
	errReported   = errors.New("told the client") // an error frame was sent
)

// fail sends an error frame and closes the connection with code.
func (s *Server) fail(conn *websocket.Conn, code websocket.StatusCode, msg string) {
	wsproto.Fail(conn, s.opts.WriteTimeout, code, msg)
}

func (s *Server) sendError(ctx context.Context, conn *websocket.Conn, msg string) {
	wsproto.SendError(ctx, conn, s.opts.WriteTimeout, msg)
}

// write sends one frame. A client that takes longer than WriteTimeout is
// dropped; until then the slot waits for it.
func (s *Server) write(ctx context.Context, conn *websocket.Conn, b []byte) error {
	wctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, b); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wctx.Err() != nil {
			return fmt.Errorf("client took longer than %s to take a frame (--write-timeout): dropped; it resumes after its last ack when it reconnects", s.opts.WriteTimeout)
		}
		return errClientGone
	}
	return nil
}

// pump is the only reader of the stream: it turns events into frames.
func (s *Server) pump(ctx context.Context, conn *websocket.Conn, st *source.Stream, sent *sentLog, enc encode.Encoder, tok *Token) error {
	frames := &txnFrames{max: s.opts.MaxFrameBytes}
	var (
		inTxn, begun bool
		commit       event.LSN
		lastSingle   event.LSN // position of the last change outside a transaction
		buf          []byte
	)
	// emit writes a frame, counting its bytes first: while the client
	// holds MaxUnackedBytes unacked, sending waits for its acks, and a
	// client that acks nothing for WriteTimeout then is dropped.
	emit := func(b []byte) error {
		held, err := sent.reserve(ctx, len(b), s.opts.MaxUnackedBytes, s.opts.WriteTimeout)
		if errors.Is(err, errLagBytes) {
			s.fail(conn, websocket.StatusPolicyViolation, fmt.Sprintf("fell behind: %d bytes of frames sent and not acked, the most allowed (--max-unacked-bytes %d), and no ack for %s (--write-timeout): dropped; reconnect to resume after your last ack", held, s.opts.MaxUnackedBytes, s.opts.WriteTimeout))
			return errClientGone
		}
		if err != nil {
			return err
		}
		return s.write(ctx, conn, b)
	}
	// send writes one change: into the transaction's wal2json frame
	// (writing a part when it grew too large), or as a frame of its own.
	send := func(e *event.Event, commit event.LSN) error {
		if enc == nil {
			part, err := frames.add(e)
			if err != nil || part == nil {
				return err
			}
			return emit(part)
		}
		var err error
		if buf, err = enc.Encode(buf[:0], e); err != nil {
			return err
		}
		sent.sending(commit)
		return emit(buf)
	}
	for {
		e, err := st.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			msg := err.Error()
			var ue *source.UserError
			if errors.As(err, &ue) {
				msg = ue.Msg
			}
			s.fail(conn, websocket.StatusInternalError, "the stream stopped: "+msg)
			return fmt.Errorf("%w: %w", errReported, err)
		}
		switch e.Op {
		case event.OpBegin:
			inTxn, begun, commit = true, false, e.CommitLSN
			continue
		case event.OpCommit:
			if !inTxn {
				continue // the end of an initial snapshot: its reads were frames of their own
			}
			if begun {
				sent.end(commit, e.EndLSN)
				if enc == nil {
					if err := emit(frames.commit(e.EndLSN)); err != nil {
						return err
					}
				}
			} else if c, now, err := sent.skip(ctx, commit, e.EndLSN); err != nil {
				return err
			} else if now {
				// Nothing of it was for this client, and it acked all before.
				if err := st.Ack(c); err != nil {
					return err
				}
			}
			inTxn, begun = false, false
			continue
		case event.OpSchema:
			continue
		}
		if !visible(tok, e) {
			continue
		}
		if !inTxn {
			// A logical message outside any transaction: a frame of its own.
			pos := e.CommitLSN
			if pos == 0 {
				pos = e.LSN
			}
			// The reads of an initial snapshot share one position: one
			// entry for them all, so that MaxUnacked counts transactions.
			if pos != lastSingle {
				if err := sent.begin(ctx, pos); err != nil {
					return err
				}
				sent.end(pos, pos)
				lastSingle = pos
			}
			if err := send(e, pos); err != nil {
				return err
			}
			if enc == nil {
				if err := emit(frames.commit(pos)); err != nil {
					return err
				}
			}
			continue
		}
		if !begun {
			if commit == 0 {
				commit = e.CommitLSN
			}
			if err := sent.begin(ctx, commit); err != nil {
				return err
			}
			begun = true
		}
		if err := send(e, commit); err != nil {
			return err
		}
	}
}

// visible reports whether the token may see e: changes of tables it may
// read; logical messages, which name no table, only for tokens of every
// table.
func visible(tok *Token, e *event.Event) bool {
	if tok == nil || len(tok.patterns) == 0 {
		return true
	}
	if e.Op == event.OpMessage {
		return false
	}
	return tok.allows(e.Schema, e.Table)
}

// ping checks that an idle client is still there.
func (s *Server) ping(ctx context.Context, conn *websocket.Conn) error {
	t := time.NewTicker(s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.opts.WriteTimeout)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("client did not answer a ping within %s: %w", s.opts.WriteTimeout, errClientGone)
		}
	}
}

// watchAcks drops a client that holds a frame unacked too long.
func (s *Server) watchAcks(ctx context.Context, conn *websocket.Conn, sent *sentLog) error {
	t := time.NewTicker(min(s.opts.MaxAckDelay/4+time.Millisecond, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if at := sent.oldest(); !at.IsZero() && time.Since(at) > s.opts.MaxAckDelay {
			s.fail(conn, websocket.StatusPolicyViolation, fmt.Sprintf("a frame stayed unacked longer than %s (--max-ack-delay): dropped; reconnect to resume after your last ack", s.opts.MaxAckDelay))
			return errClientGone
		}
	}
}

const ackHint = wsproto.AckHint

func parseAck(b []byte) (event.LSN, error) { return wsproto.ParseAck(b) }

// readAcks reads the client's messages: acks, each confirmed to the stream.
// A bad message gets an error frame and changes nothing.
func (s *Server) readAcks(ctx context.Context, conn *websocket.Conn, st *source.Stream, sent *sentLog) error {
	limit := int64(s.opts.MaxMessageBytes)
	for {
		typ, rd, err := conn.Reader(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return errClientGone
		}
		b, err := io.ReadAll(io.LimitReader(rd, limit+1))
		if err != nil {
			return errClientGone
		}
		if int64(len(b)) > limit {
			if _, err := io.Copy(io.Discard, rd); err != nil {
				return errClientGone
			}
			s.sendError(ctx, conn, fmt.Sprintf("message larger than %d bytes, ignored: %s", limit, ackHint))
			continue
		}
		if typ != websocket.MessageText {
			s.sendError(ctx, conn, "binary message ignored: "+ackHint)
			continue
		}
		pos, err := parseAck(b)
		if err == nil {
			var commit event.LSN
			if commit, err = sent.ack(pos); err == nil && commit != 0 {
				err = st.Ack(commit)
			}
		}
		if err != nil {
			s.sendError(ctx, conn, err.Error())
		}
	}
}
