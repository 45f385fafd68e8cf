package server

import (
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults of ServeOptions. Every answer of the admin API is small and
// computed at once (a /metrics scrape of a large pipeline takes
// milliseconds), so the timeouts only keep slow or idle clients from
// holding connections.
const (
	DefaultMaxConns          = 64
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = time.Minute
)

// ServeOptions bounds the connections of the server NewHTTPServer returns.
// Zero fields take the Default values.
type ServeOptions struct {
	// MaxConns is the most connections open at once. A new client beyond
	// it makes the server close the connection idle the longest (a
	// keep-alive connection between requests); when none is idle, it waits
	// in the listen backlog until one closes, which the timeouts bound.
	MaxConns int
	// ReadHeaderTimeout bounds a client that connects and sends nothing
	// (or a header slowly); ReadTimeout the whole request; WriteTimeout
	// the time from the end of the request header to the end of the
	// response; IdleTimeout a keep-alive connection between requests.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// ErrorLog receives the server's errors (nil: the log package's
	// standard logger, as for http.Server).
	ErrorLog *log.Logger
}

// HTTPServer is an http.Server whose Serve and ListenAndServe bound the
// connections it holds, per listener. Shutdown and Close are http.Server's;
// its TLS methods do not apply the bound.
type HTTPServer struct {
	*http.Server
	maxConns int
	mu       sync.Mutex
	limits   []*limitListener
}

// NewHTTPServer returns a server of h with the limits of opts. Serve it with
// its Serve method, which is what applies MaxConns.
func NewHTTPServer(h http.Handler, opts ServeOptions) *HTTPServer {
	def := func(d, v time.Duration) time.Duration {
		if d == 0 {
			return v
		}
		return d
	}
	s := &HTTPServer{maxConns: opts.MaxConns}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxConns
	}
	s.Server = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: def(opts.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       def(opts.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      def(opts.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       def(opts.IdleTimeout, DefaultIdleTimeout),
		ErrorLog:          opts.ErrorLog,
		ConnState:         s.connState,
	}
	return s
}

// Serve accepts connections on ln, at most MaxConns open at once, until
// Shutdown or Close. It returns http.ErrServerClosed after those.
func (s *HTTPServer) Serve(ln net.Listener) error {
	l := newLimitListener(ln, s.maxConns)
	s.mu.Lock()
	s.limits = append(s.limits, l)
	s.mu.Unlock()
	return s.Server.Serve(l)
}

// ListenAndServe listens on Addr (":http" when empty) and serves there as
// Serve does.
func (s *HTTPServer) ListenAndServe() error {
	addr := s.Addr
	if addr == "" {
		addr = ":http"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// connState tells the limiter which connections are idle, hence which it
// may close to make room.
func (s *HTTPServer) connState(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	lc.l.setIdle(lc, state == http.StateIdle)
}

// limitListener holds at most max connections open. Unlike
// netutil.LimitListener it does not let idle keep-alive connections fill the
// limit: a client that needs a slot takes the one idle the longest, so that
// a few hundred idle browsers or scrapers cannot stall a new client until
// their IdleTimeout.
type limitListener struct {
	net.Listener
	max     int
	freed   chan struct{} // a token whenever a connection closes
	done    chan struct{} // closed by Close
	closeMu sync.Once

	mu    sync.Mutex
	conns map[*limitedConn]time.Time // open connection -> idle since (zero: busy)
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{
		Listener: ln, max: max,
		freed: make(chan struct{}, 1), done: make(chan struct{}),
		conns: make(map[*limitedConn]time.Time),
	}
}

// Accept waits for a free slot, evicting the connection idle the longest
// when all are taken, then accepts.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		victim, full := l.reserve()
		if !full {
			break
		}
		if victim != nil {
			victim.Close()
			continue
		}
		select {
		case <-l.freed:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.mu.Lock()
		delete(l.conns, nil) // the reservation
		l.mu.Unlock()
		l.signal()
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	l.mu.Lock()
	delete(l.conns, nil)
	l.conns[lc] = time.Time{}
	l.mu.Unlock()
	return lc, nil
}

// reserve takes a slot for the connection about to be accepted (under the
// nil key, so that the count is right while Accept blocks). When the limit
// is reached it returns full and the connection idle the longest, if any.
func (l *limitListener) reserve() (victim *limitedConn, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) < l.max {
		l.conns[nil] = time.Time{}
		return nil, false
	}
	var oldest time.Time
	for c, since := range l.conns {
		if c != nil && !since.IsZero() && (victim == nil || since.Before(oldest)) {
			victim, oldest = c, since
		}
	}
	return victim, true
}

func (l *limitListener) setIdle(c *limitedConn, idle bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[c]; !ok {
		return // already closed
	}
	since := time.Time{}
	if idle {
		since = time.Now()
	}
	l.conns[c] = since
	if idle {
		// An Accept may be waiting because every connection was busy when
		// it looked: this one may now make room.
		l.signal()
	}
}

func (l *limitListener) release(c *limitedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.signal()
}

func (l *limitListener) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

func (l *limitListener) Close() error {
	l.closeMu.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn frees its slot when closed, by the server or by eviction.
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
