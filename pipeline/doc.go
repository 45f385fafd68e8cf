// Package pipeline runs `pgfeed run`: Postgres sources feed sinks through
// routing and encoders, and a checkpoint store makes restarts exact.
//
// Each source has one goroutine that reads its stream and fans events out
// to the queues of its sinks; each sink has one goroutine that routes,
// encodes and writes batches, then records the batch's position as durable.
// A source acks to Postgres only the lowest position that every one of its
// sinks made durable (held back by the retain window), so a crash anywhere
// loses nothing: the stream resumes there and each sink skips what it had.
package pipeline
