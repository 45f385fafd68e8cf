package schemaregistry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pgfeed/pgfeed/encode"
)

// KeepCompatibility, as Options.Compatibility, leaves each subject's
// compatibility level as the registry has it.
const KeepCompatibility = "keep"

// Options configure a Client. Only URL is required.
type Options struct {
	URL            string // http(s)://host:port of the registry; several separated by commas
	User, Password string // basic auth, when User is set
	TLS            *tls.Config
	// Compatibility is the level set on each subject before pgfeed
	// registers its first schema there: "" means BACKWARD, under which a
	// new nullable column (a new field with a default) is accepted and a
	// changed column type is refused. KeepCompatibility sets none.
	Compatibility string
}

// Client registers schemas. It is safe for concurrent use.
type Client struct {
	cl     *sr.Client
	compat sr.CompatibilityLevel // 0: keep the subject's

	mu         sync.Mutex
	ids        map[subjectSchema]int
	compatible map[string]bool // subjects whose level is set
}

type subjectSchema struct{ subject, schema string }

// CompatibilityLevels are the names Options.Compatibility accepts.
var CompatibilityLevels = []string{"BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE", KeepCompatibility}

// New returns a client of the registry at opts.URL. It does not connect:
// the first schema does.
func New(opts Options) (*Client, error) {
	if opts.URL == "" {
		return nil, errors.New("schema registry: no url")
	}
	c := &Client{ids: make(map[subjectSchema]int), compatible: make(map[string]bool)}
	switch opts.Compatibility {
	case "":
		c.compat = sr.CompatBackward
	case KeepCompatibility:
	default:
		if err := c.compat.UnmarshalText([]byte(opts.Compatibility)); err != nil {
			return nil, fmt.Errorf("schema registry: %w (have: %s)", err, strings.Join(CompatibilityLevels, ", "))
		}
	}
	urls := strings.Split(opts.URL, ",")
	for i := range urls {
		urls[i] = strings.TrimSpace(urls[i])
	}
	copts := []sr.ClientOpt{sr.URLs(urls...), sr.UserAgent("pgfeed")}
	if opts.User != "" {
		copts = append(copts, sr.BasicAuth(opts.User, opts.Password))
	}
	if opts.TLS != nil {
		copts = append(copts, sr.DialTLSConfig(opts.TLS))
	}
	cl, err := sr.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry: %w", err)
	}
	c.cl = cl
	return c, nil
}

var _ encode.SchemaRegistry = (*Client)(nil)

// SchemaID implements encode.SchemaRegistry: it returns the id of schema
// in subject, registering it (POST /subjects/{subject}/versions) the first
// time this client meets the pair, after setting the subject's
// compatibility (PUT /config/{subject}) the first time it meets the
// subject. The registry answers with the existing id when the subject
// already holds the schema, so a restart registers nothing new.
func (c *Client) SchemaID(ctx context.Context, subject, schema string) (int, error) {
	k := subjectSchema{subject, schema}
	c.mu.Lock()
	id, ok := c.ids[k]
	set := c.compatible[subject] || c.compat == 0
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	if !set {
		res := c.cl.SetCompatibility(ctx, sr.SetCompatibility{Level: c.compat}, subject)
		if err := res[0].Err; err != nil {
			return 0, refusal(subject, fmt.Errorf("setting compatibility %s: %w", c.compat, err))
		}
		c.mu.Lock()
		c.compatible[subject] = true
		c.mu.Unlock()
	}
	id, err := c.cl.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
	if err != nil {
		return 0, refusal(subject, fmt.Errorf("registering a schema: %w", err))
	}
	c.mu.Lock()
	c.ids[k] = id
	c.mu.Unlock()
	return id, nil
}

// refusal turns the registry's "no" to a schema (409: incompatible with
// the subject's versions; 422: not a valid schema) into a
// *encode.SchemaRefusedError with the registry's own reason; other errors
// (unreachable, 5xx, credentials) stay as they are, for a retry.
func refusal(subject string, err error) error {
	re, ok := errors.AsType[*sr.ResponseError](err)
	if !ok || (re.StatusCode != http.StatusConflict && re.StatusCode != http.StatusUnprocessableEntity) {
		return err
	}
	reason := re.Message
	if reason == "" {
		reason = strings.TrimSpace(string(re.Raw))
	}
	if reason == "" {
		reason = http.StatusText(re.StatusCode)
	}
	return &encode.SchemaRefusedError{Subject: subject, Reason: oneLine(reason)}
}

// oneLine keeps an error one line, however the registry formats its reasons.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
