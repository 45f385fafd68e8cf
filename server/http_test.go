package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgfeed/pgfeed/pipeline"
)

// countingListener counts the connections the server accepted and has not
// closed yet, as the operating system sees them.
type countingListener struct {
	net.Listener
	mu        sync.Mutex
	open, max int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.open++
	l.max = max(l.max, l.open)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingListener) counts() (open, max int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.max
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// startAdminServer serves the admin API on a free port of 127.0.0.1 with
// opts and returns its address and the listener that counts its
// connections.
func startAdminServer(t *testing.T, opts ServeOptions) (string, *countingListener, *HTTPServer) {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: tcp}
	srv := NewHTTPServer(newTestAdmin(t, func() pipeline.Status { return streamingStatus(t) }), opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return tcp.Addr().String(), ln, srv
}

// waitAllIdle waits until the server has seen every connection it holds go
// idle. net/http marks a connection idle after the response was written, so
// a client may already have its answer while the server still counts it busy
// (under -race, for several more round trips).
func waitAllIdle(t *testing.T, s *HTTPServer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		busy := 0
		s.mu.Lock()
		for _, l := range s.limits {
			l.mu.Lock()
			for c, since := range l.conns {
				if c != nil && since.IsZero() {
					busy++
				}
			}
			l.mu.Unlock()
		}
		s.mu.Unlock()
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still busy after their answer", busy)
		}
		time.Sleep(time.Millisecond)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getHealth sends GET /health on c, keeping the connection alive, and
// reads the answer.
func getHealth(c net.Conn, r *bufio.Reader) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: pgfeed\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		return &unexpected{resp.Status + " " + string(body)}
	}
	return c.SetDeadline(time.Time{})
}

type unexpected struct{ s string }

func (u *unexpected) Error() string { return "unexpected answer " + u.s }

// TestIdleConnectionsDoNotStallNewClients keeps many keep-alive
// connections idle after one request each, far more than the limit, with an
// IdleTimeout that would hold them for an hour: every new client is still
// served at once, the server never holds more than MaxConns, and the
// connections idle the longest are the ones closed.
func TestIdleConnectionsDoNotStallNewClients(t *testing.T) {
	const maxConns = 4
	addr, ln, srv := startAdminServer(t, ServeOptions{MaxConns: maxConns, IdleTimeout: time.Hour})
	var idle []net.Conn
	var readers []*bufio.Reader
	for i := range 5 * maxConns {
		c := dial(t, addr)
		r := bufio.NewReader(c)
		if err := getHealth(c, r); err != nil {
			t.Fatalf("client %d (with %d idle connections open): %v", i, len(idle), err)
		}
		waitAllIdle(t, srv)
		idle, readers = append(idle, c), append(readers, r)
	}
	if _, most := ln.counts(); most > maxConns {
		t.Errorf("the server held %d connections at once, want at most %d", most, maxConns)
	}
	// The oldest ones were closed by the server: reading them ends.
	for i, c := range idle[:len(idle)-maxConns] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := readers[i].ReadByte(); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("idle connection %d still open (read: %v), want it closed by the server", i, err)
		}
	}
	// The newest still work.
	last := len(idle) - 1
	if err := getHealth(idle[last], readers[last]); err != nil {
		t.Errorf("newest keep-alive connection: %v", err)
	}
}

// TestSilentConnectionsAreBounded opens more connections than the limit
// that never send a byte: the server holds at most MaxConns of them, drops
// each after ReadHeaderTimeout, and then serves a real client.
func TestSilentConnectionsAreBounded(t *testing.T) {
	const maxConns = 4
	addr, ln, _ := startAdminServer(t, ServeOptions{MaxConns: maxConns, ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: time.Hour})
	for range 3 * maxConns {
		dial(t, addr)
	}
	c := dial(t, addr)
	if err := getHealth(c, bufio.NewReader(c)); err != nil {
		t.Fatalf("client after %d silent connections: %v", 3*maxConns, err)
	}
	if _, most := ln.counts(); most > maxConns {
		t.Errorf("the server held %d connections at once, want at most %d", most, maxConns)
	}
}

// TestServeDefaults checks that a zero ServeOptions sets every timeout, so
// that no caller serves without them.
func TestServeDefaults(t *testing.T) {
	srv := NewHTTPServer(http.NotFoundHandler(), ServeOptions{})
	if srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.ReadTimeout != DefaultReadTimeout ||
		srv.WriteTimeout != DefaultWriteTimeout || srv.IdleTimeout != DefaultIdleTimeout || srv.maxConns != DefaultMaxConns {
		t.Errorf("defaults: %+v, max %d", srv.Server, srv.maxConns)
	}
}
