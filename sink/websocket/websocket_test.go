package websocket

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// ackingClient connects to the sink's endpoint, keeps every frame it
// receives, and acks each.
type ackingClient struct {
	mu     sync.Mutex
	frames [][]byte
	errs   []string
}

func (c *ackingClient) values() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.frames...)
}

func connect(t testing.TB, url, token string) *ackingClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{}
	if token != "" {
		opts.HTTPHeader = map[string][]string{"Authorization": {"Bearer " + token}}
	}
	conn, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	c := &ackingClient{}
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f struct {
				CommitLSN string `json:"commit_lsn"`
				Error     string `json:"error"`
			}
			_ = json.Unmarshal(b, &f)
			c.mu.Lock()
			if f.Error != "" {
				c.errs = append(c.errs, f.Error)
			} else {
				c.frames = append(c.frames, b)
			}
			c.mu.Unlock()
			if f.CommitLSN != "" {
				if conn.Write(context.Background(), websocket.MessageText, []byte(`{"lsn":"`+f.CommitLSN+`"}`)) != nil {
					return
				}
			}
		}
	}()
	return c
}

// waitClients waits until the sink has n clients registered.
func waitClients(t testing.TB, s *Sink, n int) {
	t.Helper()
	for s.Clients() != n {
		time.Sleep(5 * time.Millisecond)
	}
}

// TestConformance runs the sink suite with one real client that acks
// every frame: what Write returned for, the client holds.
func TestConformance(t *testing.T) {
	sinktest.Run(t, func(t *testing.T) sinktest.Target {
		s := New(Options{})
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		t.Cleanup(func() { s.Close() })
		c := connect(t, "ws"+strings.TrimPrefix(srv.URL, "http"), "")
		waitClients(t, s, 1)
		return sinktest.Target{Sink: s, Read: func(t *testing.T) [][]byte { return c.values() }}
	})
}

// TestTwoClientsBothHoldTheBatch checks that Write waits for every
// client: when it returns, each holds the whole batch.
func TestTwoClientsBothHoldTheBatch(t *testing.T) {
	const token = "a-token-of-sixteen-chars"
	s := New(Options{Token: token})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	a, b := connect(t, url, token), connect(t, url, token)
	waitClients(t, s, 2)
	batch := sinktest.Records(0, 50)
	if err := s.Write(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*ackingClient{"a": a, "b": b} {
		if got := len(c.values()); got != len(batch) {
			t.Errorf("client %s holds %d records when Write returned, want %d", name, got, len(batch))
		}
	}
}

// TestWriteWaitsForAClient checks backpressure: with no client Write
// does not return, and returns once a client connected and acked.
func TestWriteWaitsForAClient(t *testing.T) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), sinktest.Records(0, 3)) }()
	// Write waits; nothing to wait for but a client, so check it has not
	// returned once the batch is in flight.
	for {
		s.mu.Lock()
		inFlight := s.batch != nil
		s.mu.Unlock()
		if inFlight {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Write returned %v with no client connected", err)
	default:
	}
	c := connect(t, "ws"+strings.TrimPrefix(srv.URL, "http"), "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := len(c.values()); got != 3 {
		t.Fatalf("client holds %d records, want 3", got)
	}
}

// TestRefusal: without a token only loopback clients are served; with
// one, the bearer token (or access_token) must match.
func TestRefusal(t *testing.T) {
	const token = "a-token-of-sixteen-chars"
	for _, c := range []struct {
		name, token, remote, header, query, want string
	}{
		{"loopback without token", "", "127.0.0.1:5000", "", "", ""},
		{"ipv6 loopback without token", "", "[::1]:5000", "", "", ""},
		{"remote without token", "", "192.0.2.7:5000", "", "", "only loopback clients"},
		{"right token", token, "192.0.2.7:5000", "Bearer " + token, "", ""},
		{"access_token", token, "192.0.2.7:5000", "", "?access_token=" + token, ""},
		{"no token sent", token, "127.0.0.1:5000", "", "", "missing bearer token"},
		{"wrong token", token, "127.0.0.1:5000", "Bearer nope", "", "invalid bearer token"},
	} {
		s := New(Options{Token: c.token})
		r := httptest.NewRequest("GET", "/changes"+c.query, nil)
		r.RemoteAddr = c.remote
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		got := s.refusal(r)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%s: refusal %q, want %q", c.name, got, c.want)
		}
	}
}

// TestOwnListener: a sink with a listen of its own serves its path there.
func TestOwnListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := New(Options{})
	if err := s.Listen(addr, "/feed"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := connect(t, "ws://"+addr+"/feed", "")
	waitClients(t, s, 1)
	if err := s.Write(context.Background(), sinktest.Records(0, 2)); err != nil {
		t.Fatal(err)
	}
	if got := len(c.values()); got != 2 {
		t.Fatalf("client holds %d records, want 2", got)
	}
	if err := s.Listen(addr, "/feed"); err == nil {
		t.Fatal("a second Listen on the same address succeeded")
	}
}

// BenchmarkWrite: batches of 500 records to two clients that ack every
// frame over loopback.
func BenchmarkWrite(b *testing.B) {
	s := New(Options{})
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	connect(b, url, "")
	connect(b, url, "")
	waitClients(b, s, 2)
	sinktest.Bench(b, s, 500)
}
