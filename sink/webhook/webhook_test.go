package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/sink"
	"github.com/pgfeed/pgfeed/sink/sinktest"
)

// request is one request the test endpoint received.
type request struct {
	key    string
	header http.Header
	body   []byte
	values [][]byte // the events of the body
	code   int      // what the endpoint answered
}

// endpoint is a real HTTP server that keeps every request, answers what
// its policy says, and counts as delivered what it answered 2xx.
type endpoint struct {
	t      *testing.T
	srv    *httptest.Server
	single bool
	// policy returns the status to answer (0: 200) and headers to set; n
	// is how many requests with this Idempotency-Key came before.
	policy func(r *request, n int, w http.ResponseWriter) int

	mu       sync.Mutex
	requests []*request
	byKey    map[string]int
}

func newEndpoint(t *testing.T, single bool, policy func(r *request, n int, w http.ResponseWriter) int) *endpoint {
	ep := &endpoint{t: t, single: single, policy: policy, byKey: map[string]int{}}
	ep.srv = httptest.NewServer(http.HandlerFunc(ep.serve))
	t.Cleanup(ep.srv.Close)
	return ep
}

func (ep *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	req := &request{key: r.Header.Get(HeaderIdempotencyKey), header: r.Header.Clone(), body: body}
	if ep.single {
		req.values = [][]byte{body}
	} else {
		var vals []json.RawMessage
		if err := json.Unmarshal(body, &vals); err != nil {
			ep.t.Errorf("body is not a JSON array: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, v := range vals {
			req.values = append(req.values, v)
		}
	}
	ep.mu.Lock()
	n := ep.byKey[req.key]
	ep.byKey[req.key]++
	ep.mu.Unlock()
	code := http.StatusOK
	if ep.policy != nil {
		if c := ep.policy(req, n, w); c != 0 {
			code = c
		}
	}
	req.code = code
	ep.mu.Lock()
	ep.requests = append(ep.requests, req)
	ep.mu.Unlock()
	w.WriteHeader(code)
	fmt.Fprintf(w, "answer %d", code)
}

// accepted returns the values of the requests answered 2xx, in the order
// they were answered.
func (ep *endpoint) accepted() [][]byte {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var out [][]byte
	for _, r := range ep.requests {
		if r.code < 300 {
			out = append(out, r.values...)
		}
	}
	return out
}

func (ep *endpoint) all() []*request {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return slices.Clone(ep.requests)
}

func open(t *testing.T, ep *endpoint, opts Options) *Sink {
	t.Helper()
	opts.URL = ep.srv.URL + "/hook?token=x"
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 20 * time.Millisecond
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func values(recs []sink.Record) [][]byte {
	var out [][]byte
	for _, r := range recs {
		out = append(out, r.Value)
	}
	return out
}

func sameValues(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("endpoint accepted %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("event %d: endpoint accepted %.80s..., want %.80s...", i, got[i], want[i])
		}
	}
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"Batch", Options{}},
		{"SmallBatches", Options{MaxBatch: 7}},
		{"Single", Options{Single: true}},
		{"Signed", Options{Secret: []byte("s3cret"), MaxBatch: 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sinktest.Run(t, func(t *testing.T) sinktest.Target {
				ep := newEndpoint(t, tc.opts.Single, nil)
				return sinktest.Target{Sink: open(t, ep, tc.opts), Read: func(*testing.T) [][]byte { return ep.accepted() }}
			})
		})
	}
}

// 500s, then success: each request is retried with the same
// Idempotency-Key until accepted, and each event is accepted once.
func TestRetriesServerErrors(t *testing.T) {
	ep := newEndpoint(t, false, func(r *request, n int, w http.ResponseWriter) int {
		if n < 3 {
			return http.StatusInternalServerError + n // 500, 501, 502
		}
		return 0
	})
	s := open(t, ep, Options{MaxBatch: 4})
	recs := sinktest.Records(0, 10)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	sameValues(t, ep.accepted(), values(recs))
	keys := map[string][]int{}
	for _, r := range ep.all() {
		keys[r.key] = append(keys[r.key], r.code)
	}
	if len(keys) != 3 {
		t.Fatalf("%d distinct Idempotency-Keys for 3 requests: %v", len(keys), keys)
	}
	for i, lo := range []int{0, 4, 8} {
		hi := min(lo+4, 10)
		want := encode.ID(recs[lo].Event) + ".." + encode.ID(recs[hi-1].Event)
		if got := keys[want]; !slices.Equal(got, []int{500, 501, 502, 200}) {
			t.Errorf("request %d (key %q) answered %v; want 500, 501, 502, 200 under the same key", i, want, got)
		}
	}
}

