// Package kafka is a sink that produces each change as one Kafka record: the
// route's destination as topic, the primary key as record key (so that one
// row's changes stay in order in one partition), and the event's op, schema,
// table and positions as headers. The producer is idempotent with acks=all,
// and Write returns only once the brokers acknowledged every record.
//
// In exactly-once mode (Options.Transactional) each Write is one Kafka
// transaction that holds the records and the sink's position in a compacted
// offsets topic; after a crash pgfeed resumes from that position, so a
// read_committed consumer sees every change once. A second producer with the
// same transactional id fences the first.
package kafka
