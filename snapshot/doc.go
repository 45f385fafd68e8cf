// Package snapshot reads the rows that are already in a table and turns them
// into op "read" events that join the live change stream with no gap and no
// overlap.
//
// It offers three ways in. ReadSnapshot reads tables inside a snapshot
// exported when a replication slot was created, so the rows meet the slot's
// stream exactly. Walker and Merger backfill a table at any time while the
// stream runs: the Walker reads it in short keyset-paginated chunks between
// low and high watermarks written to the WAL, and the Merger, fed every
// stream event in order, releases each chunk's rows at its high watermark
// unless the stream changed them inside the window (the DBLog method).
// Export writes tables as JSON lines as fast as COPY allows, for
// `pgfeed snapshot`.
package snapshot
