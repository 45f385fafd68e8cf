// Package stream is the change API of `pgfeed serve`: pgdeltastream's v1
// endpoints, done safely for many clients at once, and a native v2 API of
// named streams. Each slot streams through one source.Stream (one
// replication connection, owned by one goroutine) for one client at a time;
// a slow client holds its slot back instead of filling memory.
//
// v1, so that pgdeltastream's clients work unchanged:
//
//   - POST (or GET) /v1/init creates a slot of its own, named SlotPrefix and
//     16 random hex digits, with a publication of its own (Tables), and
//     answers {"slotName","consistentPoint","snapshotExpires"}. It never
//     drops a slot. The slot's exported snapshot stays valid while the
//     replication connection that created it stays idle: one goroutine
//     holds it until the stream starts or SnapshotHold passes.
//   - POST /v1/snapshot/data {"slotName","table","offset","limit",
//     "order_by":{"column","order"},"after":{...}} answers a JSON array of
//     rows read in that snapshot (SET TRANSACTION SNAPSHOT), values in the
//     native type mapping. The table is looked up with PostgreSQL's own
//     parser and must be in the slot's publication; columns must be the
//     table's; every name is quoted and every value a parameter. Pages are
//     ordered by order_by's column, then the table's key, so that they are
//     stable; "after" holds those columns' values of the last row read
//     (keyset pagination), besides offset.
//   - GET /v1/lr/stream?slotName=NAME is a WebSocket of the slot's changes,
//     in wal2json frames by default, one per transaction:
//     {"nextlsn":"0/170FCB0","change":[...]} (a transaction beyond
//     MaxFrameBytes comes in parts, only the last with nextlsn), or one
//     frame per change with format=json, debezium or cloudevents. The
//     client acks with {"lsn":"X/Y"}: the nextlsn of a wal2json frame, or
//     the commit_lsn of the others (Debezium's decimal commit LSN is taken
//     as a number too). Only acked positions are confirmed to PostgreSQL;
//     a client that reconnects resumes after its last ack.
//
// v2: GET /v2/streams lists named streams, POST /v2/streams
// {"name","tables","snapshot"} creates one (its initial snapshot comes as
// read frames on the socket before the changes), DELETE
// /v2/streams/{name} drops it, GET /v2/streams/{name}/ws streams it, POST
// /v2/streams/{name}/backfill {"tables"} reads tables again into it.
// Definitions (table globs, snapshot) are kept in the database, in
// StreamTable beside the slot, so that a stream outlives the server that
// made it; its position is the slot's.
//
// GET /health answers {"ok":true,"streams":N,"snapshots_held":N}.
//
// Errors are {"error": "..."}: an HTTP 4xx/5xx body, or on a WebSocket an
// error frame (then a close frame when the session cannot go on). Tokens,
// when set, are required of every request and limit what each may read.
package stream
