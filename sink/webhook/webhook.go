package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pgfeed/pgfeed/encode"
	"github.com/pgfeed/pgfeed/sink"
)

// Headers that the sink sets on every request.
const (
	// HeaderIdempotencyKey carries the identity of what the request holds:
	// the event's identity (encode.ID: commit_lsn:seq, the CloudEvents id)
	// for one event, "FIRST..LAST" of the first and last events for a batch.
	// It is the same on every retry of a request.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderTimestamp is the Unix time, in seconds, at which the request
	// was signed; set with a Secret only.
	HeaderTimestamp = "X-Pgfeed-Timestamp"
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with the
	// Secret, of the timestamp header's value, a ".", and the body. A
	// receiver recomputes it, compares in constant time, and refuses old
	// timestamps to stop replays. Set with a Secret only.
	HeaderSignature = "X-Pgfeed-Signature"
)

// Content types of request bodies.
const (
	ContentTypeJSON             = "application/json"
	ContentTypeCloudEvents      = "application/cloudevents+json"
	ContentTypeCloudEventsBatch = "application/cloudevents-batch+json"
)

// Defaults of Options fields left zero.
const (
	DefaultMaxBatch    = 500
	DefaultMaxInFlight = 1
	DefaultTimeout     = 10 * time.Second
	DefaultRetries     = 8
	DefaultMinBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff  = 30 * time.Second
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("webhook sink is closed")

// Options configures a Sink. Only URL is required; every other field has a
// default, documented with it.
type Options struct {
	// URL is the http:// or https:// endpoint that receives the POSTs.
	URL string
	// Headers are added to every request (e.g. Authorization). They cannot
	// replace the headers the sink sets itself.
	Headers map[string]string
	// Format is the encoder's format (encode.Format*), which decides the
	// Content-Type: CloudEvents structured or batched mode for
	// "cloudevents", avro/binary for "avro", application/json otherwise.
	Format string
	// Single sends one event per request, its value as the body. The
	// default sends a JSON array of up to MaxBatch events per request;
	// formats whose values are not JSON (avro) need Single.
	Single bool
	// Binary sends one event per request in the CloudEvents HTTP binding's
	// binary content mode: the event's attributes in ce-* headers
	// (percent-encoded as the binding asks), its datacontenttype as the
	// Content-Type and its data as the body. It needs Format "cloudevents"
	// and implies Single.
	Binary bool
	// MaxBatch bounds the events of one request in batch mode (default 500).
	MaxBatch int
	// MaxInFlight bounds the requests that one Write has open at once
	// (default 1). With 1, requests reach the endpoint in commit order,
	// each after the one before was accepted. With more, the requests of
	// one Write (up to MaxInFlight×MaxBatch events) may arrive in any order
	// among themselves; Write still returns only once all are accepted, so
	// the events of two Writes never interleave. Consumers that need order
	// then sort by commit_lsn and seq.
	MaxInFlight int
	// Timeout bounds one attempt of one request, response included
	// (default 10s). An attempt that times out is retried.
	Timeout time.Duration
	// Secret, when set, signs every request (HeaderSignature).
	Secret []byte
	// Retries is how often one request is tried again after a 5xx, 429,
	// 408, timeout or connection error before Write gives up and fails
	// (default 8; negative: never). The pipeline then writes the batch again.
	Retries int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts, with jitter (defaults 200ms and 30s). A Retry-After header
	// (seconds or an HTTP date) replaces the backoff of that attempt.
	MinBackoff, MaxBackoff time.Duration
	// TLS configures https endpoints.
	TLS TLSOptions
	// Logger receives a warning for every retried attempt; nil discards.
	Logger *slog.Logger
}

// TLSOptions configures the client side of TLS.
type TLSOptions struct {
	CAFile   string // PEM certificates trusted instead of the system's roots
	CertFile string // PEM client certificate, with KeyFile
	KeyFile  string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
	// InsecureSkipVerify accepts any server certificate: for tests only,
	// since anyone on the path can then read and change the events.
	InsecureSkipVerify bool
}

// Config returns the TLS configuration, loading the files it names.
func (o TLSOptions) Config() (*tls.Config, error) {
	c := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("reading CA file %s: no PEM certificate in it", o.CAFile)
		}
	}
	if o.CertFile != "" || o.KeyFile != "" {
		if o.CertFile == "" || o.KeyFile == "" {
			return nil, errors.New("loading client certificate: set both the certificate and the key file")
		}
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Sink POSTs batches of records to an HTTP endpoint.
//
// Write returns nil once the endpoint accepted (2xx) every record. Records
// the endpoint refuses for good come back in a *sink.RejectedError, every
// other record of the batch being accepted: a 4xx other than 408, 425 and
// 429 refuses what the request held, and a batch so refused is split in
// halves and sent again until the refused events stand alone, so that one
// poison event does not take its batch with it. Statuses that say the
// endpoint refuses every request whatever it holds (3xx, 401, 403, 404,
// 405, 407, 415, 421, 426) are not about the records: Write fails, and the
// pipeline retries and logs, instead of sending the whole stream to the
// dead letter. An endpoint that answers 400 to every request still drains
// into the dead letter: watch pgfeed_sink_dead_letters_total.
//
// Delivery is at least once: a request whose answer is lost (timeout,
// connection reset) is sent again with the same Idempotency-Key, and after
// a failed Write or a crash the pipeline sends the events again, batched
// anew, so receivers dedupe on each event's commit_lsn and seq.
type Sink struct {
	opts      Options
	url       string
	where     string // the URL without credentials or query, for errors
	client    *http.Client
	transport *http.Transport
	log       *slog.Logger
	closed    atomic.Bool
}

var _ sink.Sink = (*Sink)(nil)

// New returns a sink for opts. It loads the TLS files but does not connect.
func New(opts Options) (*Sink, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("parsing webhook URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("parsing webhook URL %q: want http://host/path or https://host/path", opts.URL)
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = DefaultRetries
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Binary {
		if opts.Format != encode.FormatCloudEvents {
			return nil, fmt.Errorf("configuring webhook: binary mode is the CloudEvents HTTP binding's and needs format %q, not %q", encode.FormatCloudEvents, opts.Format)
		}
		opts.Single = true
	}
	if opts.Format == encode.FormatAvro && !opts.Single {
		return nil, errors.New("configuring webhook: avro values are binary and cannot be batched in a JSON array: send one event per request")
	}
	tc, err := opts.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("configuring webhook TLS: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.MaxIdleConnsPerHost = opts.MaxInFlight
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{
		opts:      opts,
		url:       u.String(),
		where:     u.Scheme + "://" + u.Host + u.Path,
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// A POST redirected would become a GET, or be sent again
			// elsewhere: the endpoint is what the config names.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log.With("webhook", u.Scheme+"://"+u.Host+u.Path),
	}
	return s, nil
}

// Write POSTs the batch and returns once every record was accepted (nil),
// or all were accepted but the ones a *sink.RejectedError lists, or with
// the error that stopped it (nothing of the batch then counts as written).
func (s *Sink) Write(ctx context.Context, batch []sink.Record) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing to webhook %s: %w", s.where, err)
	}
	size := s.opts.MaxBatch
	if s.opts.Single {
		size = 1
	}
	var (
		mu       sync.Mutex
		rejected []sink.Rejected
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxInFlight)
	for lo := 0; lo < len(batch) && gctx.Err() == nil; lo += size {
		hi := min(lo+size, len(batch))
		g.Go(func() error {
			rej, err := s.send(gctx, batch, lo, hi)
			mu.Lock()
			rejected = append(rejected, rej...)
			mu.Unlock()
			return err
		})
	}
	err := g.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing to webhook %s: %w", s.where, err)
	}
	if err != nil {
		return err
	}
	if len(rejected) > 0 {
		slices.SortFunc(rejected, func(a, b sink.Rejected) int { return a.Index - b.Index })
		return &sink.RejectedError{Rejected: rejected}
	}
	return nil
}