// 429 with Retry-After in seconds: the retry waits what the endpoint asked
// for, not the (much shorter) backoff.
func TestRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	ep := newEndpoint(t, true, func(r *request, n int, w http.ResponseWriter) int {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return 0
	})
	s := open(t, ep, Options{Single: true})
	recs := sinktest.Records(0, 1)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	sameValues(t, ep.accepted(), values(recs))
	if len(at) != 2 {
		t.Fatalf("%d attempts, want 2", len(at))
	}
	// A lower bound only: the sink must not come back before it was told.
	if gap := at[1].Sub(at[0]); gap < time.Second {
		t.Fatalf("retried after %v; Retry-After asked for 1s", gap)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 7 ":                           7 * time.Second,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Wed, 02 Dec 2026 06:00:30 GMT": 30 * time.Second,
		"Wed, 02 Dec 2026 05:59:00 GMT": 0, // in the past
		"99999999":                      24 * time.Hour,
		"Fri, 31 Dec 2100 23:59:59 GMT": 24 * time.Hour,
	} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v; want %v", v, got, want)
		}
	}
}

// FuzzRetryAfter: a Retry-After header is outside input; whatever it holds,
// the wait is between 0 and maxRetryAfter.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"3", "-1", "Wed, 02 Dec 2026 06:00:30 GMT", "Monday, 02-Dec-26 06:00:30 GMT", "Wed Dec  2 06:00:30 2026", "9223372036854775807", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %v", v, d)
		}
	})
}

// A handler that takes the events and then hangs past the timeout: the
// attempt is abandoned and sent again with the same Idempotency-Key, so the
// endpoint can drop the duplicate; nothing is lost.
func TestTimeoutRetried(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ep := newEndpoint(t, false, func(r *request, n int, w http.ResponseWriter) int {
		if n == 0 {
			select { // the client gives up first; release ends the test's server
			case <-release:
			case <-time.After(time.Minute):
			}
		}
		return 0
	})
	s := open(t, ep, Options{Timeout: time.Second})
	recs := sinktest.Records(0, 5)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	want := encode.ID(recs[0].Event) + ".." + encode.ID(recs[4].Event)
	ep.mu.Lock()
	attempts := ep.byKey[want]
	ep.mu.Unlock()
	if attempts < 2 {
		t.Fatalf("%d attempts with key %q, want the hung one and at least one retry", attempts, want)
	}
	// Every answered request had that key; a slow machine may have timed
	// out a retry too, which the endpoint dedupes by it.
	byKey := map[string][][]byte{}
	for _, r := range ep.all() {
		if r.key != want {
			t.Fatalf("Idempotency-Key %q, want %q on every attempt", r.key, want)
		}
		if r.code < 300 {
			byKey[r.key] = r.values
		}
	}
	sameValues(t, byKey[want], values(recs))
}

