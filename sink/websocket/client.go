package websocket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/event"
	"github.com/pgfeed/pgfeed/internal/wsproto"
	"golang.org/x/sync/errgroup"
)

// client is one connection. Its counters are guarded by the sink's mu, so
// that Write sees every client's state at one moment.
type client struct {
	s      *Sink
	conn   *websocket.Conn
	remote string

	// Guarded by s.mu.
	sentSeq  uint64      // the newest batch sent whole
	sent     []sentFrame // sent and not acked, oldest first
	bytes    int64       // their size
	last     event.LSN   // the highest position sent: the most a client may ack
	progress time.Time   // when the client last acked something, or got a frame with nothing unacked

	dropOnce sync.Once
}

type sentFrame struct {
	pos  event.LSN
	size int64
}

// errStale stops sending a batch that Write gave up on: the next batch
// replaces it.
var errStale = errors.New("batch no longer in flight")

// errGone ends a session whose connection went away or was dropped.
var errGone = errors.New("connection closed")

func newClient(s *Sink, conn *websocket.Conn, remote string) *client {
	return &client{s: s, conn: conn, remote: remote}
}

// holdsAll reports whether the client was sent batch seq whole and acked
// every frame sent to it. s.mu is held.
func (c *client) holdsAll(seq uint64) bool { return c.sentSeq == seq && len(c.sent) == 0 }

// drop tells the client why and closes the connection (once).
func (c *client) drop(code websocket.StatusCode, msg string) {
	c.dropOnce.Do(func() {
		if code != websocket.StatusGoingAway {
			c.s.log.Warn("websocket sink: client dropped", "remote", c.remote, "reason", msg)
		}
		wsproto.Fail(c.conn, c.s.opts.WriteTimeout, code, msg)
	})
}

// run serves the client until it goes or is dropped.
func (c *client) run() error {
	// Not the request's context: the library closes a connection whose
	// read is cancelled, before an error frame could tell the client why.
	g, ctx := errgroup.WithContext(context.Background())
	g.Go(func() error { return c.send(ctx) })
	g.Go(func() error { return c.readAcks(ctx) })
	g.Go(func() error { return c.watch(ctx) })
	g.Go(func() error { return c.ping(ctx) })
	err := g.Wait()
	c.conn.CloseNow()
	return err
}

// send writes the frames of each batch in flight, waiting for acks while
// the client holds as many unacked as it may.
func (c *client) send(ctx context.Context) error {
	s := c.s
	var done uint64 // the batch sent whole last
	for {
		s.mu.Lock()
		p, ch, closed := s.batch, s.changed, s.closed
		s.mu.Unlock()
		if closed {
			return errGone
		}
		if p == nil || p.seq == done {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return errGone
			}
		}
		for i := range p.records {
			if err := c.reserve(ctx, p, i); errors.Is(err, errStale) {
				break
			} else if err != nil {
				return err
			}
			if err := c.write(ctx, p.records[i].Value); err != nil {
				return err
			}
		}
		s.mu.Lock()
		if s.batch == p {
			c.sentSeq = p.seq
			s.notifyLocked()
		}
		s.mu.Unlock()
		done = p.seq
	}
}

// reserve waits for room for record i of p in the client's lag bounds and
// records it as sent: before it is written, since the ack may come first.
func (c *client) reserve(ctx context.Context, p *pending, i int) error {
	s := c.s
	size := int64(len(p.records[i].Value))
	for {
		s.mu.Lock()
		if s.batch != p {
			s.mu.Unlock()
			return errStale
		}
		n := len(c.sent)
		if n == 0 || n < s.opts.MaxLagRecords && c.bytes+size <= s.opts.MaxLagBytes {
			if n == 0 {
				c.progress = time.Now()
			}
			c.sent = append(c.sent, sentFrame{pos: p.pos[i], size: size})
			c.bytes += size
			c.last = max(c.last, p.pos[i])
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return errGone
		}
	}
}

// write sends one frame; a client that takes longer than WriteTimeout is
// dropped.
func (c *client) write(ctx context.Context, b []byte) error {
	typ := websocket.MessageText
	if c.s.opts.Binary {
		typ = websocket.MessageBinary
	}
	wctx, cancel := context.WithTimeout(ctx, c.s.opts.WriteTimeout)
	defer cancel()
	if err := c.conn.Write(wctx, typ, b); err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			c.drop(websocket.StatusPolicyViolation, fmt.Sprintf("client took longer than %s to take a frame: dropped; reconnect to receive again what you did not ack", c.s.opts.WriteTimeout))
		}
		return errGone
	}
	return nil
}

// ack takes the client's ack of pos: every frame sent with a position up
// to it is acked. A position beyond what was sent changes nothing.
func (c *client) ack(pos event.LSN) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos > c.last {
		if c.last == 0 {
			return fmt.Errorf("ack of position %s, which was never sent: nothing was sent yet on this connection; ack the commit_lsn of a frame you received", pos)
		}
		return fmt.Errorf("ack of position %s, which was never sent: the last commit_lsn sent is %s", pos, c.last)
	}
	n := 0
	for n < len(c.sent) && c.sent[n].pos <= pos {
		c.bytes -= c.sent[n].size
		n++
	}
	if n > 0 {
		c.sent = append(c.sent[:0], c.sent[n:]...)
		c.progress = time.Now()
		s.notifyLocked()
	}
	return nil
}

// readAcks reads the client's acks; a bad one gets an error frame and
// changes nothing.
func (c *client) readAcks(ctx context.Context) error {
	for {
		typ, b, err := c.conn.Read(ctx)
		if err != nil {
			return errGone // closed, dropped, or a message beyond maxAckBytes (closed with 1009)
		}
		if typ != websocket.MessageText {
			wsproto.SendError(ctx, c.conn, c.s.opts.WriteTimeout, "binary message ignored: "+wsproto.AckHint)
			continue
		}
		pos, err := wsproto.ParseAck(b)
		if err == nil {
			err = c.ack(pos)
		}
		if err != nil {
			wsproto.SendError(ctx, c.conn, c.s.opts.WriteTimeout, err.Error())
		}
	}
}

// watch drops a client that acks nothing for AckTimeout while it holds
// frames unacked.
func (c *client) watch(ctx context.Context) error {
	s := c.s
	t := time.NewTicker(min(s.opts.AckTimeout/4+time.Millisecond, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		s.mu.Lock()
		n, bytes, since := len(c.sent), c.bytes, c.progress
		s.mu.Unlock()
		if n == 0 || time.Since(since) <= s.opts.AckTimeout {
			continue
		}
		msg := fmt.Sprintf("no ack for %s while holding %d frames (%d bytes) unacked: dropped; reconnect to receive again what you did not ack", s.opts.AckTimeout, n, bytes)
		if n >= s.opts.MaxLagRecords || bytes >= s.opts.MaxLagBytes {
			msg = fmt.Sprintf("fell behind: %d frames (%d bytes) unacked, the most allowed (max_lag_records %d, max_lag_bytes %d), for longer than %s: dropped; reconnect to receive again what you did not ack", n, bytes, s.opts.MaxLagRecords, s.opts.MaxLagBytes, s.opts.AckTimeout)
		}
		c.drop(websocket.StatusPolicyViolation, msg)
		return errors.New(msg)
	}
}

// ping checks that an idle client is still there.
func (c *client) ping(ctx context.Context) error {
	t := time.NewTicker(c.s.opts.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.s.opts.WriteTimeout)
		err := c.conn.Ping(pctx)
		cancel()
		if err != nil {
			return errGone
		}
	}
}
