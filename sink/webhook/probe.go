package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Probe checks, without sending an event, that the endpoint answers: an
// OPTIONS request to the URL with the configured headers, bounded by the
// sink's timeout. Any HTTP answer passes: an endpoint may well refuse
// OPTIONS with 404 or 405, or an unsigned request with 401, and still take
// pgfeed's POSTs. It fails with one line on what no answer at all means:
// endpoint unreachable, TLS handshake or certificate failure, timeout.
func (s *Sink) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, s.url, nil)
	if err != nil {
		return fmt.Errorf("probing webhook %s: %w", s.where, err)
	}
	for k, v := range s.opts.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("User-Agent", "pgfeed-webhook")
	resp, err := s.client.Do(req)
	if err != nil {
		// url.Error repeats the URL with its credentials: name the
		// endpoint as s.where does and keep the cause.
		return fmt.Errorf("probing webhook %s (OPTIONS): %w (is the endpoint up, and its TLS settings right?)", s.where, unwrapURLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
