// Package encode turns change events into the bytes a sink writes, in the
// formats consumers already read: pgfeed's native JSON, wal2json format
// versions 1 and 2, the Debezium PostgreSQL connector's records (value, key
// and tombstone), structured-mode CloudEvents 1.0 and Avro single-object
// encoding.
//
// Every encoder appends to a caller-owned buffer, so a pipeline that reuses
// one buffer per batch encodes without allocating per event. Encoders are
// safe for concurrent use, but for the wal2json format-version 1 encoder,
// which frames a whole transaction as one object (TxFramer) and so keeps
// the open transaction's state. Formats with records of their own kind
// implement KeyEncoder (record keys) and Tombstoner (records with a nil
// value). Value conversion comes from the event package; this package only
// adds what a format needs beyond the native mapping (Debezium's integer
// dates and times and decimals, Avro's binary encoding, wal2json's quirks).
package encode
