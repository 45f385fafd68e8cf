// Package webhook is the sink that POSTs events to an HTTP endpoint: batches
// as a JSON array (CloudEvents batched mode for the cloudevents format) or
// one event per request, signed with HMAC-SHA256, with an Idempotency-Key
// derived from the events' identity, retried with backoff on 5xx, 429,
// timeouts and connection errors, and refused records reported to the
// pipeline for its dead-letter destination.
package webhook
