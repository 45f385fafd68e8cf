// Package encode turns change events into the bytes a sink writes, in the
// formats consumers already read: pgfeed's native JSON, wal2json format
// version 1, the Debezium PostgreSQL connector's envelope, structured-mode
// CloudEvents 1.0 and Avro single-object encoding.
//
// Every encoder appends to a caller-owned buffer, so a pipeline that reuses
// one buffer per batch encodes without allocating per event: wal2json and
// avro never do, and json, cloudevents and debezium allocate only inside the
// event package's timestamptz conversion. Encoders are safe for concurrent
// use. Value conversion comes from the event package; this
// package only adds what a format needs beyond the native mapping (Debezium's
// integer dates and times, Avro's binary encoding, wal2json's quirks).
package encode
