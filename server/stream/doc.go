// Package stream is the change API of `pgfeed serve`: pgdeltastream's v1
// endpoints, done safely for many clients at once. POST /v1/init creates a
// replication slot of its own with an exported snapshot and holds that
// snapshot for a while; POST /v1/snapshot/data pages through a table inside
// it; GET /v1/lr/stream is a WebSocket of the slot's changes, which the
// client acks with {"lsn":"..."}. Each slot streams through one source.Stream
// (one replication connection, owned by one goroutine) for one client at a
// time; a slow client holds the slot back instead of filling memory.
package stream