// send delivers batch[lo:hi] in one request, splitting it while the
// endpoint refuses it, and returns the records refused on their own.
func (s *Sink) send(ctx context.Context, batch []sink.Record, lo, hi int) ([]sink.Rejected, error) {
	err := s.post(ctx, batch[lo:hi])
	if err == nil {
		return nil, nil
	}
	if _, ok := errors.AsType[*rejectError](err); !ok {
		return nil, err
	}
	if hi-lo == 1 {
		return []sink.Rejected{{Index: lo, Err: err}}, nil
	}
	mid := lo + (hi-lo)/2
	first, err := s.send(ctx, batch, lo, mid)
	if err != nil {
		return first, err
	}
	second, err := s.send(ctx, batch, mid, hi)
	return append(first, second...), err
}

// StatusError is an answer of the endpoint that was not a 2xx.
type StatusError struct {
	Code int
	Body string // the start of the response body, for logs and dead letters
}

// Error names the status and quotes the start of the body.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// rejectError marks an answer that refuses the request's records for good.
type rejectError struct{ err error }

func (e *rejectError) Error() string { return e.err.Error() }
func (e *rejectError) Unwrap() error { return e.err }

// retryError marks a failure worth another attempt, with the wait the
// endpoint asked for (Retry-After), if any.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// post sends one request, retrying it with backoff while it fails in a way
// that may pass.
func (s *Sink) post(ctx context.Context, recs []sink.Record) error {
	// A fresh buffer per request, never pooled: the transport may still
	// be writing a body after the response came (an early 4xx).
	buf, hdr, err := s.body(recs)
	if err != nil {
		return &rejectError{err: err} // the record itself is wrong: retrying cannot help
	}
	key := idempotencyKey(recs, buf.Bytes())
	backoff := s.opts.MinBackoff
	for attempt := 0; ; attempt++ {
		err := s.attempt(ctx, buf.Bytes(), key, hdr)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("posting %d records to %s: %w", len(recs), s.where, ctx.Err())
		}
		re, ok := errors.AsType[*retryError](err)
		if !ok {
			return err
		}
		if attempt >= s.opts.Retries {
			return fmt.Errorf("posting %d records to %s (gave up after %d attempts): %w", len(recs), s.where, attempt+1, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if re.after > 0 {
			wait = re.after
		}
		s.log.Warn("webhook: retrying request", "err", err, "in", wait, "attempt", attempt+1, "records", len(recs), "idempotency_key", key)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("posting %d records to %s: %w", len(recs), s.where, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
	}
}

// attempt makes one request and classifies its outcome.
func (s *Sink) attempt(ctx context.Context, body []byte, key string, hdr http.Header) error {
	actx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	for k, v := range s.opts.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", s.contentType())
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "pgfeed-webhook")
	req.Header.Set(HeaderIdempotencyKey, key)
	if len(s.opts.Secret) > 0 {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, Sign(s.opts.Secret, ts, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		// Connection refused or reset, TLS failures, the attempt's timeout:
		// the endpoint may not have seen the request, or its answer was
		// lost; the same request goes again.
		return &retryError{err: fmt.Errorf("posting to %s: %w", s.where, err)}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	// One line, whatever the endpoint wrote: it goes into logs and dead letters.
	serr := &StatusError{Code: code, Body: strings.Join(strings.Fields(strings.ToValidUTF8(string(snippet), "?")), " ")}
	switch {
	case code >= 500, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout, code == http.StatusTooEarly:
		return &retryError{err: serr, after: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code >= 300 && code < 400, endpointRefusals[code]:
		return fmt.Errorf("posting to %s: %w (the endpoint refuses every request: check url and headers)", s.where, serr)
	case code >= 400 && code < 500:
		return &rejectError{err: serr}
	}
	return &retryError{err: serr}
}

// endpointRefusals are the 4xx statuses that say the endpoint refuses every
// request, whatever it holds: wrong URL, credentials, method or media type.
// Splitting a batch would only send each of its events to the dead letter.
var endpointRefusals = map[int]bool{
	http.StatusUnauthorized:         true,
	http.StatusForbidden:            true,
	http.StatusNotFound:             true,
	http.StatusMethodNotAllowed:     true,
	http.StatusProxyAuthRequired:    true,
	http.StatusUnsupportedMediaType: true,
	http.StatusMisdirectedRequest:   true,
	http.StatusUpgradeRequired:      true,
}

// maxRetryAfter bounds the wait a Retry-After can ask for. A wait longer
// than the pipeline gives a Write ends with it; the batch then comes again.
const maxRetryAfter = 24 * time.Hour

// retryAfter parses a Retry-After value: seconds, or an HTTP date. It
// returns 0 for a value that is neither, or in the past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// Sign returns the value of HeaderSignature for a request signed at
// timestamp (HeaderTimestamp's value) with the given body.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// body builds a request's body, and in binary mode the headers that
// carry the event's attributes.
func (s *Sink) body(recs []sink.Record) (*bytes.Buffer, http.Header, error) {
	if s.opts.Binary {
		return binaryEvent(recs[0].Value)
	}
	n := len(recs) + 1
	for i := range recs {
		n += len(recs[i].Value)
	}
	buf := bytes.NewBuffer(make([]byte, 0, n))
	if s.opts.Single {
		buf.Write(recs[0].Value)
		return buf, nil, nil
	}
	buf.WriteByte('[')
	for i := range recs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(recs[i].Value)
	}
	buf.WriteByte(']')
	return buf, nil, nil
}

func (s *Sink) contentType() string {
	switch {
	case s.opts.Format == encode.FormatCloudEvents && s.opts.Single:
		return ContentTypeCloudEvents
	case s.opts.Format == encode.FormatCloudEvents:
		return ContentTypeCloudEventsBatch
	case s.opts.Single:
		return encode.ContentType(s.opts.Format)
	}
	return ContentTypeJSON
}

// idempotencyKey derives the key of a request from the identity of its
// events: the event's own for one, "FIRST..LAST" for several. Records
// without an event (only in tests) fall back to a hash of the body.
func idempotencyKey(recs []sink.Record, body []byte) string {
	first, last := recs[0].Event, recs[len(recs)-1].Event
	var key string
	switch {
	case first == nil || last == nil:
	case len(recs) == 1:
		key = encode.ID(first)
	default:
		key = encode.ID(first) + ".." + encode.ID(last)
	}
	if key == "" || !headerSafe(key) {
		// A schema event's identity holds a table name, which may hold
		// bytes a header cannot.
		sum := sha256.Sum256(append([]byte(key), body...))
		return hex.EncodeToString(sum[:16])
	}
	return key
}

func headerSafe(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Close makes later writes fail and closes idle connections. It is
// idempotent.
func (s *Sink) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.transport.CloseIdleConnections()
	return nil
}
