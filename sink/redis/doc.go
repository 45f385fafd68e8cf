// Package redis is a sink that writes records to Redis: appended to streams
// (XADD, trimmed with MAXLEN ~), or published to pub/sub channels, named by
// the pipeline's route (sink.Record.Topic). A batch goes out in one
// pipelined round trip.
//
// Streams are idempotent by default: a Lua script appends a stream's
// records and, in the same atomic step, records beside the stream the last
// position written for each source (a hash, the stream's name followed by
// MarkSuffix). A redelivered event, at or below that position, is skipped,
// so a pgfeed killed between writing a batch and checkpointing it does not
// append the batch twice when it starts again. The marks are atomic with
// the entries, so whatever Redis persisted of one it persisted of the
// other; they are void once the stream is deleted. The same holds for
// `pgfeed replay`: what a stream already holds is not appended again, so
// replay rebuilds a deleted stream, or fills one that lost its tail.
//
// Write returns once Redis has applied the commands. Whether they survive a
// crash of Redis itself is Redis's persistence: appendonly yes with
// appendfsync always loses nothing that Write acknowledged; the default
// (everysec) can lose the last second.
//
// Redis Cluster is not supported: a stream and its marks hash may live in
// different slots. Redis 8's XADD IDMP could replace the marks later.
//
// Channels are at-most-once: a message reaches only the subscribers
// connected when it is published, and nothing keeps it.
package redis