// A connection closed without an answer is retried.
func TestConnectionErrorRetried(t *testing.T) {
	var mu sync.Mutex
	drops := 0
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if drops < 2 {
			drops++
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		got = append(got, body)
	}))
	defer srv.Close()
	s, err := New(Options{URL: srv.URL, Single: true, MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := sinktest.Records(0, 3)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	sameValues(t, got, values(recs))
}

// Retries exhausted: Write fails with the last answer, not a rejection, so
// that the pipeline writes the batch again.
func TestRetriesExhausted(t *testing.T) {
	ep := newEndpoint(t, false, func(*request, int, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	s := open(t, ep, Options{Retries: 2})
	err := s.Write(context.Background(), sinktest.Records(0, 3))
	if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != 503 {
		t.Fatalf("Write = %v; want the 503", err)
	}
	if _, ok := errors.AsType[*sink.RejectedError](err); ok {
		t.Fatalf("Write = %v: a 503 is not a rejection", err)
	}
	if n := len(ep.all()); n != 3 {
		t.Fatalf("%d attempts, want 3 (1 + 2 retries)", n)
	}
}

// containsID reports whether a request holds the sinktest record of id.
func containsID(r *request, id int) bool {
	for _, v := range r.values {
		if bytes.Contains(v, fmt.Appendf(nil, `"key":{"id":%d}`, id)) {
			return true
		}
	}
	return false
}

// A 400 on any request that holds a poison event: the batch is split until
// the poison event stands alone, it comes back in a RejectedError, and every
// other event of the batch is accepted, once.
func TestRejectedRecordsGoOn(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) {
			ep := newEndpoint(t, single, func(r *request, n int, w http.ResponseWriter) int {
				if containsID(r, 7) || containsID(r, 12) {
					return http.StatusBadRequest
				}
				return 0
			})
			s := open(t, ep, Options{Single: single, MaxInFlight: 3, MaxBatch: 8})
			recs := sinktest.Records(0, 20)
			err := s.Write(context.Background(), recs)
			rej, ok := errors.AsType[*sink.RejectedError](err)
			if !ok {
				t.Fatalf("Write = %v; want a *sink.RejectedError", err)
			}
			var idx []int
			for _, r := range rej.Rejected {
				idx = append(idx, r.Index)
				if se, ok := errors.AsType[*StatusError](r.Err); !ok || se.Code != 400 || se.Body != "answer 400" {
					t.Errorf("record %d rejected with %v; want the 400 and its body", r.Index, r.Err)
				}
			}
			if !slices.Equal(idx, []int{7, 12}) {
				t.Fatalf("rejected %v; want [7 12]", idx)
			}
			want := slices.Concat(values(recs[:7]), values(recs[8:12]), values(recs[13:]))
			got := ep.accepted()
			// With 3 requests in flight, requests may be answered in any
			// order: compare as sets, each event once.
			sortBytes(got)
			sortBytes(want)
			sameValues(t, got, want)
		})
	}
}

func sortBytes(v [][]byte) { slices.SortFunc(v, bytes.Compare) }

// A 401 says nothing about the events: Write fails (the pipeline retries
// and reports it is stuck), no event is rejected, no batch is split.
func TestEndpointRefusalIsNotRejection(t *testing.T) {
	for _, code := range []int{401, 403, 404, 415, 308} {
		ep := newEndpoint(t, false, func(*request, int, http.ResponseWriter) int { return code })
		s := open(t, ep, Options{})
		err := s.Write(context.Background(), sinktest.Records(0, 10))
		if se, ok := errors.AsType[*StatusError](err); !ok || se.Code != code {
			t.Fatalf("Write = %v; want the %d", err, code)
		}
		if _, ok := errors.AsType[*sink.RejectedError](err); ok {
			t.Fatalf("Write = %v: a %d is not a rejection", err, code)
		}
		if n := len(ep.all()); n != 1 {
			t.Fatalf("%d: %d requests, want 1 (no retry, no split)", code, n)
		}
	}
}

// The signature is recomputed here from the secret, the timestamp header
// and the body as received, independently of Sign.
func TestSignature(t *testing.T) {
	secret := []byte("webhook-secret")
	var bad []string
	var mu sync.Mutex
	ep := newEndpoint(t, false, func(r *request, n int, w http.ResponseWriter) int {
		ts := r.header.Get(HeaderTimestamp)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(ts + "."))
		m.Write(r.body)
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		got := r.header.Get(HeaderSignature)
		if ts == "" || !hmac.Equal([]byte(got), []byte(want)) {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("timestamp %q signature %q, want %q", ts, got, want))
			mu.Unlock()
			return http.StatusUnauthorized
		}
		if n == 0 {
			return 500 // the retry is signed too
		}
		return 0
	})
	s := open(t, ep, Options{Secret: secret, MaxBatch: 3, Headers: map[string]string{"Authorization": "Bearer t", HeaderIdempotencyKey: "mine"}})
	recs := sinktest.Records(0, 10)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatalf("Write: %v (%v)", err, bad)
	}
	if len(bad) > 0 {
		t.Fatal(strings.Join(bad, "\n"))
	}
	sameValues(t, ep.accepted(), values(recs))
	for _, r := range ep.all() {
		if r.header.Get("Authorization") != "Bearer t" {
			t.Fatalf("custom header missing: %v", r.header)
		}
		if r.key == "mine" {
			t.Fatal("a custom header replaced the Idempotency-Key")
		}
		if ct := r.header.Get("Content-Type"); ct != ContentTypeJSON {
			t.Fatalf("Content-Type %q", ct)
		}
	}

	// A wrong secret fails, and the endpoint sees a signature it refuses.
	other := open(t, ep, Options{Secret: []byte("other")})
	if err := other.Write(context.Background(), recs[:1]); err == nil {
		t.Fatal("a request signed with another secret was accepted")
	}
}

