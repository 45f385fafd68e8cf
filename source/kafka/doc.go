// Package kafka is a pgfeed source that reads the topics a pgfeed Kafka sink
// wrote in the native JSON format, in a consumer group, and turns each record
// back into an event, so that a downstream pgfeed routes, encodes and sinks
// it like a change read from PostgreSQL. Offsets are committed only when
// the caller says that every sink made the batch durable: at-least-once,
// never a gap.
//
// Column types are not in the native JSON; the decoder infers them from the
// values (numbers, booleans, JSON objects and arrays, strings), which
// re-encodes native JSON exactly and other formats with those types.
package kafka
