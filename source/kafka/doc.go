// Package kafka is a pgfeed source that reads the topics a pgfeed Kafka sink
// wrote, in a consumer group, and turns each record back into an event, so
// that a downstream pgfeed routes, encodes and sinks it like a change read
// from PostgreSQL. Offsets are committed only when the caller says that
// every sink made the batch durable: at-least-once, never a gap.
//
// Records are pgfeed's native JSON (Decode) or Debezium's PostgreSQL
// envelope as a sink with format = "debezium" writes it (DecodeDebezium),
// told apart per record or fixed by Options.Format.
//
// Column types are not in the native JSON; the decoder infers them from the
// values (numbers, booleans, JSON objects and arrays, strings), which
// re-encodes native JSON exactly and other formats with those types.
//
// From Debezium's envelope the event comes back as the native decoder would
// give it, with these exceptions, which the envelope does not carry:
//   - seq is read from the record's "seq" header (a pgfeed sink writes it);
//     records without one have seq 0. commit_lsn is source.sequence's first
//     item (or the "commit_lsn" header).
//   - With the Connect schema (schemas on, the default), types come from it:
//     integers, floats, booleans, bytea, numeric (Decimal and
//     VariableScaleDecimal), date, timestamp, timestamptz, time, timetz,
//     interval, json, uuid and xml are restored, and their values printed
//     as Postgres prints them. Lost: numeric NaN and ±Infinity (Debezium
//     writes null), timetz offsets (normalised to UTC), interval months
//     (Debezium counts them as 30.4375 days, so they come back as days),
//     money (a Decimal of scale 2, back as numeric), enums, ranges and other
//     types Debezium writes as strings (back as text), and array element
//     types other than numbers and booleans (back as text[]).
//   - Without the schema (schemas off), types are inferred as for native
//     JSON: dates, times and timestamps come back as the numbers Debezium
//     wrote, decimals as base64 strings and json columns as strings.
//   - Under REPLICA IDENTITY DEFAULT the old row of a delete has its key
//     columns only; the others, which Debezium writes as null, come back
//     absent. An old row under FULL whose non-key columns are all null is
//     read the same way.
//   - The commit time is source.ts_us, which for snapshot reads is when they
//     were encoded. Messages are transactional when they have a txId.
//     Transaction metadata records (BEGIN/END) become begin and commit
//     events with xid and commit_lsn only.
//   - Tombstones (records with a null value) and schema-change records are
//     skipped: they carry no change.
package kafka