// One event per request: the key is the event's identity.
func TestIdempotencyKeySingle(t *testing.T) {
	ep := newEndpoint(t, true, nil)
	s := open(t, ep, Options{Single: true})
	recs := sinktest.Records(40, 3)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	for i, r := range ep.all() {
		want := fmt.Sprintf("%s:1", recs[i].Event.CommitLSN)
		if r.key != want {
			t.Fatalf("request %d: Idempotency-Key %q, want %q (commit_lsn:seq)", i, r.key, want)
		}
	}
}

// CloudEvents batched mode, checked by the CloudEvents Go SDK: it parses
// each request as an HTTP batch, and each event's id is its identity.
func TestCloudEventsBatch(t *testing.T) {
	enc := encode.NewCloudEvents(encode.Options{ServerName: "main", Database: "app"})
	recs := sinktest.Records(0, 9)
	for i := range recs {
		v, err := enc.Encode(nil, recs[i].Event)
		if err != nil {
			t.Fatal(err)
		}
		recs[i].Value = v
	}
	for _, single := range []bool{false, true} {
		var mu sync.Mutex
		var ids []string
		var errs []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if single {
				if ct := r.Header.Get("Content-Type"); ct != ContentTypeCloudEvents {
					errs = append(errs, "Content-Type "+ct)
				}
				ev, err := cehttp.NewEventFromHTTPRequest(r)
				if err != nil {
					errs = append(errs, err.Error())
					w.WriteHeader(400)
					return
				}
				ids = append(ids, ev.ID())
				return
			}
			if !cehttp.IsHTTPBatch(r.Header) {
				errs = append(errs, "not a CloudEvents batch: Content-Type "+r.Header.Get("Content-Type"))
			}
			evs, err := cehttp.NewEventsFromHTTPRequest(r)
			if err != nil {
				errs = append(errs, err.Error())
				w.WriteHeader(400)
				return
			}
			for _, ev := range evs {
				if err := ev.Validate(); err != nil {
					errs = append(errs, err.Error())
				}
				ids = append(ids, ev.ID())
			}
		}))
		s, err := New(Options{URL: srv.URL, Format: encode.FormatCloudEvents, Single: single, MaxBatch: 4})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatalf("Write: %v (%v)", err, errs)
		}
		s.Close()
		srv.Close()
		if len(errs) > 0 {
			t.Fatalf("single=%v: %s", single, strings.Join(errs, "\n"))
		}
		var want []string
		for _, r := range recs {
			want = append(want, encode.ID(r.Event))
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("single=%v: ids %v, want %v", single, ids, want)
		}
	}
}

// MaxInFlight bounds the requests open at once; all events arrive once.
func TestMaxInFlight(t *testing.T) {
	var mu sync.Mutex
	inflight, peak := 0, 0
	ep := newEndpoint(t, false, func(*request, int, http.ResponseWriter) int {
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		inflight--
		mu.Unlock()
		return 0
	})
	s, err := New(Options{URL: ep.srv.URL, MaxInFlight: 3, MaxBatch: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs := sinktest.Records(0, 200)
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if peak > 3 {
		t.Fatalf("%d requests open at once, MaxInFlight is 3", peak)
	}
	got, want := ep.accepted(), values(recs)
	sortBytes(got)
	sortBytes(want)
	sameValues(t, got, want)
}

func TestNewRefuses(t *testing.T) {
	for _, o := range []Options{
		{URL: "ftp://x/"},
		{URL: "http://"},
		{URL: "http://x/", Format: encode.FormatAvro},
		{URL: "https://x/", TLS: TLSOptions{CAFile: "does-not-exist.pem"}},
		{URL: "https://x/", TLS: TLSOptions{CertFile: "c.pem"}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) = nil error", o)
		}
	}
}
